import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import type { Deps, TableRef } from '../shared/deps.ts';
import { logger } from '../shared/logger.ts';
import { keys } from '../storage/keys.ts';
import { isConditionFailure } from '../storage/table.ts';
import type { Anomaly } from './anomalies.ts';
import { type Decoded, epochSeconds, runLimited } from './decode.ts';
import { loggerMetricFields, PRODUCT_METRICS } from './metrics.ts';
import { bucketStarts, judgeProxy, type PathSeen } from './proxy-anomalies.ts';
import { bucketStart, INTERVAL_MS, pathTemplate } from './rollup.ts';

/**
 * The aggregator's anomaly side: the markers anomaly detection reads (a proxy's owner, the paths
 * it has seen and been denied), and the AnomalyFlags metric judged after each batch.
 */

const CONCURRENCY = 16;

/** Module-scope caches (per Lambda container) so markers are written once per proxy/path and day. */
const markerCache = new Set<string>();
function rememberMarker(key: string): void {
  if (markerCache.has(key)) return;
  if (markerCache.size > 50_000) markerCache.clear();
  markerCache.add(key);
}

/**
 * Upserts the proxy's owner marker and its first-seen paths (idempotent: if_not_exists). Answers
 * the requestIds to redeliver and the paths this batch saw first (by `<table>|<proxyId>`): the path
 * markers it created, known from their old value, so anomaly detection needs no scan of them.
 */
export async function writeMarkers(
  deps: Deps,
  items: Decoded[],
  counter: { writes: number },
): Promise<{ failed: Set<string>; newPaths: Map<string, PathSeen[]> }> {
  const failed = new Set<string>();
  const newPaths = new Map<string, PathSeen[]>();
  const jobs = new Map<string, { run: () => Promise<unknown>; requestIds: string[] }>();
  for (const d of items) {
    const r = d.record;
    // No path markers for unauthenticated calls either: random paths would each leave an item.
    if (!r.clientId || r.decision === 'unauthenticated') continue;
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
  await runLimited([...jobs.values()], CONCURRENCY, async (job) => {
    try {
      await job.run();
    } catch (error) {
      logger.warn('telemetry marker write failed', { errorName: (error as Error).name });
      for (const id of job.requestIds) failed.add(id);
    }
  });
  return { failed, newPaths };
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
export async function raiseAnomalies(
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
  await runLimited([...proxies.entries()], CONCURRENCY, async ([key, p]) => {
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
              ...loggerMetricFields([PRODUCT_METRICS.anomalyFlags], deps.now().getTime()),
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
