/**
 * Single-table design: every key keygate writes is built here, and nowhere else.
 *
 * Table: `pk` (S, hash), `sk` (S, range), `gsi1pk`/`gsi1sk` (S, GSI "gsi1"), `type` (entity name),
 * `ttl` (N, epoch seconds; DynamoDB's TTL attribute). One table per regional cell; the home cell's
 * table also holds users, tokens and clients.
 *
 * Access patterns (entity → key → who uses it):
 *  1. user by id                         pk USER#<userId>           sk USER                 Core API (auth, /users/me)
 *  2. tokens of a user                   pk USER#<userId>           sk TOKEN#<tokenId>      GET /users/tokens
 *  3. token by hash (strongly consistent)pk TOKENHASH#<sha256>      sk TOKENHASH            every Core API call (auth)
 *  4. clients of a user                  pk USER#<userId>           sk MEMBER#<clientId>    GET /clients
 *  5. client by id (members embedded)    pk CLIENT#<clientId>       sk CLIENT               every client-scoped route
 *  6. credentials of a client / one      pk CLIENT#<clientId>       sk CREDENTIAL#<id>      credentials routes
 *  7. targets of a client / one          pk CLIENT#<clientId>       sk TARGET#<id>          targets routes
 *  8. proxies of a client / one          pk CLIENT#<clientId>       sk PROXY#<id>           proxies routes; "which proxies use X"
 *  9. rules of a parent / one            pk CLIENT#<clientId>       sk RULE#<scope>#<parentId>#<ruleId>
 *  9b. proxy secrets in use by a client  pk CLIENT#<clientId>       sk PROXYKEY#<sha256>    home table; conditional put
 *      keeps one key per identity (a supplied key already used by another credential is a 409)
 * 10. hot path: everything one proxied request needs, in one GetItem
 *                                        pk PROXY#<proxyId>         sk SNAPSHOT             data plane (materialised view)
 * 10a. hot path by alias: a copy of the snapshot of the proxy with that alias
 *                                        pk ALIAS#<proxyAlias>      sk SNAPSHOT             written and deleted in the same
 *     transaction as the proxy's own snapshot (storage/snapshot.ts commitChange); its conditional put
 *     (absent, or already this proxy's) keeps aliases unique in a cell
 * 10d. proxy alias claims, all regions  pk ALIAS#<proxyAlias>      sk CLAIM                home table; conditional put
 *     keeps an alias unique across every cell (control-plane/proxies.ts, storage/home-claim.ts)
 * 10b. (legacy) snapshot version counter pk PROXY#<proxyId>      sk SNAPSEQ              no longer written; deleted with its proxy
 * 10c. client deletion mark, per cell    pk CLIENT#<clientId>       sk CELLSTATE            {deleting: true} once a client's deletion
 *     began; every transaction that writes a snapshot checks it is absent (storage/snapshot.ts commitChange)
 * 11. rate-limit counters                pk LIMIT#<proxyId>#<window>#<start>  sk COUNTER  data plane (atomic ADD, ttl);
 *     each counter its own partition key, apart from the snapshot: a proxy's writes never share
 *     the partition its every request reads, and the proxy may write nothing under PROXY#
 * 11a. meter counters                    pk LIMIT#METER#<meterId>#<window>#<start>  sk COUNTER  the same leases
 *     (data-plane/meters.ts); under LIMIT# so the proxy's one UpdateItem grant covers them
 * 11b. meters of a parent / one          pk CLIENT#<clientId>       sk METER#<scope>#<parentId>#<meterId>
 *     Core API (meters routes); copied into the snapshot of every proxy they apply to
 * 12. request log by proxy and time     pk REQLOG#<proxyId>#<day>  sk <requestId>          aggregator writes, Core API reads;
 *     requestIds are time-ordered (ULID-like), so a time range is a key range and a requestId alone
 *     names its day partition; ttl = processedAt + retention.
 * 13. telemetry buckets                  pk TELEMETRY#<scope>#<id>#<interval>  sk <bucketStart ISO>
 *                                        scope CLIENT|PROXY, interval minute|hour|day; ttl per interval
 * 14. aggregator idempotency marks       pk SEEN#<requestId>        sk SEEN                 conditional put, ttl
 *     (unused by the aggregator, which keeps per-shard sequence watermarks on the bucket items instead:
 *     `wm_<shardId>` attributes of pattern 13, see lambdas/telemetry/aggregator.ts)
 * 15. one-off markers (bootstrap)        pk META#<name>             sk META
 * 16. resources by region (GSI gsi1)     gsi1pk REGION#<region>#<entity>  gsi1sk <clientId>#<id>  operational listing per cell
 * 17. telemetry owner of a proxy         pk PROXYOWNER#<proxyId>    sk OWNER                aggregator writes {clientId, firstSeenAt};
 *     request-log/telemetry reads check it, so a deleted proxy's records stay readable to its client
 * 18. paths seen on a proxy              pk PROXYPATH#<proxyId>     sk <path template>      aggregator (if_not_exists firstSeenAt,
 *                                                                                         firstDeniedAt), anomalies "first-seen /
 *                                                                                         first-denied paths"
 * 19. local Kinesis poller checkpoints   pk CHECKPOINT#<stream>     sk <shardId>            local mode only (ESM stand-in)
 * 20. anomaly flags raised               pk ANOMALY#<proxyId>       sk <interval>#<bucketStart>#<type>
 *     aggregator (conditional put, ttl): each flag counts once in the AnomalyFlags metric
 * 21. calls started, not completed       pk PENDINGCALL#<slot 0-7>  sk <processedAt>#<requestId>
 *     aggregator puts on a start record, deletes on its completion; the sweep reads the overdue
 *     ones (sk < now − grace) and re-injects them as `unknown` completions (docs/audit-trail.md)
 * 22. oauth2 authorization-code grant    pk OAUTHGRANT#<credentialId>  sk GRANT            Core API puts it on consent and deletes
 *     it with its credential; the proxy reads it and, to refresh, takes a lease and writes the rotated
 *     tokens (conditional on its version) — storage/oauth-grants.ts. Cell table.
 * 23. pending consent (state)            pk OAUTHSTATE#<sha256(state)> sk STATE          home table; Core API only: put when an
 *     authorization URL is made, deleted (conditionally, once) by the callback; ttl = its expiry
 */

