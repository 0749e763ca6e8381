import { gunzipSync } from 'node:zlib';
import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import { BatchWriteCommand, GetCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import type { KinesisStreamBatchResponse, KinesisStreamEvent, KinesisStreamRecord } from 'aws-lambda';
import { z } from 'zod';
import type { Cell, Deps, TableRef } from '../shared/deps.ts';
import { logger } from '../shared/logger.ts';
import { type Interval, keys } from '../storage/keys.ts';
import { isConditionFailure } from '../storage/table.ts';
import type { Anomaly } from './anomalies.ts';
import { recordsFromLogPayload } from './log-sink.ts';
import { maskHeaders, maskPath, maskQuery } from './masking.ts';
import { embeddedMetricFields, PRODUCT_METRICS } from './metrics.ts';
import { bucketStarts, judgeProxy, type PathSeen } from './proxy-anomalies.ts';
import type { TelemetryRecord } from './record.ts';
import { REQUEST_ID_PATTERN, requestIdTime } from './request-id.ts';
import {
  addRecord,
  BUCKET_RETENTION_DAYS,
  bucketStart,
  type Delta,
  deltaAttributes,
  emptyDelta,
  INTERVAL_MS,
  INTERVALS,
  pathTemplate,
} from './rollup.ts';

/**
 * The telemetry aggregator: a Kinesis batch in, request-log items and rollups out, with an
 * exactly-once *effect* although Kinesis delivers at least once (redelivery after an error or a
 * timeout, bisected batches, replays from a partial-failure checkpoint) and DynamoDB transactions
 * are not used (dynalite has none; they would also cap a batch at 100 items).
 *
 * Why nothing is counted twice:
 *  - Request-log items are keyed by requestId (REQLOG#<proxyId>#<day> / <requestId>). Writing one
 *    again writes the same item: idempotent by key.
 *  - Each telemetry bucket item carries one watermark per Kinesis shard, `wm_<shardId>`: the
 *    highest sequence number of that shard already added into the bucket. The records of a batch
 *    that fall in one bucket are summed and applied with ONE UpdateItem that ADDs the sums and sets
 *    the watermark to their highest sequence number, on the condition that the watermark is below
 *    their lowest. Kinesis delivers a shard in sequence order (Lambda's event source mapping keeps
 *    that order, with ParallelizationFactor 1), so every record of a shard at or below a bucket's
 *    watermark is already in it. When the condition fails (a replay, a differently split batch, an
 *    UpdateItem that succeeded although its answer was lost), the item is read, the records above
 *    the watermark are kept, and the update is retried on the condition that the watermark still is
 *    what was read (optimistic concurrency). Counts, byte sums and histogram counts change exactly
 *    once per record, in one atomic single-item write — no transaction needed.
 *  - Watermarks are per bucket, not per batch: when the update of one bucket fails, only the records
 *    of that bucket are reported as failed; Lambda redelivers from the lowest of them, the buckets
 *    that already took the later records skip them, the failed bucket takes them.
 *  - Sequence numbers are decimal strings of up to 129 digits; they are zero-padded to 129 so that
 *    DynamoDB's string comparison is numeric.
 * Limit: a record older than a bucket's watermark on its own shard is never counted again — which
 * is the point — so an out-of-order replay (e.g. from an on-failure destination, after the mapping
 * had skipped a batch) is deduplicated into the log but not re-counted.
 */

const SEQ_WIDTH = 129;
const padSeq = (seq: string) => seq.padStart(SEQ_WIDTH, '0');
const MAX_UPDATE_ATTEMPTS = 6;
const BUCKET_CONCURRENCY = 16;

const recordSchema = z.looseObject({
  requestId: z.string().regex(REQUEST_ID_PATTERN),
  processedAt: z.iso.datetime({ offset: true }),
  clientId: z.string().min(1).max(128).optional(),
  proxyId: z.string().min(1).max(128),
  proxyCredentialId: z.string().max(128).optional(),
  targetCredentialId: z.string().max(128).optional(),
  targetId: z.string().max(128).optional(),
  method: z.string().min(1).max(32),
  path: z.string().max(8192),
  query: z.string().max(8192),
  headers: z.record(z.string(), z.string()).optional(),
  status: z.number().int().min(0).max(999),
  proxyCode: z.string().max(128),
  decision: z.enum([
    'allowed',
    'denied',
    'unauthenticated',
    'rate_limited',
    'inactive',
    'bad_request',
    'error',
  ]),
  rule: z
    .object({ ruleId: z.string(), scope: z.string(), effect: z.string(), priority: z.number() })
    .optional(),
  durations: z.object({
    gatewayMs: z.number().min(0).max(3_600_000),
    upstreamMs: z.number().min(0).max(3_600_000).optional(),
    ttfbMs: z.number().min(0).max(3_600_000).optional(),
  }),
  end: z.enum(['complete', 'client_abort', 'vendor_abort', 'deadline']).optional(),
  bytes: z.object({ in: z.number().min(0), out: z.number().min(0) }),
  sourceIp: z.string().max(64).optional(),
  userAgent: z.string().max(2048).optional(),
});

interface Decoded {
  seq: string;
  padded: string;
  shardId: string;
  cell: Cell;
  record: TelemetryRecord;
}

export interface AggregateResult {
  /** Sequence numbers of records that must be redelivered. */
  failed: Set<string>;
  /** Records that can never be processed (not JSON, wrong shape): logged and skipped. */
  poison: number;
  /** DynamoDB writes issued (log items + bucket updates + marker updates), for the benchmark. */
  writes: number;
  /** Anomaly flags raised for the first time by this batch (each counted once in AnomalyFlags). */
  flagged: number;
}

/** Module-scope caches (per Lambda container) so markers are written once per proxy/path and day. */
const markerCache = new Set<string>();
function rememberMarker(key: string): void {
  if (markerCache.has(key)) return;
  if (markerCache.size > 50_000) markerCache.clear();
  markerCache.add(key);
}

function cellFor(deps: Deps, region: string | undefined): Cell | undefined {
  if (region && deps.cells[region]) return deps.cells[region];
  return deps.cells[deps.config.homeRegion] ?? Object.values(deps.cells)[0];
}

/**
 * The telemetry records a Kinesis record carries: one JSON record (put by the Kinesis emitter), or
 * several in a gzipped CloudWatch Logs subscription payload (the Lambda proxy's log route). All the
 * records of one Kinesis record share its sequence number; they always travel together, so the
 * watermarks below stay exact.
 */
function payloadRecords(data: Buffer): unknown[] | string {
  if (data[0] === 0x1f && data[1] === 0x8b) {
    try {
      return recordsFromLogPayload(JSON.parse(gunzipSync(data).toString('utf8')));
    } catch {
      return 'not a CloudWatch Logs payload';
    }
  }
  try {
    return [JSON.parse(data.toString('utf8'))];
  } catch {
    return 'not JSON';
  }
}

function decode(deps: Deps, r: KinesisStreamRecord): Decoded[] | string {
  const raws = payloadRecords(Buffer.from(r.kinesis.data, 'base64'));
  if (typeof raws === 'string') return raws;
  const cell = cellFor(deps, r.awsRegion);
  if (!cell) return 'no cell for region';
  const shardId = r.eventID.includes(':') ? r.eventID.slice(0, r.eventID.indexOf(':')) : 'shard';
  const out: Decoded[] = [];
  for (const raw of raws) {
    const parsed = recordSchema.safeParse(raw);
    if (!parsed.success) {
      if (raws.length === 1) return `invalid field ${parsed.error.issues[0]?.path.join('.') ?? '?'}`;
      logger.error('telemetry record skipped', { reason: 'invalid field', eventID: r.eventID });
      continue;
    }
    const record = parsed.data as TelemetryRecord;
    // Defence in depth: the proxy masks before emitting; masking again is a no-op on masked values.
    record.query = maskQuery(record.query);
    record.path = maskPath(record.path);
    if (record.headers) record.headers = maskHeaders(record.headers);
    out.push({
      seq: r.kinesis.sequenceNumber,
      padded: padSeq(r.kinesis.sequenceNumber),
      shardId,
      cell,
      record,
    });
  }
  return out;
}

function dayOf(requestId: string): string {
  return requestIdTime(requestId)!.toISOString().slice(0, 10);
}

function epochSeconds(time: Date, plusDays: number): number {
  return Math.floor(time.getTime() / 1000) + plusDays * 86_400;
}

/** Writes request-log items, 25 per BatchWrite; answers the requestIds that could not be written. */
async function writeLog(
  deps: Deps,
  table: TableRef,
  items: Decoded[],
  counter: { writes: number },
): Promise<Set<string>> {
  const failed = new Set<string>();
  const unique = new Map<string, Decoded>();
  for (const d of items) unique.set(d.record.requestId, d);
  const all = [...unique.values()];
  for (let i = 0; i < all.length; i += 25) {
    const chunk = all.slice(i, i + 25);
    let requests = chunk.map((d) => ({
      PutRequest: {
        Item: {
          ...keys.requestLog(d.record.proxyId, dayOf(d.record.requestId), d.record.requestId),
          type: 'RequestLog',
          ...d.record,
          ttl: epochSeconds(new Date(d.record.processedAt), deps.config.requestLogRetentionDays),
        },
      },
    }));
    try {
      for (let attempt = 0; requests.length > 0; attempt++) {
        if (attempt >= 5) throw new Error('DynamoDB left request-log items unprocessed');
        counter.writes += requests.length;
        const out = await table.ddb.send(
          new BatchWriteCommand({ RequestItems: { [table.tableName]: requests } }),
        );
        requests = (out.UnprocessedItems?.[table.tableName] ?? []) as typeof requests;
        if (requests.length > 0) await new Promise((r) => setTimeout(r, 25 * 2 ** attempt));
      }
    } catch (error) {
      logger.warn('request-log write failed', { count: chunk.length, errorName: (error as Error).name });
      for (const d of chunk) failed.add(d.record.requestId);
    }
  }
  return failed;
}

interface BucketGroup {
  table: TableRef;
  key: { pk: string; sk: string };
  meta: Record<string, unknown>;
  ttl: number;
  shardId: string;
  /** Sorted by sequence number. */
  entries: Decoded[];
}

/**
 * Applies one bucket group exactly once (see the header comment). Answers false when it could not
 * be applied; its records are then redelivered.
 */
async function applyBucket(g: BucketGroup, counter: { writes: number }): Promise<boolean> {
  const wmName = `wm_${g.shardId}`;
  let pending = g.entries;
  // undefined: watermark unknown (first try); null: known absent; string: known value.
  let expected: string | null | undefined;
  for (let attempt = 0; attempt < MAX_UPDATE_ATTEMPTS; attempt++) {
    const delta: Delta = emptyDelta();
    for (const e of pending) addRecord(delta, e.record);
    const adds = Object.entries(deltaAttributes(delta));
    const names: Record<string, string> = { '#wm': wmName, '#ttl': 'ttl' };
    const values: Record<string, unknown> = {
      ':last': pending[pending.length - 1]!.padded,
      ':ttl': g.ttl,
    };
    const sets = ['#wm = :last', '#ttl = :ttl'];
    for (const [i, [k, v]] of Object.entries(g.meta).entries()) {
      names[`#m${i}`] = k;
      values[`:m${i}`] = v;
      sets.push(`#m${i} = :m${i}`);
    }
    const addParts = adds.map(([k, v], i) => {
      names[`#a${i}`] = k;
      values[`:a${i}`] = v;
      return `#a${i} :a${i}`;
    });
    let condition: string;
    if (expected === undefined) {
      condition = 'attribute_not_exists(#wm) OR #wm < :first';
      values[':first'] = pending[0]!.padded;
    } else if (expected === null) {
      condition = 'attribute_not_exists(#wm)';
    } else {
      condition = '#wm = :expected';
      values[':expected'] = expected;
    }
    try {
      counter.writes++;
      await g.table.ddb.send(
        new UpdateCommand({
          TableName: g.table.tableName,
          Key: g.key,
          UpdateExpression: `SET ${sets.join(', ')}${addParts.length ? ` ADD ${addParts.join(', ')}` : ''}`,
          ConditionExpression: condition,
          ExpressionAttributeNames: names,
          ExpressionAttributeValues: values,
        }),
      );
      return true;
    } catch (error) {
      if (!isConditionFailure(error)) {
        logger.warn('telemetry bucket update failed', {
          bucket: `${g.key.pk}/${g.key.sk}`,
          errorName: (error as Error).name,
          attempt,
        });
        await new Promise((r) => setTimeout(r, 20 * 2 ** attempt));
        // The write may have happened although we saw an error: re-read before trying again.
        expected = undefined;
        pending = g.entries;
        continue;
      }
    }
    try {
      const out = await g.table.ddb.send(
        new GetCommand({
          TableName: g.table.tableName,
          Key: g.key,
          ConsistentRead: true,
          ProjectionExpression: '#wm',
          ExpressionAttributeNames: { '#wm': wmName },
        }),
      );
      const wm = out.Item?.[wmName] as string | undefined;
      expected = wm ?? null;
      pending = wm === undefined ? g.entries : g.entries.filter((e) => e.padded > wm);
      if (pending.length === 0) return true; // every record already counted
    } catch (error) {
      logger.warn('telemetry bucket read failed', { errorName: (error as Error).name });
      expected = undefined;
      pending = g.entries;
    }
  }
  return false;
}

/**
 * Upserts the proxy's owner marker and its first-seen paths (idempotent: if_not_exists). Answers
 * the requestIds to redeliver and the paths this batch saw first (by `<table>|<proxyId>`): the path
 * markers it created, known from their old value, so anomaly detection needs no scan of them.
 */
async function writeMarkers(
  deps: Deps,
  items: Decoded[],
  counter: { writes: number },
): Promise<{ failed: Set<string>; newPaths: Map<string, PathSeen[]> }> {
  const failed = new Set<string>();
  const newPaths = new Map<string, PathSeen[]>();
  const jobs = new Map<string, { run: () => Promise<unknown>; requestIds: string[] }>();
  for (const d of items) {
    const r = d.record;
    if (!r.clientId) continue;
    const day = r.processedAt.slice(0, 10);
    const ttl = epochSeconds(new Date(r.processedAt), deps.config.requestLogRetentionDays + 1);
    const ownerKey = `${d.cell.tableName}|owner|${r.proxyId}|${day}`;
    const template = pathTemplate(r.path);
    const pathKey = `${d.cell.tableName}|path|${r.proxyId}|${template}|${day}`;
    const pathMarker = { type: 'ProxyPath', proxyId: r.proxyId, path: template };
    const markers: {
      cacheKey: string;
      key: { pk: string; sk: string };
      extra: Record<string, string>;
      stampDenied?: boolean;
    }[] = [
      {
        cacheKey: ownerKey,
        key: keys.proxyOwner(r.proxyId),
        extra: { clientId: r.clientId, type: 'ProxyOwner', proxyId: r.proxyId },
      },
      { cacheKey: pathKey, key: keys.proxyPath(r.proxyId, template), extra: pathMarker },
    ];
    // A denied call also stamps when its path was first denied (once per path and day and container).
    if (r.decision === 'denied')
      markers.push({
        cacheKey: `${pathKey}|denied`,
        key: keys.proxyPath(r.proxyId, template),
        extra: pathMarker,
        stampDenied: true,
      });
    for (const { cacheKey, key, extra, stampDenied } of markers) {
      if (markerCache.has(cacheKey)) continue;
      const job = jobs.get(cacheKey);
      if (job) {
        job.requestIds.push(r.requestId);
        continue;
      }
      jobs.set(cacheKey, {
        requestIds: [r.requestId],
        run: async () => {
          counter.writes++;
          const names: Record<string, string> = { '#f': 'firstSeenAt', '#l': 'lastSeenDay', '#ttl': 'ttl' };
          const values: Record<string, unknown> = { ':f': r.processedAt, ':l': day, ':ttl': ttl };
          const sets = ['#f = if_not_exists(#f, :f)', '#l = :l', '#ttl = :ttl'];
          if (stampDenied) {
            names['#d'] = 'firstDeniedAt';
            sets.push('#d = if_not_exists(#d, :f)');
          }
          for (const [i, [k, v]] of Object.entries(extra).entries()) {
            names[`#e${i}`] = k;
            values[`:e${i}`] = v;
            sets.push(`#e${i} = :e${i}`);
          }
          const out = await d.cell.ddb.send(
            new UpdateCommand({
              TableName: d.cell.tableName,
              Key: key,
              UpdateExpression: `SET ${sets.join(', ')}`,
              ExpressionAttributeNames: names,
              ExpressionAttributeValues: values,
              ReturnValues: 'ALL_OLD',
            }),
          );
          // What this write was the first to stamp (never both writes of one path: if_not_exists).
          const seenFirst = extra.type === 'ProxyPath' && out.Attributes?.firstSeenAt === undefined;
          const deniedFirst = stampDenied && out.Attributes?.firstDeniedAt === undefined;
          if (seenFirst || deniedFirst) {
            const proxyKey = `${d.cell.tableName}|${r.proxyId}`;
            const list = newPaths.get(proxyKey) ?? [];
            list.push({
              path: template,
              ...(seenFirst ? { firstSeenAt: r.processedAt } : {}),
              ...(deniedFirst ? { firstDeniedAt: r.processedAt } : {}),
            });
            newPaths.set(proxyKey, list);
          }
          rememberMarker(cacheKey);
        },
      });
    }
  }
  await runLimited([...jobs.values()], BUCKET_CONCURRENCY, async (job) => {
    try {
      await job.run();
    } catch (error) {
      logger.warn('telemetry marker write failed', { errorName: (error as Error).name });
      for (const id of job.requestIds) failed.add(id);
    }
  });
  return { failed, newPaths };
}

async function runLimited<T>(items: T[], limit: number, fn: (item: T) => Promise<void>) {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await fn(items[next++]!);
  });
  await Promise.all(workers);
}

