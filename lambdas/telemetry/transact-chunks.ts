import { TransactWriteCommand } from '@aws-sdk/lib-dynamodb';
import type { TableRef } from '../shared/deps.ts';
import { logger } from '../shared/logger.ts';
import { runLimited } from './decode.ts';

/**
 * The aggregator's writes of one batch, many per store call: TransactWriteItems of up to 100
 * actions, each action with the very condition its single-item write would carry.
 *
 * Why (local mode only, `AggregatorOptions.transactions`): the embedded DynamoDB answers each call
 * with an HTTP request, a signature check and a LevelDB write of its own, on the two cores the
 * proxy's snapshot reads need; one transaction of 100 actions is one of each (the embedded store
 * applies it as one LevelDB batch, local/dynamodb-transactions.ts). In AWS the aggregator writes one
 * item per call: a transactional write costs twice the write units, and DynamoDB does not mind
 * many small calls.
 *
 * Exactly-once is unchanged because nothing depends on a transaction succeeding: a chunk that is
 * cancelled (one condition failed — a duplicate completion, a replayed bucket update) or fails in
 * any other way (even one that may have been applied although its answer was lost) is answered as
 * not written, and its entries take the single-item path, whose conditions are idempotent by
 * design (request log: `countedBy`; buckets: watermarks).
 */

/** DynamoDB's limit of actions per TransactWriteItems. */
const MAX_ACTIONS = 100;
const CONCURRENCY = 4;

export type TransactAction = NonNullable<
  ConstructorParameters<typeof TransactWriteCommand>[0]['TransactItems']
>[number];

/**
 * Writes `entries` (all on `table`) in transactions; answers the entries that were NOT written (or
 * might not have been), for the caller's single-item path. An item appears at most once per
 * transaction (DynamoDB refuses a transaction naming one item twice): a repeated key starts a new
 * chunk.
 */
export async function transactChunks<T>(
  table: TableRef,
  entries: T[],
  toAction: (entry: T) => { key: string; action: TransactAction },
  counter: { writes: number },
): Promise<T[]> {
  const chunks: { entries: T[]; actions: TransactAction[]; keys: Set<string> }[] = [];
  for (const entry of entries) {
    const { key, action } = toAction(entry);
    let chunk = chunks.at(-1);
    if (!chunk || chunk.actions.length === MAX_ACTIONS || chunk.keys.has(key)) {
      chunk = { entries: [], actions: [], keys: new Set() };
      chunks.push(chunk);
    }
    chunk.entries.push(entry);
    chunk.actions.push(action);
    chunk.keys.add(key);
  }
  const notWritten: T[] = [];
  await runLimited(chunks, CONCURRENCY, async (chunk) => {
    try {
      counter.writes++;
      await table.ddb.send(new TransactWriteCommand({ TransactItems: chunk.actions }));
    } catch (error) {
      const name = (error as Error).name;
      // A cancelled chunk is expected now and then (a redelivery); anything else is worth a line.
      if (name !== 'TransactionCanceledException')
        logger.warn('telemetry transaction failed', { errorName: name, actions: chunk.actions.length });
      notWritten.push(...chunk.entries);
    }
  });
  return notWritten;
}

/** `entries` grouped by the table they go to (a batch may span cells). */
export function byTable<T>(entries: T[], tableOf: (entry: T) => TableRef): Map<TableRef, T[]> {
  const out = new Map<TableRef, T[]>();
  for (const e of entries) {
    const t = tableOf(e);
    const list = out.get(t);
    if (list) list.push(e);
    else out.set(t, [e]);
  }
  return out;
}
