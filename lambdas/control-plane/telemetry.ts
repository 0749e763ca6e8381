import { QueryCommand } from '@aws-sdk/lib-dynamodb';
import * as z from 'zod/mini';
import type { Deps, TableRef } from '../shared/deps.ts';
import { BadRequestError, NotFoundError } from '../shared/errors.ts';
import { type Interval, keys } from '../storage/keys.ts';
import { getItem, type Item, publicView, queryPrefix } from '../storage/table.ts';
import { bucketStarts, judgeProxy, readSeries } from '../telemetry/proxy-anomalies.ts';
import {
  REQUEST_ID_PATTERN,
  requestIdLowerBound,
  requestIdTime,
  requestIdUpperBound,
} from '../telemetry/request-id.ts';
import { bucketView } from '../telemetry/rollup.ts';
import { authorizeClient } from './clients.ts';
import type { Caller } from './identity.ts';
import { decodeCursor, encodeCursor, limitParam } from './paging.ts';
import { upTo } from './schema-parts.ts';

/**
 * The read side of telemetry: the request log of a proxy and the telemetry buckets of a client or
 * a proxy. Tenancy: the caller must be a member of the client (else 404), and the proxy must be the
 * client's — either its Core API item exists in a cell table, or, once the proxy is deleted, the
 * owner marker the aggregator wrote from the gateway's own records says so. A deleted proxy's (or
 * credential's) records therefore stay readable by its client until they age out (90 days by
 * default): deleting a proxy stops its traffic, not its audit trail. Deleting the client ends
 * access to all of it.
 */

/** Distinct tables of the cells (locally every cell shares one table). */
function cellTables(deps: Deps): TableRef[] {
  const seen = new Map<string, TableRef>();
  for (const cell of Object.values(deps.cells)) if (!seen.has(cell.tableName)) seen.set(cell.tableName, cell);
  return [...seen.values()];
}

/** The cell table holding a client's proxy's telemetry, or 404. */
async function proxyTable(deps: Deps, clientId: string, proxyId: string): Promise<TableRef> {
  const found = await Promise.all(
    cellTables(deps).map(async (table) => {
      const [proxy, owner] = await Promise.all([
        getItem(table, keys.proxy(clientId, proxyId)),
        getItem<{ clientId?: string }>(table, keys.proxyOwner(proxyId)),
      ]);
      return { table, proxy: !!proxy, owned: owner?.clientId === clientId };
    }),
  );
  const hit = found.find((f) => f.proxy) ?? found.find((f) => f.owned);
  if (!hit) throw new NotFoundError('Proxy not found');
  return hit.table;
}

const isoTime = z.iso.datetime({ offset: true });

export const requestsQuerySchema = z.strictObject({
  processedAfter: z.optional(isoTime),
  processedBefore: z.optional(isoTime),
  limit: z.optional(limitParam(1000)),
  nextToken: z.optional(upTo(200)),
});

const REQUESTS_DEFAULT_LIMIT = 100;
/** The aggregator's bookkeeping on a request-log item (which completion counted), not part of the record. */
const LOG_INTERNAL = ['countedBy'];
/** Clock skew tolerated between the proxy's clock and ours for "up to now". */
const SKEW_MS = 60_000;

function isLive(item: Item, nowSeconds: number): boolean {
  return typeof item.ttl !== 'number' || item.ttl > nowSeconds;
}

/**
 * Request-log records of a proxy, newest first, in [processedAfter, processedBefore] (default: the
 * whole retention period up to now). The answer also counts the page's records per target and
 * proxy credential, which is the rotation check in one call: after moving a proxy to a new target
 * credential, `GET …/requests?processedAfter=<the PUT's time>` shows only the new credential.
 */