/**
 * Aggregates a batch of Kinesis records: request-log items, rollups (client and proxy × minute,
 * hour, day) and the anomaly markers. Answers which records must be redelivered.
 */
export async function aggregate(deps: Deps, records: KinesisStreamRecord[]): Promise<AggregateResult> {
  const counter = { writes: 0 };
  const decoded: Decoded[] = [];
  let poison = 0;
  for (const r of records) {
    const d = decode(deps, r);
    if (typeof d === 'string') {
      // A record that can never be processed must not block its shard: count it, log where it
      // was (never its content, which may be anything), skip it.
      poison++;
      logger.error('telemetry record skipped', { reason: d, eventID: r.eventID });
    } else decoded.push(...d);
  }

  // Request log, per table.
  const byTable = new Map<string, { table: TableRef; items: Decoded[] }>();
  for (const d of decoded) {
    const entry = byTable.get(d.cell.tableName) ?? { table: d.cell, items: [] };
    entry.items.push(d);
    byTable.set(d.cell.tableName, entry);
  }

  // Bucket groups: (table, bucket, shard) → records.
  const groups = new Map<string, BucketGroup>();
  for (const d of decoded) {
    const r = d.record;
    if (!r.clientId) continue; // unknown proxy: no tenant to roll up for
    const at = new Date(r.processedAt);
    for (const [scope, id] of [
      ['CLIENT', r.clientId],
      ['PROXY', r.proxyId],
    ] as const) {
      for (const interval of INTERVALS) {
        const start = bucketStart(at, interval);
        const key = keys.telemetryBucket(scope, id, interval, start);
        const gk = `${d.cell.tableName}|${key.pk}|${key.sk}|${d.shardId}`;
        let g = groups.get(gk);
        if (!g) {
          g = {
            table: d.cell,
            key,
            shardId: d.shardId,
            meta: bucketMeta(scope, id, interval, start, r.clientId),
            ttl: epochSeconds(new Date(start), BUCKET_RETENTION_DAYS[interval] + 1),
            entries: [],
          };
          groups.set(gk, g);
        }
        g.entries.push(d);
      }
    }
  }
  for (const g of groups.values()) g.entries.sort((a, b) => (a.padded < b.padded ? -1 : 1));

  const failedIds = new Set<string>();
  const [logFailures, markers] = await Promise.all([
    Promise.all([...byTable.values()].map(({ table, items }) => writeLog(deps, table, items, counter))),
    writeMarkers(deps, decoded, counter),
    runLimited([...groups.values()], BUCKET_CONCURRENCY, async (g) => {
      if (!(await applyBucket(g, counter))) for (const e of g.entries) failedIds.add(e.record.requestId);
    }),
  ]);
  for (const s of logFailures) for (const id of s) failedIds.add(id);
  for (const id of markers.failed) failedIds.add(id);
  const flagged = await raiseAnomalies(
    deps,
    decoded.filter((d) => !failedIds.has(d.record.requestId)),
    markers.newPaths,
    counter,
  );
  const failed = new Set(decoded.filter((d) => failedIds.has(d.record.requestId)).map((d) => d.seq));
  return { failed, poison, writes: counter.writes, flagged };
}

