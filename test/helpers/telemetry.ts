import {
  type _Record,
  GetRecordsCommand,
  GetShardIteratorCommand,
  type KinesisClient,
  ListShardsCommand,
} from '@aws-sdk/client-kinesis';
import type { KinesisStreamEvent } from 'aws-lambda';
import { payloadRecords } from '../../lambdas/telemetry/decode.ts';
import type { TelemetryRecord } from '../../lambdas/telemetry/record.ts';
import { newRequestId } from '../../lambdas/telemetry/request-id.ts';
import { toKinesisEvent } from '../../local/kinesis-poller.ts';

/** A plausible, already-masked record; override what the test is about. */
export function makeRecord(overrides: Partial<TelemetryRecord> = {}, at: Date = new Date()): TelemetryRecord {
  return {
    requestId: newRequestId(at),
    processedAt: at.toISOString(),
    clientId: 'client-1',
    proxyId: 'proxy-1',
    proxyCredentialId: 'pcred-1',
    targetCredentialId: 'tcred-1',
    targetId: 'target-1',
    method: 'GET',
    path: '/v2/inventory/items',
    query: 'page=1',
    headers: { authorization: 'Bearer ****', accept: 'application/json' },
    status: 200,
    proxyCode: 'proxy-access-granted',
    decision: 'allowed',
    durations: { gatewayMs: 1.5, upstreamMs: 40 },
    bytes: { in: 120, out: 2048 },
    sourceIp: '203.0.113.7',
    userAgent: 'inventory-service/1.0',
    ...overrides,
  };
}

/** Synthetic, increasing Kinesis sequence numbers (56 digits, like the real ones). */
export function sequenceNumber(n: number): string {
  return `4960${String(n).padStart(52, '0')}`;
}

export interface Delivered {
  record: TelemetryRecord;
  seq: string;
  shardId: string;
}

/** Gives records sequence numbers on one shard, in order. */
export function onShard(
  records: TelemetryRecord[],
  shardId = 'shardId-000000000000',
  first = 1,
): Delivered[] {
  return records.map((record, i) => ({ record, seq: sequenceNumber(first + i), shardId }));
}

/** The Lambda Kinesis event for delivered records of one shard (same builder as the local poller). */
export function eventOf(delivered: Delivered[], region = 'us-east-1'): KinesisStreamEvent {
  const byShard = new Map<string, _Record[]>();
  for (const d of delivered) {
    const list = byShard.get(d.shardId) ?? [];
    list.push({
      SequenceNumber: d.seq,
      PartitionKey: d.record.requestId,
      Data: Buffer.from(JSON.stringify(d.record)),
      ApproximateArrivalTimestamp: new Date(),
    });
    byShard.set(d.shardId, list);
  }
  const records = [...byShard.entries()].flatMap(
    ([shardId, rs]) => toKinesisEvent(rs, shardId, { streamName: 'keygate-telemetry', region }).Records,
  );
  return { Records: records };
}

/**
 * Every telemetry record in a stream, from the start of each shard: single JSON records (the
 * Kinesis emitter) and packed ones (the write-ahead file, the log route), decoded as the aggregator
 * decodes them.
 */
export async function streamRecords(kinesis: KinesisClient, streamName: string): Promise<TelemetryRecord[]> {
  const out: TelemetryRecord[] = [];
  const shards = await kinesis.send(new ListShardsCommand({ StreamName: streamName }));
  for (const s of shards.Shards ?? []) {
    let it = (
      await kinesis.send(
        new GetShardIteratorCommand({
          StreamName: streamName,
          ShardId: s.ShardId!,
          ShardIteratorType: 'TRIM_HORIZON',
        }),
      )
    ).ShardIterator;
    while (it) {
      const page = await kinesis.send(new GetRecordsCommand({ ShardIterator: it, Limit: 1000 }));
      for (const r of page.Records ?? []) {
        const records = payloadRecords(Buffer.from(r.Data!));
        if (typeof records === 'string') throw new Error(`not a telemetry payload: ${records}`);
        out.push(...(records as TelemetryRecord[]));
      }
      if ((page.Records ?? []).length === 0) break;
      it = page.NextShardIterator;
    }
  }
  return out;
}