export async function listRequests(
  deps: Deps,
  caller: Caller,
  clientId: string,
  proxyId: string,
  q: z.infer<typeof requestsQuerySchema>,
) {
  await authorizeClient(deps, caller, clientId, 'user');
  const table = await proxyTable(deps, clientId, proxyId);
  const now = deps.now();
  const oldest = now.getTime() - deps.config.requestLogRetentionDays * 86_400_000;
  const after = q.processedAfter ? Date.parse(q.processedAfter) : oldest;
  const before = q.processedBefore ? Date.parse(q.processedBefore) : now.getTime() + SKEW_MS;
  // Only a range the caller spelled out in full can be wrong; against a default (now, the
  // retention period) an out-of-range bound simply selects nothing: an empty page.
  if (q.processedAfter && q.processedBefore && after > before)
    throw new BadRequestError('processedAfter must not be later than processedBefore', 'invalid_range');
  const limit = q.limit ?? REQUESTS_DEFAULT_LIMIT;
  const from = Math.max(after, oldest);
  let upper = requestIdUpperBound(new Date(before));
  const cursor = q.nextToken
    ? decodeCursor(q.nextToken, 'before', (id) => REQUEST_ID_PATTERN.test(id))
    : undefined;
  if (cursor && cursor < upper) upper = cursor;
  const lower = requestIdLowerBound(new Date(from));
  const nowSeconds = Math.floor(now.getTime() / 1000);

  const records: Item[] = [];
  let more = false;
  if (lower <= upper) {
    const days: string[] = [];
    const firstDay = Date.parse(new Date(from).toISOString().slice(0, 10));
    for (
      let day = Date.parse(requestIdTime(upper)!.toISOString().slice(0, 10));
      day >= firstDay;
      day -= 86_400_000
    )
      days.push(new Date(day).toISOString().slice(0, 10));
    const queryDay = async (dayKey: string, want: number, startKey?: Record<string, unknown>) => {
      const out = await table.ddb.send(
        new QueryCommand({
          TableName: table.tableName,
          KeyConditionExpression: 'pk = :pk AND sk BETWEEN :lo AND :hi',
          ExpressionAttributeValues: {
            ':pk': keys.requestLogPartition(proxyId, dayKey).pk,
            ':lo': lower,
            ':hi': upper,
          },
          ScanIndexForward: false,
          ConsistentRead: true,
          Limit: want,
          ExclusiveStartKey: startKey,
        }),
      );
      return { items: out.Items ?? [], lastKey: out.LastEvaluatedKey };
    };
    // Day partitions are read a window at a time, in parallel, and consumed newest first: a sparse
    // log over the whole retention period costs a dozen round trips, not ninety.
    const WINDOW = 8;
    outer: for (let w = 0; w < days.length; w += WINDOW) {
      const want = limit + 2 - records.length;
      const window = days.slice(w, w + WINDOW);
      const pages = await Promise.all(window.map((d) => queryDay(d, want)));
      for (const [i, first] of pages.entries()) {
        let page: { items: Item[]; lastKey?: Record<string, unknown> } = first;
        for (;;) {
          for (const item of page.items) {
            if (item.sk === cursor || !isLive(item, nowSeconds)) continue;
            if (records.length === limit) {
              more = true;
              break outer;
            }
            records.push(item);
          }
          if (!page.lastKey) break;
          page = await queryDay(window[i]!, limit + 2 - records.length, page.lastKey);
        }
      }
    }
  }

  const byTargetCredential: Record<string, number> = {};
  const byProxyCredential: Record<string, number> = {};
  for (const r of records) {
    const t = String(r.targetCredentialId ?? 'none');
    const p = String(r.proxyCredentialId ?? 'none');
    byTargetCredential[t] = (byTargetCredential[t] ?? 0) + 1;
    byProxyCredential[p] = (byProxyCredential[p] ?? 0) + 1;
  }
  const last = records[records.length - 1];
  return {
    requests: records.map((r) => publicView(r, LOG_INTERNAL)),
    count: records.length,
    summary: { byTargetCredentialId: byTargetCredential, byProxyCredentialId: byProxyCredential },
    ...(more && last ? { nextToken: encodeCursor('before', String(last.sk)) } : {}),
  };
}

