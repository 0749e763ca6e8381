import { BatchProcessor, EventType, processPartialResponse } from '@aws-lambda-powertools/batch';
import { GetCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import type { KinesisStreamBatchResponse, KinesisStreamEvent, KinesisStreamRecord } from 'aws-lambda';
import type { Deps, TableRef } from '../shared/deps.ts';
import { logger } from '../shared/logger.ts';
import { type Interval, keys } from '../storage/keys.ts';
import { isConditionFailure } from '../storage/table.ts';
import { raiseAnomalies, writeMarkers } from './anomaly-flags.ts';
import { type Decoded, decode, epochSeconds, runLimited } from './decode.ts';
import { writeLog } from './request-log.ts';
import {
  addRecord,
  BUCKET_RETENTION_DAYS,
  bucketStart,
  type Delta,
  deltaAttributes,
  emptyDelta,
  INTERVALS,
} from './rollup.ts';
import { byTable, transactChunks } from './transact-chunks.ts';
import { DEFAULT_UNKNOWN_AFTER_MS, type SweepOptions, sweepUnknownCalls } from './unknown-calls.ts';

/**
 * The telemetry aggregator: a Kinesis batch in, request-log items and rollups out, with an
 * exactly-once *effect* although Kinesis delivers at least once (redelivery after an error or a
 * timeout, bisected batches, replays from a partial-failure checkpoint), without relying on
 * DynamoDB transactions: every write's own condition makes it idempotent. (In local mode the writes
 * of a batch are grouped into transactions merely to cost the embedded store fewer calls; a
 * transaction that does not go through falls back to these single writes: ./transact-chunks.ts.)
 *
 * Steps, one module each: decode (./decode.ts), request log and the start/completion join
 * (./request-log.ts), rollups (here), anomaly markers and flags (./anomaly-flags.ts).
 *
 * Why nothing is counted twice:
 *  - Request-log items are keyed by requestId (REQLOG#<proxyId>#<day> / <requestId>), and only the
 *    first completion of a call is written and counted (./request-log.ts); writing it again
 *    writes the same item. A start record is never counted: the call counts once, by its
 *    completion or by the `unknown` record that stands in for a completion that never came.
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

const MAX_UPDATE_ATTEMPTS = 6;
const BUCKET_CONCURRENCY = 16;

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
 * The one UpdateItem that adds `pending` (sorted by sequence number) into a bucket: ADDs their sums
 * and moves the shard's watermark to the last of them, on the condition that the watermark is what
 * `expected` says (undefined: unknown, so below the first of them; null: known absent).
 */
function bucketUpdate(g: BucketGroup, pending: Decoded[], expected: string | null | undefined) {
  const delta: Delta = emptyDelta();
  for (const e of pending) addRecord(delta, e.record);
  const adds = Object.entries(deltaAttributes(delta));
  const names: Record<string, string> = { '#wm': `wm_${g.shardId}`, '#ttl': 'ttl' };
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
  return {
    TableName: g.table.tableName,
    Key: g.key,
    UpdateExpression: `SET ${sets.join(', ')}${addParts.length ? ` ADD ${addParts.join(', ')}` : ''}`,
    ConditionExpression: condition,
    ExpressionAttributeNames: names,
    ExpressionAttributeValues: values,
  };
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
    try {
      counter.writes++;
      await g.table.ddb.send(new UpdateCommand(bucketUpdate(g, pending, expected)));
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
 * Aggregates a batch of Kinesis records: request-log items (and the start/completion join),
 * rollups (client and proxy × minute, hour, day) and the anomaly markers. Answers which records
 * must be redelivered.
 */
export async function aggregate(
  deps: Deps,
  records: KinesisStreamRecord[],
  options: { transactions?: boolean } = {},
): Promise<AggregateResult> {
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

  const log = await writeLog(deps, decoded, counter, options);
  // A shard's records from its first failed one on wait for their redelivery: counting a later
  // one now would move a bucket's watermark past the failed one, which then would never count.
  const firstFailed = new Map<string, string>();
  for (const d of log.failed) {
    const f = firstFailed.get(d.shardId);
    if (f === undefined || d.padded < f) firstFailed.set(d.shardId, d.padded);
  }
  const blocked = (d: Decoded) => {
    const f = firstFailed.get(d.shardId);
    return f !== undefined && d.padded >= f;
  };
  const counted = log.counted.filter((d) => !blocked(d));
  const failedSeqs = new Set(decoded.filter(blocked).map((d) => d.seq));

  // Bucket groups: (table, bucket, shard) → records.
  const groups = new Map<string, BucketGroup>();
  for (const d of counted) {
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

  const [markers, undeleted] = await Promise.all([
    writeMarkers(deps, counted, counter),
    log.dropPending(),
    (async () => {
      let single = [...groups.values()];
      if (options.transactions) {
        // First tries in transactions; what they did not write takes the single-item way.
        const left: BucketGroup[] = [];
        for (const [table, list] of byTable(single, (g) => g.table))
          left.push(
            ...(await transactChunks(
              table,
              list,
              (g) => ({
                key: `${g.key.pk}|${g.key.sk}`,
                action: { Update: bucketUpdate(g, g.entries, undefined) },
              }),
              counter,
            )),
          );
        single = left;
      }
      await runLimited(single, BUCKET_CONCURRENCY, async (g) => {
        if (!(await applyBucket(g, counter))) for (const e of g.entries) failedSeqs.add(e.seq);
      });
    })(),
  ]);
  for (const d of counted) if (markers.failed.has(d.record.requestId)) failedSeqs.add(d.seq);
  for (const d of undeleted) failedSeqs.add(d.seq);
  const flagged = await raiseAnomalies(
    deps,
    counted.filter((d) => !failedSeqs.has(d.seq)),
    markers.newPaths,
    counter,
  );
  return { failed: failedSeqs, poison, writes: counter.writes, flagged };
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

export interface AggregatorOptions {
  /**
   * The sweep that turns calls started and never completed into `unknown` records: how long after
   * its start a call counts as lost (default 5 minutes), and how often the handler sweeps at most.
   * `false`: no sweep in the handler (the local stack runs its own).
   */
  sweep?: (SweepOptions & { everyMs?: number }) | false;
  /**
   * Write a batch's request-log items and bucket updates in TransactWriteItems of up to 100, with
   * the same conditions (./transact-chunks.ts). For the embedded store of local mode, where every
   * call costs the proxy's cores; off in AWS, where transactional writes cost twice.
   */
  transactions?: boolean;
}

/**
 * The aggregator's handler for a Kinesis event source mapping with ReportBatchItemFailures: the
 * answer names each record to redeliver (Lambda restarts the shard from the lowest of them).
 * After a batch — or on a scheduled invocation (an event without Records) — it sweeps overdue
 * calls into `unknown` records, at most once per `everyMs` per container.
 */
export function createAggregatorHandler(deps: Deps, options: AggregatorOptions = {}) {
  const sweep = options.sweep === false ? undefined : { graceMs: DEFAULT_UNKNOWN_AFTER_MS, ...options.sweep };
  let lastSweep = 0;
  const maybeSweep = async () => {
    if (!sweep || Date.now() - lastSweep < (sweep.everyMs ?? 30_000)) return;
    lastSweep = Date.now();
    for (const cell of Object.values(deps.cells)) {
      try {
        await sweepUnknownCalls(deps, cell, sweep);
      } catch (error) {
        // Best effort: the pending items stay, the next sweep takes them.
        logger.warn('unknown-call sweep failed', { region: cell.region, errorName: (error as Error).name });
      }
    }
  };
  return async (event: KinesisStreamEvent): Promise<KinesisStreamBatchResponse> => {
    if (!Array.isArray(event?.Records)) {
      await maybeSweep();
      return { batchItemFailures: [] };
    }
    const { failed, poison } = await aggregate(deps, event.Records, { transactions: options.transactions });
    if (failed.size > 0 || poison > 0)
      logger.info('telemetry batch processed', {
        records: event.Records.length,
        failed: failed.size,
        poison,
      });
    await maybeSweep();
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