/** A batch judges at most this many of a proxy's latest minutes (a replay of old records, fewer). */
const MAX_JUDGED_MINUTES = 10;

/**
 * The AnomalyFlags metric: after a batch is rolled up, each proxy it touched is judged, per minute
 * bucket it touched, against its own baseline — the same detection the telemetry API shows
 * (./proxy-anomalies.ts). A bucket is judged on what has arrived so far, so a spike is flagged while
 * it happens; each flag (proxy, minute, type) is recorded once by a conditional write, and only a
 * flag recorded for the first time is logged, with the metric in embedded metric format. So
 * redelivered or replayed batches, later batches of the same minute and concurrent containers never
 * count a flag twice. Costs per proxy and batch: one Query (31 minute buckets) and one GetItem.
 * Best effort: a failure here is logged and never fails the batch — the records are already stored
 * and counted, and the telemetry API judges from them whenever it is asked.
 * A rate surge judged early in a minute (say the first 10 requests all fail) is counted even if the
 * rest of the minute dilutes it below the threshold, which the API, judging the whole bucket, then
 * no longer shows.
 */
async function raiseAnomalies(
  deps: Deps,
  applied: Decoded[],
  newPaths: Map<string, PathSeen[]>,
  counter: { writes: number },
): Promise<number> {
  const proxies = new Map<
    string,
    { table: TableRef; proxyId: string; clientId: string; minutes: Set<string> }
  >();
  for (const d of applied) {
    const r = d.record;
    if (!r.clientId) continue;
    const key = `${d.cell.tableName}|${r.proxyId}`;
    const entry = proxies.get(key) ?? {
      table: d.cell,
      proxyId: r.proxyId,
      clientId: r.clientId,
      minutes: new Set(),
    };
    entry.minutes.add(bucketStart(new Date(r.processedAt), 'minute'));
    proxies.set(key, entry);
  }
  let flagged = 0;
  await runLimited([...proxies.entries()], BUCKET_CONCURRENCY, async ([key, p]) => {
    const minutes = [...p.minutes].sort();
    const last = new Date(minutes[minutes.length - 1]!);
    const span = (last.getTime() - Date.parse(minutes[0]!)) / INTERVAL_MS.minute + 1;
    const range = bucketStarts(last, 'minute', Math.min(span, MAX_JUDGED_MINUTES));
    try {
      const { flags } = await judgeProxy(p.table, p.proxyId, 'minute', range, newPaths.get(key) ?? []);
      for (const [start, list] of flags) {
        if (!p.minutes.has(start)) continue;
        for (const flag of list) {
          if (await recordFlag(p.table, p.proxyId, start, flag, counter)) {
            flagged++;
            logger.info('anomaly flagged', {
              ...embeddedMetricFields([PRODUCT_METRICS.anomalyFlags], deps.now().getTime()),
              clientId: p.clientId,
              proxyId: p.proxyId,
              interval: 'minute',
              bucketStart: start,
              anomaly: flag,
            });
          }
        }
      }
    } catch (error) {
      logger.warn('anomaly check failed', { proxyId: p.proxyId, errorName: (error as Error).name });
    }
  });
  return flagged;
}