/** One request-log record by id. */
export async function getRequest(
  deps: Deps,
  caller: Caller,
  clientId: string,
  proxyId: string,
  requestId: string,
) {
  if (!REQUEST_ID_PATTERN.test(requestId))
    throw new BadRequestError('requestId is not a keygate request id', 'invalid_request_id');
  await authorizeClient(deps, caller, clientId, 'user');
  const table = await proxyTable(deps, clientId, proxyId);
  const day = requestIdTime(requestId)!.toISOString().slice(0, 10);
  const item = await getItem(table, keys.requestLog(proxyId, day, requestId));
  if (!item || !isLive(item, Math.floor(deps.now().getTime() / 1000)))
    throw new NotFoundError('Request not found', 'request_not_found');
  return publicView(item, LOG_INTERNAL);
}

const DEFAULT_BUCKETS: Record<Interval, number> = { minute: 60, hour: 24, day: 30 };
const MAX_BUCKETS: Record<Interval, number> = { minute: 1440, hour: 840, day: 400 };

export const telemetryQuerySchema = z.strictObject({
  interval: z.optional(z.enum(['minute', 'hour', 'day'])),
  limit: z.optional(limitParam(1440)),
});

type TelemetryQuery = z.infer<typeof telemetryQuerySchema>;

function parseTelemetryQuery(q: TelemetryQuery) {
  const interval: Interval = q.interval ?? 'hour';
  const limit = q.limit ?? DEFAULT_BUCKETS[interval];
  if (limit > MAX_BUCKETS[interval])
    throw new BadRequestError(
      `query.limit: at most ${MAX_BUCKETS[interval]} ${interval} buckets are kept`,
      'validation_failed',
    );
  return { interval, limit };
}

/** Proxies whose flags a client answer includes at most (each costs three reads). */
const MAX_PROXIES_FLAGGED = 50;

/**
 * Telemetry of a client: every proxy of it, all cells, newest bucket first. Each bucket lists the
 * anomaly flags of the client's proxies (each judged against its own baseline), with the proxyId.
 */
export async function clientTelemetry(deps: Deps, caller: Caller, clientId: string, query: TelemetryQuery) {
  const { interval, limit } = parseTelemetryQuery(query);
  await authorizeClient(deps, caller, clientId, 'user');
  const range = bucketStarts(deps.now(), interval, limit);
  const tables = cellTables(deps);
  const [items, proxies] = await Promise.all([
    readSeries(
      tables,
      keys.telemetrySeries('CLIENT', clientId, interval).pk,
      range[0]!,
      range[range.length - 1]!,
    ),
    Promise.all(
      tables.map(async (table) =>
        (await queryPrefix<{ sk: string }>(table, keys.proxiesPrefix(clientId))).map((p) => ({
          table,
          proxyId: p.sk.slice('PROXY#'.length),
        })),
      ),
    ).then((lists) => lists.flat()),
  ]);
  const flagged = proxies.slice(0, MAX_PROXIES_FLAGGED);
  const perProxy = await Promise.all(
    flagged.map(async (p) => ({
      proxyId: p.proxyId,
      ...(await judgeProxy(p.table, p.proxyId, interval, range)),
    })),
  );
  return {
    clientId,
    interval,
    ...(proxies.length > flagged.length ? { anomaliesCoverProxies: flagged.length } : {}),
    buckets: range
      .map((s) => ({
        ...bucketView(s, items.get(s)),
        anomalies: perProxy.flatMap((p) => (p.flags.get(s) ?? []).map((f) => ({ proxyId: p.proxyId, ...f }))),
      }))
      .reverse(),
  };
}

/** Telemetry of one proxy with its anomaly flags, newest bucket first. */
export async function proxyTelemetry(
  deps: Deps,
  caller: Caller,
  clientId: string,
  proxyId: string,
  query: TelemetryQuery,
) {
  const { interval, limit } = parseTelemetryQuery(query);
  await authorizeClient(deps, caller, clientId, 'user');
  const table = await proxyTable(deps, clientId, proxyId);
  const { views, flags } = await judgeProxy(
    table,
    proxyId,
    interval,
    bucketStarts(deps.now(), interval, limit),
  );
  return {
    clientId,
    proxyId,
    interval,
    buckets: views.map((v) => ({ ...v, anomalies: flags.get(v.bucketStart) ?? [] })).reverse(),
  };
}
