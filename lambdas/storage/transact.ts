import { TransactWriteCommand, type TransactWriteCommandInput } from '@aws-sdk/lib-dynamodb';
import type { TableRef } from '../shared/deps.ts';
import { ConflictError } from '../shared/errors.ts';
import type { Key } from './keys.ts';
import type { Item } from './table.ts';

/**
 * All-or-nothing writes (DynamoDB TransactWriteItems; locally the embedded store implements the
 * same call, see local/dynamodb-transactions) and the optimistic-concurrency conventions of every
 * read-modify-write in keygate:
 * - every mutable item carries `version` (a number, 1 at creation, +1 per write; items written
 *   before versions existed read as 0 and have no attribute);
 * - a write of an item read at version v is conditional on it still being at v (`ifVersion`);
 * - a transaction cancelled by a condition raises {@link TxConflict}; {@link retryOnConflict}
 *   re-runs the whole read-decide-write step a few times, then answers 409 `conflict`.
 */
export type TxItem = NonNullable<TransactWriteCommandInput['TransactItems']>[number];

/** DynamoDB's cap on actions in one transaction. */
export const MAX_TX_ITEMS = 100;

/** A transaction was cancelled because one of its conditions no longer held. */
export class TxConflict extends Error {
  override name = 'TxConflict';
  /** Per action, in order: the cancellation code (`None` for actions that were fine). */
  readonly codes: string[];
  constructor(codes: string[], cause?: unknown) {
    super(`transaction cancelled: ${codes.join(', ')}`, { cause });
    this.codes = codes;
  }
}

/** Runs one transaction; a cancellation caused by conditions becomes {@link TxConflict}. */
export async function transact(table: TableRef, items: TxItem[]): Promise<void> {
  if (items.length === 0) return;
  if (items.length > MAX_TX_ITEMS)
    throw new ConflictError(
      `This change touches ${items.length} items; one change may touch at most ${MAX_TX_ITEMS}`,
      'change_too_large',
    );
  try {
    await table.ddb.send(new TransactWriteCommand({ TransactItems: items }));
  } catch (error) {
    const reasons = (error as { CancellationReasons?: Array<{ Code?: string }> }).CancellationReasons;
    if ((error as Error)?.name === 'TransactionCanceledException' && reasons) {
      const codes = reasons.map((r) => r.Code ?? 'None');
      // Only condition failures and write-write collisions are worth a retry of the whole step.
      if (codes.every((c) => c === 'None' || c === 'ConditionalCheckFailed' || c === 'TransactionConflict'))
        throw new TxConflict(codes, error);
    }
    throw error;
  }
}

let queueWriters = true;

/** Turns the in-process queue of {@link retryOnConflict} off (tests of cross-instance races) or on. */
export function queueConcurrentWriters(on: boolean) {
  queueWriters = on;
}

/** Tails of the per-key queues of {@link retryOnConflict} (one process's writers of one client). */
const queues = new Map<string, Promise<unknown>>();

/** Runs `fn` after every earlier call with the same key has settled (an in-process mutex). */
async function queued<T>(key: string, fn: () => Promise<T>): Promise<T> {
  const before = queues.get(key) ?? Promise.resolve();
  const run = before.then(fn, fn);
  const tail = run.catch(() => undefined);
  queues.set(key, tail);
  try {
    return await run;
  } finally {
    if (queues.get(key) === tail) queues.delete(key);
  }
}

/**
 * Runs a read-decide-write step, again from the start while its transaction meets a concurrent
 * change (each attempt re-reads, so it decides on current state: a caller removed meanwhile is
 * refused on the retry). After `attempts` collisions: 409 `conflict`, safe to retry.
 * Steps with the same `queue` key (a client or user id) also wait for each other within this process: a
 * long-lived local gateway serialises its own writers instead of letting them collide; across
 * Lambda instances the conditions alone decide.
 */
export async function retryOnConflict<T>(queue: string, step: () => Promise<T>, attempts = 12): Promise<T> {
  const run = async () => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await step();
      } catch (error) {
        if (!(error instanceof TxConflict)) throw error;
        if (attempt >= attempts)
          throw new ConflictError('A concurrent change got there first; read again and retry', 'conflict');
        // Jittered backoff so colliding writers spread out.
        await new Promise((r) => setTimeout(r, Math.random() * Math.min(4 * 2 ** attempt, 100)));
      }
    }
  };
  return queueWriters ? queued(queue, run) : run();
}

/** The version an item was read at (0 for items written before versions existed). */
export function versionOf(item: Item | undefined): number {
  const v = item?.version;
  return typeof v === 'number' ? v : 0;
}

/** A condition that holds while the item exists and is still at `version`. */
export function ifVersion(version: number) {
  return version === 0
    ? {
        ConditionExpression: 'attribute_exists(pk) AND attribute_not_exists(#version)',
        ExpressionAttributeNames: { '#version': 'version' },
      }
    : {
        ConditionExpression: '#version = :expectedVersion',
        ExpressionAttributeNames: { '#version': 'version' },
        ExpressionAttributeValues: { ':expectedVersion': version },
      };
}

/** Put of a new item (fails if the key exists). */
export function txCreate(table: TableRef, item: Key & Item): TxItem {
  return {
    Put: {
      TableName: table.tableName,
      Item: { ...item, version: 1 },
      ConditionExpression: 'attribute_not_exists(pk)',
    },
  };
}

/** Put replacing an item read at `version`, as version + 1. */
export function txReplace(table: TableRef, item: Key & Item, version: number): TxItem {
  return {
    Put: { TableName: table.tableName, Item: { ...item, version: version + 1 }, ...ifVersion(version) },
  };
}

/** Delete of an item read at `version`. */
export function txDelete(table: TableRef, key: Key, version: number): TxItem {
  return { Delete: { TableName: table.tableName, Key: { pk: key.pk, sk: key.sk }, ...ifVersion(version) } };
}

/** Delete whatever is there (no condition). */
export function txDeleteAny(table: TableRef, key: Key): TxItem {
  return { Delete: { TableName: table.tableName, Key: { pk: key.pk, sk: key.sk } } };
}

/**
 * Bumps an item's version without changing anything else: "something that depends on this item
 * changed" (a proxy started or stopped using a credential or target), so a concurrent change of
 * the item itself, which rebuilds the snapshots of the proxies using it, is serialised with it.
 */
export function txTouch(table: TableRef, key: Key, version: number): TxItem {
  const cond = ifVersion(version);
  return {
    Update: {
      TableName: table.tableName,
      Key: { pk: key.pk, sk: key.sk },
      UpdateExpression: 'SET #version = :nextVersion',
      ConditionExpression: cond.ConditionExpression,
      ExpressionAttributeNames: cond.ExpressionAttributeNames,
      ExpressionAttributeValues: { ...cond.ExpressionAttributeValues, ':nextVersion': version + 1 },
    },
  };
}
