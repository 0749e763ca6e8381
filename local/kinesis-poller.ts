import {
  type _Record,
  GetRecordsCommand,
  type GetRecordsCommandOutput,
  GetShardIteratorCommand,
  type KinesisClient,
  ListShardsCommand,
  type ShardIteratorType,
} from '@aws-sdk/client-kinesis';
import type { KinesisStreamBatchResponse, KinesisStreamEvent } from 'aws-lambda';
import type { TableRef } from '../lambdas/shared/deps.ts';
import { keys } from '../lambdas/storage/keys.ts';
import { getItem, putItem } from '../lambdas/storage/table.ts';

/**
 * The local stand-in for Lambda's Kinesis event source mapping: reads every shard of the embedded
 * stream in order, hands batches to the aggregator handler in exactly the event shape the mapping
 * delivers, and honours ReportBatchItemFailures (the shard restarts at the lowest failed record, as
 * the mapping's checkpoint does). The position of each shard (the last fully processed sequence
 * number) is kept in the table, so a restart resumes where the last run stopped: nothing lost,
 * nothing skipped.
 */
export interface KinesisPollerOptions {
  kinesis: KinesisClient;
  streamName: string;
  region: string;
  /** Where checkpoints live. */
  table: TableRef;
  handler: (event: KinesisStreamEvent) => Promise<KinesisStreamBatchResponse | undefined>;
  /** Pause between polls of an idle shard. Default 200 ms. */
  idleMs?: number;
  /** Most records handed to the handler at once. Default 100 (the mapping's default). */
  batchSize?: number;
  /** Most records read per GetRecords call while a batch is gathered. Default: the batch size. */
  pageSize?: number;
  /**
   * The mapping's batching window: after a batch smaller than `batchSize`, wait this long before
   * reading the shard again, so that records arriving meanwhile are handled together (one rollup
   * update per bucket per batch, not per record). `drain()` cuts the wait short. Default 0.
   */
  batchWindowMs?: number;
}