/** Records a flag once; answers whether this call was the first to record it. */
async function recordFlag(
  table: TableRef,
  proxyId: string,
  start: string,
  flag: Anomaly,
  counter: { writes: number },
): Promise<boolean> {
  counter.writes++;
  try {
    await table.ddb.send(
      new UpdateCommand({
        TableName: table.tableName,
        Key: keys.anomalyRaised(proxyId, 'minute', start, flag.type),
        UpdateExpression: 'SET #t = :t, #r = :r, #ttl = :ttl',
        ConditionExpression: 'attribute_not_exists(pk)',
        ExpressionAttributeNames: { '#t': 'type', '#r': 'reason', '#ttl': 'ttl' },
        ExpressionAttributeValues: {
          ':t': 'AnomalyRaised',
          ':r': flag.reason,
          ':ttl': epochSeconds(new Date(start), 2),
        },
      }),
    );
    return true;
  } catch (error) {
    if (isConditionFailure(error)) return false;
    throw error;
  }
}

function bucketMeta(scope: string, id: string, interval: Interval, start: string, clientId: string) {
  return {
    type: 'TelemetryBucket',
    scope: scope === 'CLIENT' ? 'client' : 'proxy',
    ...(scope === 'PROXY' ? { proxyId: id } : {}),
    clientId,
    interval,
    bucketStart: start,
  };
}

/**
 * The aggregator's handler for a Kinesis event source mapping with ReportBatchItemFailures: the
 * answer names each record to redeliver (Lambda restarts the shard from the lowest of them).
 */
export function createAggregatorHandler(deps: Deps) {
  return async (event: KinesisStreamEvent): Promise<KinesisStreamBatchResponse> => {
    const { failed, poison } = await aggregate(deps, event.Records);
    if (failed.size > 0 || poison > 0)
      logger.info('telemetry batch processed', {
        records: event.Records.length,
        failed: failed.size,
        poison,
      });
    const processor = new BatchProcessor(EventType.KinesisDataStreams);
    return processPartialResponse(
      event,
      async (record: KinesisStreamRecord) => {
        if (failed.has(record.kinesis.sequenceNumber)) throw new Error('telemetry record not aggregated');
      },
      processor,
      { throwOnFullBatchFailure: false },
    ) as Promise<KinesisStreamBatchResponse>;
  };
}
