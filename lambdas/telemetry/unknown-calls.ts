import { PutRecordsCommand } from '@aws-sdk/client-kinesis';
import { DeleteCommand, GetCommand, QueryCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import type { Cell, Deps } from '../shared/deps.ts';
import { keys } from '../storage/keys.ts';
import { isConditionFailure } from '../storage/table.ts';
import { runLimited } from './decode.ts';
import type { TelemetryRecord } from './record.ts';
import { logKey, PENDING_SLOTS, pendingKey } from './request-log.ts';

/**
 * The sweep: calls whose start record was aggregated and whose completion has not come within a
 * grace period become `unknown` completions. The sweep does not count anything itself: it puts the
 * `unknown` record into the cell's telemetry stream (partition key = requestId, the same shard as
 * the call's own records), and the aggregator joins and counts it like any completion — so the
 * exactly-once machinery (first completion wins, per-shard watermarks) covers it too:
 *  - swept twice (a crash between the put and the mark below, two sweepers): the second `unknown`
 *    is refused by the request-log condition, counted nowhere;
 *  - a real completion already in the stream ahead of the `unknown` wins, the `unknown` is dropped.
 * The grace period must exceed the longest call (the upstream deadline) plus the time a completion
 * may take to reach the stream (the log route's delivery delay; in local mode, the shipping of the
 * write-ahead file after a restart, which happens before the first sweep).
 */
export const DEFAULT_UNKNOWN_AFTER_MS = 5 * 60_000;

export interface SweepOptions {
  /** A call started longer ago than this, with no completion, is `unknown`. */
  graceMs: number;
  /** Items read per partition and sweep (default 200). */
  limit?: number;
  now?: () => Date;
}

/** The completion that stands in for one that never came: the start's facts, outcome unknown. */
export function unknownCompletion(start: TelemetryRecord): TelemetryRecord {
  const { phase: _phase, durations, bytes, ...rest } = start;
  return {
    ...rest,
    status: 0,
    proxyCode: 'proxy-outcome-unknown',
    decision: 'unknown',
    durations: { gatewayMs: durations.gatewayMs },
    bytes: { in: bytes.in, out: 0 },
  };
}

/** Sweeps one cell; answers how many `unknown` records it put into the stream. */
export async function sweepUnknownCalls(deps: Deps, cell: Cell, options: SweepOptions): Promise<number> {
  if (!cell.streamName) return 0;
  const now = (options.now ?? deps.now)();
  const cutoff = new Date(now.getTime() - options.graceMs).toISOString();
  const due: TelemetryRecord[] = [];
  for (let slot = 0; slot < PENDING_SLOTS; slot++) {
    const out = await cell.ddb.send(
      new QueryCommand({
        TableName: cell.tableName,
        KeyConditionExpression: 'pk = :pk AND sk < :cutoff',
        ExpressionAttributeValues: { ':pk': keys.pendingCallPartition(slot).pk, ':cutoff': cutoff },
        Limit: options.limit ?? 200,
        ConsistentRead: true,
      }),
    );
    for (const item of out.Items ?? []) {
      // Put into the stream once per grace period at most (again only if that one was lost).
      if (typeof item.sweptAt === 'string' && item.sweptAt > cutoff) continue;
      due.push(item.record as TelemetryRecord);
    }
  }
  const lost: TelemetryRecord[] = [];
  await runLimited(due, 16, async (start) => {
    const logged = await cell.ddb.send(
      new GetCommand({ TableName: cell.tableName, Key: logKey(start), ConsistentRead: true }),
    );
    // Its completion is on record (it came before its start): the pending item is stale.
    if (logged.Item)
      await cell.ddb.send(new DeleteCommand({ TableName: cell.tableName, Key: pendingKey(start) }));
    else lost.push(start);
  });
  for (let i = 0; i < lost.length; i += 500) {
    const chunk = lost.slice(i, i + 500);
    const out = await cell.kinesis.send(
      new PutRecordsCommand({
        StreamName: cell.streamName,
        Records: chunk.map((start) => ({
          Data: Buffer.from(JSON.stringify(unknownCompletion(start)), 'utf8'),
          PartitionKey: start.requestId,
        })),
      }),
    );
    const sent = chunk.map((start, at) => ({ start, at }));
    await runLimited(sent, 16, async ({ start, at }) => {
      if (out.Records?.[at]?.ErrorCode || !out.Records?.[at]?.SequenceNumber) return; // next sweep
      try {
        await cell.ddb.send(
          new UpdateCommand({
            TableName: cell.tableName,
            Key: pendingKey(start),
            UpdateExpression: 'SET sweptAt = :now',
            ConditionExpression: 'attribute_exists(pk)',
            ExpressionAttributeValues: { ':now': now.toISOString() },
          }),
        );
      } catch (error) {
        // Already joined and deleted by the aggregator: nothing to mark.
        if (!isConditionFailure(error)) throw error;
      }
    });
  }
  return lost.length;
}
