import {
  BatchWriteCommand,
  DeleteCommand,
  GetCommand,
  PutCommand,
  QueryCommand,
  type QueryCommandInput,
} from '@aws-sdk/lib-dynamodb';
import type { TableRef } from '../shared/deps.ts';
import type { Key } from './keys.ts';

/**
 * Small typed helpers over the DocumentClient. Reads that decide access are strongly consistent:
 * a deleted token or credential must be gone on the very next request.
 */
export type Item = Record<string, unknown>;

export async function getItem<T = Item>(table: TableRef, key: Key): Promise<T | undefined> {
  const out = await table.ddb.send(
    new GetCommand({ TableName: table.tableName, Key: key, ConsistentRead: true }),
  );
  return out.Item as T | undefined;
}

/**
 * Puts an item; with `ifAbsent` (`ifExists`), fails with ConditionalCheckFailedException when the
 * key exists (does not exist).
 */
export async function putItem(
  table: TableRef,
  item: Key & Item,
  options: { ifAbsent?: boolean; ifExists?: boolean } = {},
) {
  await table.ddb.send(
    new PutCommand({
      TableName: table.tableName,
      Item: item,
      ConditionExpression: options.ifAbsent
        ? 'attribute_not_exists(pk)'
        : options.ifExists
          ? 'attribute_exists(pk)'
          : undefined,
    }),
  );
}

export async function deleteItem(table: TableRef, key: Key) {
  await table.ddb.send(new DeleteCommand({ TableName: table.tableName, Key: key }));
}

/** Every item of a partition whose sort key starts with `skPrefix`, following pagination. */
export async function queryPrefix<T = Item>(
  table: TableRef,
  where: { pk: string; skPrefix?: string },
  options: Partial<Pick<QueryCommandInput, 'ScanIndexForward' | 'Limit'>> = {},
): Promise<T[]> {
  const items: T[] = [];
  let ExclusiveStartKey: Record<string, unknown> | undefined;
  do {
    const out = await table.ddb.send(
      new QueryCommand({
        TableName: table.tableName,
        KeyConditionExpression: where.skPrefix ? 'pk = :pk AND begins_with(sk, :sk)' : 'pk = :pk',
        ExpressionAttributeValues: where.skPrefix
          ? { ':pk': where.pk, ':sk': where.skPrefix }
          : { ':pk': where.pk },
        ConsistentRead: true,
        ExclusiveStartKey,
        ...options,
      }),
    );
    items.push(...((out.Items ?? []) as T[]));
    ExclusiveStartKey = out.LastEvaluatedKey;
  } while (ExclusiveStartKey && (options.Limit === undefined || items.length < options.Limit));
  return items;
}

/**
 * Up to `limit + 1` items of a partition whose sort key starts with `skPrefix` and comes after
 * `after`, in sort-key order, keeping only those `keep` accepts (the extra item tells the caller
 * that more follow).
 */
export async function queryPrefixPage<T = Item>(
  table: TableRef,
  where: { pk: string; skPrefix: string },
  page: { limit: number; after?: string },
  keep: (item: T) => boolean = () => true,
): Promise<T[]> {
  const items: T[] = [];
  let ExclusiveStartKey: Record<string, unknown> | undefined = page.after
    ? { pk: where.pk, sk: page.after }
    : undefined;
  do {
    const out = await table.ddb.send(
      new QueryCommand({
        TableName: table.tableName,
        KeyConditionExpression: 'pk = :pk AND begins_with(sk, :sk)',
        ExpressionAttributeValues: { ':pk': where.pk, ':sk': where.skPrefix },
        ConsistentRead: true,
        ExclusiveStartKey,
        Limit: page.limit + 1,
      }),
    );
    for (const item of (out.Items ?? []) as T[]) if (keep(item)) items.push(item);
    ExclusiveStartKey = out.LastEvaluatedKey;
  } while (ExclusiveStartKey && items.length <= page.limit);
  return items.slice(0, page.limit + 1);
}

/** Deletes many keys, 25 per BatchWrite, retrying what DynamoDB leaves unprocessed. */
export async function deleteItems(table: TableRef, itemKeys: Key[]) {
  for (let i = 0; i < itemKeys.length; i += 25) {
    let requests = itemKeys.slice(i, i + 25).map((k) => ({ DeleteRequest: { Key: { pk: k.pk, sk: k.sk } } }));
    for (let attempt = 0; requests.length > 0; attempt++) {
      if (attempt > 8) throw new Error('DynamoDB left deletes unprocessed');
      const out = await table.ddb.send(
        new BatchWriteCommand({ RequestItems: { [table.tableName]: requests } }),
      );
      requests = (out.UnprocessedItems?.[table.tableName] ?? []) as typeof requests;
      if (requests.length > 0) await new Promise((r) => setTimeout(r, 20 * 2 ** attempt));
    }
  }
}

/** Drops the storage attributes from an item before it is answered. */
export function publicView<T extends Item>(item: T, hidden: readonly string[] = []): Item {
  const out: Item = {};
  for (const [k, v] of Object.entries(item)) {
    if (['pk', 'sk', 'gsi1pk', 'gsi1sk', 'type', 'ttl', 'version', ...hidden].includes(k)) continue;
    out[k] = v;
  }
  return out;
}

export function isConditionFailure(error: unknown): boolean {
  return (error as Error)?.name === 'ConditionalCheckFailedException';
}