export type Key = { pk: string; sk: string };
export type RuleScope = 'credential' | 'target' | 'proxy';
export type Interval = 'minute' | 'hour' | 'day';
/** Meters live on proxies and on target credentials (a budget every proxy of that secret shares). */
export type MeterScope = 'proxy' | 'credential';
export type MeterWindow = 'minute' | 'hour' | 'day' | 'month';

export const keys = {
  user: (userId: string): Key => ({ pk: `USER#${userId}`, sk: 'USER' }),
  userToken: (userId: string, tokenId: string): Key => ({ pk: `USER#${userId}`, sk: `TOKEN#${tokenId}` }),
  userTokensPrefix: (userId: string) => ({ pk: `USER#${userId}`, skPrefix: 'TOKEN#' }),
  tokenHash: (hash: string): Key => ({ pk: `TOKENHASH#${hash}`, sk: 'TOKENHASH' }),
  membership: (userId: string, clientId: string): Key => ({ pk: `USER#${userId}`, sk: `MEMBER#${clientId}` }),
  membershipsPrefix: (userId: string) => ({ pk: `USER#${userId}`, skPrefix: 'MEMBER#' }),

  client: (clientId: string): Key => ({ pk: `CLIENT#${clientId}`, sk: 'CLIENT' }),
  clientCell: (clientId: string): Key => ({ pk: `CLIENT#${clientId}`, sk: 'CELLSTATE' }),
  credential: (clientId: string, credentialId: string): Key => ({
    pk: `CLIENT#${clientId}`,
    sk: `CREDENTIAL#${credentialId}`,
  }),
  credentialsPrefix: (clientId: string) => ({ pk: `CLIENT#${clientId}`, skPrefix: 'CREDENTIAL#' }),
  target: (clientId: string, targetId: string): Key => ({
    pk: `CLIENT#${clientId}`,
    sk: `TARGET#${targetId}`,
  }),
  targetsPrefix: (clientId: string) => ({ pk: `CLIENT#${clientId}`, skPrefix: 'TARGET#' }),
  proxy: (clientId: string, proxyId: string): Key => ({ pk: `CLIENT#${clientId}`, sk: `PROXY#${proxyId}` }),
  proxiesPrefix: (clientId: string) => ({ pk: `CLIENT#${clientId}`, skPrefix: 'PROXY#' }),
  rule: (clientId: string, scope: RuleScope, parentId: string, ruleId: string): Key => ({
    pk: `CLIENT#${clientId}`,
    sk: `RULE#${scope}#${parentId}#${ruleId}`,
  }),
  rulesPrefix: (clientId: string, scope: RuleScope, parentId: string) => ({
    pk: `CLIENT#${clientId}`,
    skPrefix: `RULE#${scope}#${parentId}#`,
  }),

  proxyKeyHash: (clientId: string, hash: string): Key => ({
    pk: `CLIENT#${clientId}`,
    sk: `PROXYKEY#${hash}`,
  }),
  proxySnapshot: (proxyId: string): Key => ({ pk: `PROXY#${proxyId}`, sk: 'SNAPSHOT' }),
  aliasSnapshot: (proxyAlias: string): Key => ({ pk: `ALIAS#${proxyAlias}`, sk: 'SNAPSHOT' }),
  aliasClaim: (proxyAlias: string): Key => ({ pk: `ALIAS#${proxyAlias}`, sk: 'CLAIM' }),
  proxySnapshotSeq: (proxyId: string): Key => ({ pk: `PROXY#${proxyId}`, sk: 'SNAPSEQ' }),
  rateCounter: (proxyId: string, window: 'minute' | 'day', windowStart: string): Key => ({
    pk: `LIMIT#${proxyId}#${window}#${windowStart}`,
    sk: 'COUNTER',
  }),
  meterCounter: (meterId: string, window: MeterWindow, windowStart: string): Key => ({
    pk: `LIMIT#METER#${meterId}#${window}#${windowStart}`,
    sk: 'COUNTER',
  }),
  meter: (clientId: string, scope: MeterScope, parentId: string, meterId: string): Key => ({
    pk: `CLIENT#${clientId}`,
    sk: `METER#${scope}#${parentId}#${meterId}`,
  }),
  metersPrefix: (clientId: string, scope: MeterScope, parentId: string) => ({
    pk: `CLIENT#${clientId}`,
    skPrefix: `METER#${scope}#${parentId}#`,
  }),

  requestLog: (proxyId: string, day: string, requestId: string): Key => ({
    pk: `REQLOG#${proxyId}#${day}`,
    sk: requestId,
  }),
  requestLogPartition: (proxyId: string, day: string) => ({ pk: `REQLOG#${proxyId}#${day}` }),
  telemetryBucket: (scope: 'CLIENT' | 'PROXY', id: string, interval: Interval, bucketStart: string): Key => ({
    pk: `TELEMETRY#${scope}#${id}#${interval}`,
    sk: bucketStart,
  }),
  telemetrySeries: (scope: 'CLIENT' | 'PROXY', id: string, interval: Interval) => ({
    pk: `TELEMETRY#${scope}#${id}#${interval}`,
  }),
  proxyOwner: (proxyId: string): Key => ({ pk: `PROXYOWNER#${proxyId}`, sk: 'OWNER' }),
  proxyPath: (proxyId: string, pathTemplate: string): Key => ({
    pk: `PROXYPATH#${proxyId}`,
    sk: pathTemplate,
  }),
  proxyPaths: (proxyId: string) => ({ pk: `PROXYPATH#${proxyId}` }),
  anomalyRaised: (proxyId: string, interval: Interval, bucketStart: string, type: string): Key => ({
    pk: `ANOMALY#${proxyId}`,
    sk: `${interval}#${bucketStart}#${type}`,
  }),
  /**
   * A call whose start record was aggregated and whose completion was not (yet), in one of a few
   * partitions (slot) so the writes spread; sorted by when the call began, so the sweep that turns
   * the overdue ones into `unknown` reads only those (lambdas/telemetry/unknown-calls.ts).
   */
  pendingCall: (slot: number, processedAt: string, requestId: string): Key => ({
    pk: `PENDINGCALL#${slot}`,
    sk: `${processedAt}#${requestId}`,
  }),
  pendingCallPartition: (slot: number) => ({ pk: `PENDINGCALL#${slot}` }),
  streamCheckpoint: (streamName: string, shardId: string): Key => ({
    pk: `CHECKPOINT#${streamName}`,
    sk: shardId,
  }),
  oauthGrant: (credentialId: string): Key => ({ pk: `OAUTHGRANT#${credentialId}`, sk: 'GRANT' }),
  oauthState: (stateHash: string): Key => ({ pk: `OAUTHSTATE#${stateHash}`, sk: 'STATE' }),
  seen: (requestId: string): Key => ({ pk: `SEEN#${requestId}`, sk: 'SEEN' }),
  meta: (name: string): Key => ({ pk: `META#${name}`, sk: 'META' }),
  byRegion: (region: string, entity: string, clientId: string, id: string) => ({
    gsi1pk: `REGION#${region}#${entity}`,
    gsi1sk: `${clientId}#${id}`,
  }),
} as const;

/** Table layout shared by the CDK construct, the local bootstrap and the tests. */
export const tableLayout = {
  partitionKey: 'pk',
  sortKey: 'sk',
  ttlAttribute: 'ttl',
  gsi1: { name: 'gsi1', partitionKey: 'gsi1pk', sortKey: 'gsi1sk' },
} as const;
