import { DeleteCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import type { Deps } from '../shared/deps.ts';
import { logger } from '../shared/logger.ts';
import { keys } from '../storage/keys.ts';
import { isConditionFailure } from '../storage/table.ts';
import { type Decoded, epochSeconds, runLimited } from './decode.ts';
import type { TelemetryRecord } from './record.ts';
import { requestIdTime } from './request-id.ts';
import { byTable, transactChunks } from './transact-chunks.ts';

/**
 * The request log, and the join of a call's start and completion records.
 *
 * - A start record (written by the proxy before the call out) puts a pending-call item
 *   (keys.pendingCall) holding the start record. Idempotent by key. When the call's completion is
 *   in the same batch and on record (written, or refused because another completion is), the
 *   pending item is not written at all: it would be deleted a moment later, and the call is
 *   already accounted for. Most calls complete within one batching window, so this saves two of
 *   the three store writes a call would cost (put and delete of the pending item).
 * - A completion puts the request-log item, on the condition that no other completion of the same
 *   requestId was written before: `attribute_not_exists(pk) OR countedBy = <this record's shard and
 *   sequence number>`. The one completion that passes is the one counted in the rollups; its
 *   redelivery passes again (same countedBy) and the rollups' watermarks keep it from counting
 *   twice. A second completion of the same call (a late answer after its `unknown`, a record
 *   shipped twice after a crash) is refused by the condition: not counted, log unchanged.
 *   Then (alongside the rollups) it deletes the call's pending item, if the call went out and its
 *   start came in an earlier batch.
 * Completions are handled before starts, so that a start knows whether its completion is on
 * record: a start and its completion in one batch leave nothing pending (in either order). If the
 * completion's write failed, the start's pending item is written (the completion is redelivered
 * and deletes it then, or the sweep turns the call into `unknown`): a call is never left with
 * neither a log item nor a pending item. A completion that arrives in a batch before its start's
 * (the log route does not keep their order) leaves a stale pending item, which the sweep drops
 * when it finds the completion in the log (./unknown-calls.ts).
 */

export const PENDING_SLOTS = 8;
const CONCURRENCY = 64;

/** Which pending-call partition holds a call (spread by a hash of its id). */
export function pendingSlot(requestId: string): number {
  let h = 0;
  for (let i = 0; i < requestId.length; i++) h = (h * 31 + requestId.charCodeAt(i)) >>> 0;
  return h % PENDING_SLOTS;
}

export function pendingKey(r: Pick<TelemetryRecord, 'requestId' | 'processedAt'>) {
  return keys.pendingCall(pendingSlot(r.requestId), r.processedAt, r.requestId);
}

export function logKey(r: Pick<TelemetryRecord, 'requestId' | 'proxyId'>) {
  return keys.requestLog(r.proxyId, requestIdTime(r.requestId)!.toISOString().slice(0, 10), r.requestId);
}

/** A completion whose call went out to the vendor (so it had a start record). */
function wentOut(r: TelemetryRecord): boolean {
  return r.durations.upstreamMs !== undefined || r.decision === 'unknown';
}

export interface LogResult {
  /** Completions this batch counts: the first completion of their call (or a redelivery of it). */
  counted: Decoded[];
  /** Records whose writes failed: they must be redelivered. */
  failed: Decoded[];
  /**
   * Deletes the pending items of the calls completed (run alongside the rollups: counts do not
   * depend on it); answers the records whose delete failed, to redeliver.
   */
  dropPending(): Promise<Decoded[]>;
}

export async function writeLog(
  deps: Deps,
  items: Decoded[],
  counter: { writes: number },
  options: { transactions?: boolean } = {},
): Promise<LogResult> {
  const counted: Decoded[] = [];
  const failed: Decoded[] = [];
  const fail = (d: Decoded, what: string, error: unknown) => {
    logger.warn(what, { errorName: (error as Error).name });
    failed.push(d);
  };
  const completedCalls: Decoded[] = [];
  const starts = items.filter((d) => d.record.phase === 'start');
  const completions = items.filter((d) => d.record.phase !== 'start');
  /** Calls whose completion is on record after this batch's log writes (written or refused as a duplicate). */
  const onRecord = new Set<string>();

  const logItem = (d: Decoded) => {
    const r = d.record;
    const countedBy = `${d.shardId}:${d.seq}`;
    return {
      TableName: d.cell.tableName,
      Item: {
        ...logKey(r),
        type: 'RequestLog',
        ...r,
        countedBy,
        ttl: epochSeconds(new Date(r.processedAt), deps.config.requestLogRetentionDays),
      },
      ConditionExpression: 'attribute_not_exists(pk) OR countedBy = :me',
      ExpressionAttributeValues: { ':me': countedBy },
    };
  };
  const written = (d: Decoded) => {
    counted.push(d);
    onRecord.add(d.record.requestId);
    if (wentOut(d.record)) completedCalls.push(d);
  };
  // Unauthenticated calls (401, and the 429s of the failed-auth budget) are counted in the
  // rollups but not logged one record each: a flood of bad keys must not become a flood of
  // 90-day items (docs/data-plane-hygiene.md). They never went out, so nothing is pending.
  for (const d of completions) if (d.record.decision === 'unauthenticated') counted.push(d);
  let toLog = completions.filter((d) => d.record.decision !== 'unauthenticated');
  if (options.transactions) {
    const left: Decoded[] = [];
    for (const [table, list] of byTable(toLog, (d) => d.cell)) {
      const notWritten = await transactChunks(
        table,
        list,
        (d) => {
          const put = logItem(d);
          return { key: `${put.Item.pk}|${put.Item.sk}`, action: { Put: put } };
        },
        counter,
      );
      const retry = new Set(notWritten);
      for (const d of list) if (!retry.has(d)) written(d);
      left.push(...notWritten);
    }
    toLog = left;
  }
  await runLimited(toLog, CONCURRENCY, async (d) => {
    try {
      counter.writes++;
      await d.cell.ddb.send(new PutCommand(logItem(d)));
      written(d);
    } catch (error) {
      if (!isConditionFailure(error)) return fail(d, 'request-log write failed', error);
      // Another completion of this call is the one on record (and in the rollups).
      onRecord.add(d.record.requestId);
      if (wentOut(d.record)) completedCalls.push(d);
    }
  });

  const startedHere = new Set<string>();
  await runLimited(starts, CONCURRENCY, async (d) => {
    startedHere.add(d.record.requestId);
    // Its completion is on record already: nothing will ever be pending.
    if (onRecord.has(d.record.requestId)) return;
    try {
      counter.writes++;
      await d.cell.ddb.send(
        new PutCommand({
          TableName: d.cell.tableName,
          Item: {
            ...pendingKey(d.record),
            type: 'PendingCall',
            record: d.record,
            ttl: epochSeconds(new Date(d.record.processedAt), deps.config.requestLogRetentionDays),
          },
        }),
      );
    } catch (error) {
      fail(d, 'pending-call write failed', error);
    }
  });

  const dropPending = async () => {
    const undeleted: Decoded[] = [];
    // A start in this batch wrote no pending item, or wrote it before its completion failed.
    const toDelete = completedCalls.filter((d) => !startedHere.has(d.record.requestId));
    await runLimited(toDelete, CONCURRENCY, async (d) => {
      try {
        counter.writes++;
        await d.cell.ddb.send(new DeleteCommand({ TableName: d.cell.tableName, Key: pendingKey(d.record) }));
      } catch (error) {
        logger.warn('pending-call delete failed', { errorName: (error as Error).name });
        undeleted.push(d);
      }
    });
    return undeleted;
  };
  return { counted, failed, dropPending };
}