export interface KinesisPoller {
  /**
   * Records handed to the handler (redeliveries included); on the local stack also the telemetry
   * consumer's DynamoDB calls by operation (local/services.ts).
   */
  stats(): { delivered: number; batches: number; failedBatches: number; storeCalls?: Record<string, number> };
  /** Resolves once every record currently in the stream has been processed. */
  drain(timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

const ACCOUNT = '000000000000';

export function toKinesisEvent(
  records: _Record[],
  shardId: string,
  options: { streamName: string; region: string },
): KinesisStreamEvent {
  return {
    Records: records.map((r) => ({
      kinesis: {
        kinesisSchemaVersion: '1.0',
        partitionKey: r.PartitionKey!,
        sequenceNumber: r.SequenceNumber!,
        data: Buffer.from(r.Data ?? new Uint8Array()).toString('base64'),
        approximateArrivalTimestamp: (r.ApproximateArrivalTimestamp?.getTime() ?? Date.now()) / 1000,
      },
      eventSource: 'aws:kinesis',
      eventVersion: '1.0',
      eventID: `${shardId}:${r.SequenceNumber}`,
      eventName: 'aws:kinesis:record',
      invokeIdentityArn: `arn:aws:iam::${ACCOUNT}:role/keygate-telemetry-aggregator`,
      awsRegion: options.region,
      eventSourceARN: `arn:aws:kinesis:${options.region}:${ACCOUNT}:stream/${options.streamName}`,
    })),
  };
}

export function startKinesisPoller(options: KinesisPollerOptions): KinesisPoller {
  const idleMs = options.idleMs ?? 200;
  const batchSize = options.batchSize ?? 100;
  const pageSize = options.pageSize ?? batchSize;
  const batchWindowMs = options.batchWindowMs ?? 0;
  const stats = { delivered: 0, batches: 0, failedBatches: 0 };
  let stopped = false;
  /** Per shard: when the latest GetRecords that found nothing newer was sent (performance.now()). */
  const emptySince = new Map<string, number>();
  const wakers = new Set<() => void>();
  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        wakers.delete(wake);
        resolve();
      }, ms);
      const wake = () => {
        clearTimeout(t);
        wakers.delete(wake);
        resolve();
      };
      wakers.add(wake);
    });

  const checkpointKey = (shardId: string) => keys.streamCheckpoint(options.streamName, shardId);

  async function iteratorAt(shardId: string, after?: string, at?: string): Promise<string | undefined> {
    const type: ShardIteratorType = at
      ? 'AT_SEQUENCE_NUMBER'
      : after
        ? 'AFTER_SEQUENCE_NUMBER'
        : 'TRIM_HORIZON';
    const out = await options.kinesis.send(
      new GetShardIteratorCommand({
        StreamName: options.streamName,
        ShardId: shardId,
        ShardIteratorType: type,
        StartingSequenceNumber: at ?? after,
      }),
    );
    return out.ShardIterator;
  }

  async function pollShard(shardId: string) {
    const saved = await getItem<{ sequenceNumber: string }>(options.table, checkpointKey(shardId));
    let iterator = await iteratorAt(shardId, saved?.sequenceNumber);
    let failures = 0;
    while (!stopped && iterator) {
      const sentAt = performance.now();
      // A batch may be read in pages (pageSize): the embedded Kinesis builds each answer in one go,
      // on the thread that also answers the proxy's snapshot reads.
      const records: _Record[] = [];
      let next: string | undefined = iterator;
      for (;;) {
        const limit = Math.min(pageSize, batchSize - records.length);
        const out: GetRecordsCommandOutput = await options.kinesis.send(
          new GetRecordsCommand({ ShardIterator: next, Limit: limit }),
        );
        records.push(...(out.Records ?? []));
        next = out.NextShardIterator;
        if ((out.Records?.length ?? 0) < limit || records.length >= batchSize || !next || stopped) break;
      }
      if (records.length === 0) {
        emptySince.set(shardId, sentAt);
        iterator = next;
        await sleep(idleMs);
        continue;
      }
      stats.delivered += records.length;
      stats.batches++;
      let failedSeq: string | undefined;
      try {
        const answer = await options.handler(toKinesisEvent(records, shardId, options));
        const failed = (answer?.batchItemFailures ?? []).map((f) => f.itemIdentifier);
        // The mapping restarts from the lowest failed sequence number.
        failedSeq = failed.sort((a, b) => (BigInt(a) < BigInt(b) ? -1 : 1))[0];
      } catch {
        failedSeq = records[0]!.SequenceNumber; // the whole batch is retried
      }
      if (failedSeq === undefined) {
        failures = 0;
        const last = records[records.length - 1]!.SequenceNumber!;
        await putItem(options.table, {
          ...checkpointKey(shardId),
          type: 'StreamCheckpoint',
          sequenceNumber: last,
        });
        iterator = next;
        if (records.length < batchSize && batchWindowMs > 0) await sleep(batchWindowMs);
      } else {
        stats.failedBatches++;
        failures++;
        const done = records.slice(
          0,
          records.findIndex((r) => r.SequenceNumber === failedSeq),
        );
        if (done.length > 0) {
          await putItem(options.table, {
            ...checkpointKey(shardId),
            type: 'StreamCheckpoint',
            sequenceNumber: done[done.length - 1]!.SequenceNumber!,
          });
        }
        await sleep(Math.min(5000, 100 * 2 ** Math.min(failures, 6)));
        iterator = await iteratorAt(shardId, undefined, failedSeq);
      }
    }
  }

  async function run() {
    while (!stopped) {
      try {
        const shards = await options.kinesis.send(new ListShardsCommand({ StreamName: options.streamName }));
        await Promise.all((shards.Shards ?? []).map((s) => pollShard(s.ShardId!)));
      } catch {
        // The embedded stream or table is closing, or briefly unavailable: try again shortly.
        if (!stopped) await sleep(500);
      }
    }
  }

  const running = run();

  return {
    stats: () => ({ ...stats }),
    async drain(timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      const since = performance.now();
      for (const wake of [...wakers]) wake();
      // Caught up = on every shard, a read sent after this call began came back empty.
      while (emptySince.size === 0 || [...emptySince.values()].some((t) => t < since)) {
        if (Date.now() > deadline) throw new Error('telemetry poller did not catch up in time');
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    async close() {
      stopped = true;
      for (const wake of [...wakers]) wake();
      await running.catch(() => undefined);
    },
  };
}
