import { QueryCommand } from '@aws-sdk/lib-dynamodb';
import type { TableRef } from '../shared/deps.ts';
import { type Interval, keys } from '../storage/keys.ts';
import { getItem, queryPrefix } from '../storage/table.ts';
import { type Anomaly, BASELINE_BUCKETS, type BucketCounts, detectAnomalies } from './anomalies.ts';
import { type BucketView, bucketStart, bucketView, INTERVAL_MS } from './rollup.ts';

/**
 * Judging one proxy's telemetry buckets against its own baseline, from the stored rollups. One
 * place for both readers: the telemetry API (flags in its answers) and the aggregator (the
 * AnomalyFlags metric, raised as records arrive).
 */

/** Bucket items of a series between two bucket starts (inclusive), summed across tables. */
export async function readSeries(tables: TableRef[], pk: string, first: string, last: string) {
  const byStart = new Map<string, Record<string, unknown>>();
  for (const table of tables) {
    let startKey: Record<string, unknown> | undefined;
    do {
      const out = await table.ddb.send(
        new QueryCommand({
          TableName: table.tableName,
          KeyConditionExpression: 'pk = :pk AND sk BETWEEN :a AND :b',
          ExpressionAttributeValues: { ':pk': pk, ':a': first, ':b': last },
          ConsistentRead: true,
          ExclusiveStartKey: startKey,
        }),
      );
      for (const item of out.Items ?? []) {
        const sk = String(item.sk);
        const merged = byStart.get(sk) ?? {};
        // Every stored number is a sum, so buckets of several cells merge by addition.
        for (const [k, v] of Object.entries(item)) {
          if (typeof v === 'number' && k !== 'ttl') merged[k] = ((merged[k] as number) ?? 0) + v;
        }
        byStart.set(sk, merged);
      }
      startKey = out.LastEvaluatedKey;
    } while (startKey);
  }
  return byStart;
}

/** The starts of `count` consecutive buckets ending with the one holding `last`, oldest first. */
export function bucketStarts(last: Date, interval: Interval, count: number): string[] {
  const end = Date.parse(bucketStart(last, interval));
  return Array.from({ length: count }, (_, i) =>
    bucketStart(end - (count - 1 - i) * INTERVAL_MS[interval], interval),
  );
}

export interface PathSeen {
  path: string;
  firstSeenAt?: string;
  firstDeniedAt?: string;
}

export interface ProxyJudgement {
  /** The judged buckets, oldest first. */
  views: BucketView[];
  /** Flags per judged bucket start; buckets without flags are absent. */
  flags: Map<string, Anomaly[]>;
}

/**
 * Flags of one proxy for the consecutive buckets `range` (oldest first). Reads the baseline and the
 * range in one query, the proxy's owner marker (its first traffic) and — unless the caller already
 * knows which paths are new, as the aggregator does — every path marker of the proxy.
 */
export async function judgeProxy(
  table: TableRef,
  proxyId: string,
  interval: Interval,
  range: string[],
  knownPaths?: PathSeen[],
): Promise<ProxyJudgement> {
  const baseline = BASELINE_BUCKETS[interval];
  const beforeFirst = new Date(Date.parse(range[0]!) - INTERVAL_MS[interval]);
  const all = [...bucketStarts(beforeFirst, interval, baseline), ...range];
  const [items, owner, paths] = await Promise.all([
    readSeries([table], keys.telemetrySeries('PROXY', proxyId, interval).pk, all[0]!, all[all.length - 1]!),
    getItem<{ firstSeenAt?: string }>(table, keys.proxyOwner(proxyId)),
    knownPaths ?? queryPrefix<PathSeen>(table, keys.proxyPaths(proxyId), { Limit: 5000 }),
  ]);
  const views = all.map((s) => bucketView(s, items.get(s)));
  const flags = detectAnomalies({
    interval,
    series: views.map(
      (v): BucketCounts => ({
        bucketStart: v.bucketStart,
        requests: v.requests,
        denied: v.denied,
        s4xx: v.status['4xx'],
        s5xx: v.status['5xx'],
        meters: Object.fromEntries(
          v.meters.map((m) => [m.meterId, { value: m.value, overLimit: m.overLimit }]),
        ),
      }),
    ),
    from: baseline,
    proxyFirstSeenAt: owner?.firstSeenAt,
    paths: paths.filter((p) => typeof p.path === 'string'),
  });
  return { views: views.slice(baseline), flags };
}
