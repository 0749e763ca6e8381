import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateTableCommand, DeleteTableCommand } from '@aws-sdk/client-dynamodb';
import {
  type DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  QueryCommand,
  TransactGetCommand,
  TransactWriteCommand,
  UpdateCommand,
} from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createDocumentClient } from '../../lambdas/storage/dynamodb-client.ts';
import { type EmbeddedServices, startEmbeddedServices } from '../../local/embedded.ts';
import { ensureTable } from '../../local/provision.ts';

const TABLE = 'keygate-transactions-test';

let services: EmbeddedServices;
let ddb: DynamoDBDocumentClient;

/** A client the stand-in accepts: signed with the key pair of its data dir (local/caller-auth.ts). */
function client(endpoint: string, of: EmbeddedServices = services) {
  return createDocumentClient({
    region: 'us-east-1',
    endpoint,
    credentials: of.credentials,
    requestTimeoutMs: 20_000,
  });
}

beforeAll(async () => {
  services = await startEmbeddedServices();
  ddb = client(services.dynamodbEndpoint);
  await ensureTable(ddb, TABLE);
});

afterAll(async () => {
  ddb.destroy();
  await services.close();
});

let unique = 0;
const id = (prefix: string) => `${prefix}#${Date.now()}#${++unique}`;

const get = async (pk: string, sk = 'A') =>
  (await ddb.send(new GetCommand({ TableName: TABLE, Key: { pk, sk }, ConsistentRead: true }))).Item;

const gsi = async (gsi1pk: string) =>
  (
    await ddb.send(
      new QueryCommand({
        TableName: TABLE,
        IndexName: 'gsi1',
        KeyConditionExpression: 'gsi1pk = :p',
        ExpressionAttributeValues: { ':p': gsi1pk },
      }),
    )
  ).Items ?? [];

/** Runs the command and returns the error it fails with (fails the test if it succeeds). */
async function failure(command: TransactWriteCommand | TransactGetCommand): Promise<any> {
  try {
    await ddb.send(command as TransactWriteCommand);
  } catch (error) {
    return error;
  }
  throw new Error('expected the transaction to fail');
}

describe('TransactWriteItems', () => {
  it('applies Put, Update (SET/REMOVE/ADD/DELETE), Delete and ConditionCheck together, with their GSI entries', async () => {
    const pk = id('OK');
    await ddb.send(
      new PutCommand({
        TableName: TABLE,
        Item: { pk, sk: 'U', n: 1, tags: new Set(['a', 'b']), gone: 'x', gsi1pk: `${pk}#old`, gsi1sk: 'u' },
      }),
    );
    await ddb.send(
      new PutCommand({ TableName: TABLE, Item: { pk, sk: 'D', gsi1pk: `${pk}#old`, gsi1sk: 'd' } }),
    );
    await ddb.send(new PutCommand({ TableName: TABLE, Item: { pk, sk: 'C', state: 'active' } }));

    await ddb.send(
      new TransactWriteCommand({
        TransactItems: [
          {
            Put: {
              TableName: TABLE,
              Item: { pk, sk: 'P', v: 'new', gsi1pk: `${pk}#new`, gsi1sk: 'p' },
              ConditionExpression: 'attribute_not_exists(pk)',
            },
          },
          {
            Update: {
              TableName: TABLE,
              Key: { pk, sk: 'U' },
              UpdateExpression: 'SET #g = :g, label = :l ADD n :one, more :m REMOVE gone DELETE tags :b',
              ConditionExpression: 'n = :n',
              ExpressionAttributeNames: { '#g': 'gsi1pk' },
              ExpressionAttributeValues: {
                ':g': `${pk}#new`,
                ':l': 'L',
                ':one': 1,
                ':m': new Set(['z']),
                ':b': new Set(['b']),
                ':n': 1,
              },
            },
          },
          { Delete: { TableName: TABLE, Key: { pk, sk: 'D' }, ConditionExpression: 'attribute_exists(pk)' } },
          {
            ConditionCheck: {
              TableName: TABLE,
              Key: { pk, sk: 'C' },
              ConditionExpression: '#s = :a',
              ExpressionAttributeNames: { '#s': 'state' },
              ExpressionAttributeValues: { ':a': 'active' },
            },
          },
        ],
      }),
    );

    expect(await get(pk, 'P')).toEqual({ pk, sk: 'P', v: 'new', gsi1pk: `${pk}#new`, gsi1sk: 'p' });
    expect(await get(pk, 'U')).toEqual({
      pk,
      sk: 'U',
      n: 2,
      tags: new Set(['a']),
      more: new Set(['z']),
      label: 'L',
      gsi1pk: `${pk}#new`,
      gsi1sk: 'u',
    });
    expect(await get(pk, 'D')).toBeUndefined();
    expect(await get(pk, 'C')).toEqual({ pk, sk: 'C', state: 'active' });
    expect((await gsi(`${pk}#new`)).map((item) => item.sk).sort()).toEqual(['P', 'U']);
    expect(await gsi(`${pk}#old`)).toEqual([]);
  });

  it('cancels everything when one condition fails, with a reason per action and the old item when asked', async () => {
    const pk = id('CANCEL');
    await ddb.send(
      new PutCommand({ TableName: TABLE, Item: { pk, sk: 'A', n: 5, gsi1pk: `${pk}#g`, gsi1sk: 'a' } }),
    );
    await ddb.send(new PutCommand({ TableName: TABLE, Item: { pk, sk: 'B', n: 7 } }));
    const error = await failure(
      new TransactWriteCommand({
        TransactItems: [
          { Put: { TableName: TABLE, Item: { pk, sk: 'NEW', gsi1pk: `${pk}#g`, gsi1sk: 'new' } } },
          {
            Update: {
              TableName: TABLE,
              Key: { pk, sk: 'A' },
              UpdateExpression: 'SET n = :zero REMOVE gsi1pk',
              ExpressionAttributeValues: { ':zero': 0 },
            },
          },
          {
            ConditionCheck: {
              TableName: TABLE,
              Key: { pk, sk: 'B' },
              ConditionExpression: 'n = :six',
              ExpressionAttributeValues: { ':six': 6 },
              ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
            },
          },
          {
            Delete: {
              TableName: TABLE,
              Key: { pk, sk: 'MISSING' },
              ConditionExpression: 'attribute_exists(pk)',
              ReturnValuesOnConditionCheckFailure: 'ALL_OLD',
            },
          },
        ],
      }),
    );
    expect(error.name).toBe('TransactionCanceledException');
    expect(error.message).toBe(
      'Transaction cancelled, please refer cancellation reasons for specific reasons [None, None, ConditionalCheckFailed, ConditionalCheckFailed]',
    );
    expect(error.CancellationReasons).toEqual([
      { Code: 'None' },
      { Code: 'None' },
      {
        Code: 'ConditionalCheckFailed',
        Message: 'The conditional request failed',
        Item: { pk: { S: pk }, sk: { S: 'B' }, n: { N: '7' } },
      },
      { Code: 'ConditionalCheckFailed', Message: 'The conditional request failed' },
    ]);
    expect(await get(pk, 'NEW')).toBeUndefined();
    expect(await get(pk, 'A')).toEqual({ pk, sk: 'A', n: 5, gsi1pk: `${pk}#g`, gsi1sk: 'a' });
    expect((await gsi(`${pk}#g`)).map((item) => item.sk)).toEqual(['A']);
  });

  it('cancels with ValidationError when an update cannot apply to the stored item', async () => {
    const pk = id('TYPE');
    await ddb.send(new PutCommand({ TableName: TABLE, Item: { pk, sk: 'A', n: 'not a number' } }));
    const error = await failure(
      new TransactWriteCommand({
        TransactItems: [
          { Put: { TableName: TABLE, Item: { pk, sk: 'B' } } },
          {
            Update: {
              TableName: TABLE,
              Key: { pk, sk: 'A' },
              UpdateExpression: 'ADD n :one',
              ExpressionAttributeValues: { ':one': 1 },
            },
          },
        ],
      }),
    );
    expect(error.name).toBe('TransactionCanceledException');
    expect(error.CancellationReasons).toEqual([
      { Code: 'None' },
      { Code: 'ValidationError', Message: 'An operand in the update expression has an incorrect data type' },
    ]);
    expect(await get(pk, 'B')).toBeUndefined();
  });

  it('cancels with ValidationError when an update grows an item past 400 KB', async () => {
    const pk = id('BIG');
    await ddb.send(new PutCommand({ TableName: TABLE, Item: { pk, sk: 'A', blob: 'x'.repeat(300_000) } }));
    const error = await failure(
      new TransactWriteCommand({
        TransactItems: [
          {
            Update: {
              TableName: TABLE,
              Key: { pk, sk: 'A' },
              UpdateExpression: 'SET more = :m',
              ExpressionAttributeValues: { ':m': 'y'.repeat(200_000) },
            },
          },
        ],
      }),
    );
    expect(error.CancellationReasons).toEqual([
      { Code: 'ValidationError', Message: 'Item size to update has exceeded the maximum allowed size' },
    ]);
    expect((await get(pk, 'A'))?.more).toBeUndefined();
  });

  it('rejects malformed transactions as a whole, like DynamoDB, before touching anything', async () => {
    const pk = id('BAD');
    const put = (sk: string) => ({ Put: { TableName: TABLE, Item: { pk, sk } } });
    const cases: [TransactWriteCommand, string, RegExp][] = [
      [
        new TransactWriteCommand({ TransactItems: Array.from({ length: 101 }, (_, i) => put(`S${i}`)) }),
        'ValidationException',
        /Member must have length less than or equal to 100/,
      ],
      [
        new TransactWriteCommand({
          TransactItems: [put('S'), { Delete: { TableName: TABLE, Key: { pk, sk: 'S' } } }],
        }),
        'ValidationException',
        /^Transaction request cannot include multiple operations on one item$/,
      ],
      [
        new TransactWriteCommand({
          TransactItems: [put('S'), { Put: { TableName: 'no-such-table', Item: { pk, sk: 'S' } } }],
        }),
        'ResourceNotFoundException',
        /Requested resource not found/,
      ],
      [
        new TransactWriteCommand({
          TransactItems: [put('S'), { Delete: { TableName: TABLE, Key: { pk } } }],
        }),
        'ValidationException',
        /The provided key element does not match the schema/,
      ],
      [
        new TransactWriteCommand({
          TransactItems: [
            put('S'),
            { Put: { TableName: TABLE, Item: { pk, sk: 'L', b: 'x'.repeat(410_000) } } },
          ],
        }),
        'ValidationException',
        /Item size has exceeded the maximum allowed size/,
      ],
      [
        new TransactWriteCommand({
          TransactItems: [
            put('S'),
            {
              Update: {
                TableName: TABLE,
                Key: { pk, sk: 'U' },
                UpdateExpression: 'SET pk = :x',
                ExpressionAttributeValues: { ':x': 'y' },
              },
            },
          ],
        }),
        'ValidationException',
        /Cannot update attribute pk. This attribute is part of the key/,
      ],
      [
        new TransactWriteCommand({
          TransactItems: [
            put('S'),
            { ConditionCheck: { TableName: TABLE, Key: { pk, sk: 'C' }, ConditionExpression: 'n = = 1' } },
          ],
        }),
        'ValidationException',
        /Invalid ConditionExpression/,
      ],
      [
        new TransactWriteCommand({
          TransactItems: [{ ...put('S'), Delete: { TableName: TABLE, Key: { pk, sk: 'T' } } }],
        }),
        'ValidationException',
        /one of Check, Put, Update or Delete/,
      ],
    ];
    for (const [command, name, message] of cases) {
      const error = await failure(command);
      expect({ name: error.name, status: error.$metadata.httpStatusCode }).toEqual({ name, status: 400 });
      expect(error.message).toMatch(message);
    }
    expect(await get(pk, 'S')).toBeUndefined();
  });

  it('honours ClientRequestToken: a repeat succeeds without applying twice, a different request is refused', async () => {
    const pk = id('TOKEN');
    const token = `token-${pk}`.slice(0, 36);
    const add = (amount: number) =>
      new TransactWriteCommand({
        ClientRequestToken: token,
        TransactItems: [
          {
            Update: {
              TableName: TABLE,
              Key: { pk, sk: 'A' },
              UpdateExpression: 'ADD n :a',
              ExpressionAttributeValues: { ':a': amount },
            },
          },
        ],
      });
    await ddb.send(add(1));
    await ddb.send(add(1));
    expect((await get(pk))?.n).toBe(1);
    expect((await failure(add(2))).name).toBe('IdempotentParameterMismatchException');
    expect((await get(pk))?.n).toBe(1);
  });

  it('a cancelled token may be retried and then applies', async () => {
    const pk = id('RETRY');
    const command = new TransactWriteCommand({
      ClientRequestToken: `retry-${unique}`,
      TransactItems: [
        {
          Update: {
            TableName: TABLE,
            Key: { pk, sk: 'A' },
            UpdateExpression: 'ADD n :a',
            ConditionExpression: 'attribute_exists(ready)',
            ExpressionAttributeValues: { ':a': 1 },
          },
        },
      ],
    });
    expect((await failure(command)).name).toBe('TransactionCanceledException');
    await ddb.send(new PutCommand({ TableName: TABLE, Item: { pk, sk: 'A', ready: true } }));
    await ddb.send(command);
    expect((await get(pk))?.n).toBe(1);
  });
});

describe('TransactGetItems', () => {
  it('reads up to 100 items with projections, missing items as empty responses', async () => {
    const pk = id('GET');
    await ddb.send(new PutCommand({ TableName: TABLE, Item: { pk, sk: 'A', a: 1, b: { c: 2, d: 3 } } }));
    const { Responses } = await ddb.send(
      new TransactGetCommand({
        TransactItems: [
          {
            Get: {
              TableName: TABLE,
              Key: { pk, sk: 'A' },
              ProjectionExpression: '#b.c, a',
              ExpressionAttributeNames: { '#b': 'b' },
            },
          },
          { Get: { TableName: TABLE, Key: { pk, sk: 'A2' } } },
          { Get: { TableName: TABLE, Key: { pk: `${pk}x`, sk: 'A' } } },
        ],
      }),
    );
    expect(Responses).toEqual([{ Item: { a: 1, b: { c: 2 } } }, {}, {}]);
    const tooMany = await failure(
      new TransactGetCommand({
        TransactItems: Array.from({ length: 101 }, (_, i) => ({
          Get: { TableName: TABLE, Key: { pk, sk: `S${i}` } },
        })),
      }),
    );
    expect(tooMany.name).toBe('ValidationException');
    const twice = await failure(
      new TransactGetCommand({
        TransactItems: [
          { Get: { TableName: TABLE, Key: { pk, sk: 'A' } } },
          { Get: { TableName: TABLE, Key: { pk, sk: 'A' } } },
        ],
      }),
    );
    expect(twice.message).toBe('Transaction request cannot include multiple operations on one item');
  });
});

describe('isolation and atomicity under concurrency', () => {
  it('transfers between counters keep the sum, lose no concurrent UpdateItem, and every snapshot read balances', async () => {
    const pk = id('BANK');
    const accounts = ['a', 'b', 'c', 'd'];
    const initial = 5;
    for (const sk of accounts) {
      await ddb.send(new PutCommand({ TableName: TABLE, Item: { pk, sk, balance: initial, touches: 0 } }));
    }
    const rounds = 6;
    const perRound = 24;
    let committed = 0;
    let cancelled = 0;
    let touches = 0;
    let unbalancedReads = 0;
    for (let round = 0; round < rounds; round++) {
      // A barrier: every call of the round is created first, then all are released at once.
      let release!: () => void;
      const barrier = new Promise<void>((resolve) => {
        release = resolve;
      });
      const calls: Promise<void>[] = [];
      for (let i = 0; i < perRound; i++) {
        const from = accounts[(i + round) % accounts.length]!;
        const to = accounts[(i * 3 + round + 1) % accounts.length]!;
        if (from !== to) {
          calls.push(
            barrier.then(async () => {
              try {
                await ddb.send(
                  new TransactWriteCommand({
                    TransactItems: [
                      {
                        Update: {
                          TableName: TABLE,
                          Key: { pk, sk: from },
                          UpdateExpression: 'SET balance = balance - :one',
                          ConditionExpression: 'balance >= :one',
                          ExpressionAttributeValues: { ':one': 1 },
                        },
                      },
                      {
                        Update: {
                          TableName: TABLE,
                          Key: { pk, sk: to },
                          UpdateExpression: 'SET balance = balance + :one',
                          ExpressionAttributeValues: { ':one': 1 },
                        },
                      },
                    ],
                  }),
                );
                committed++;
              } catch (error) {
                if ((error as Error).name !== 'TransactionCanceledException') throw error;
                cancelled++;
              }
            }),
          );
        }
        calls.push(
          barrier.then(async () => {
            await ddb.send(
              new UpdateCommand({
                TableName: TABLE,
                Key: { pk, sk: accounts[i % accounts.length]! },
                UpdateExpression: 'ADD touches :one',
                ExpressionAttributeValues: { ':one': 1 },
              }),
            );
            touches++;
          }),
        );
        calls.push(
          barrier.then(async () => {
            const { Responses } = await ddb.send(
              new TransactGetCommand({
                TransactItems: accounts.map((sk) => ({ Get: { TableName: TABLE, Key: { pk, sk } } })),
              }),
            );
            const sum = (Responses ?? []).reduce((total, r) => total + Number(r.Item?.balance), 0);
            if (sum !== initial * accounts.length) unbalancedReads++;
          }),
        );
      }
      release();
      await Promise.all(calls);
    }
    const final = await Promise.all(accounts.map((sk) => get(pk, sk)));
    expect(final.reduce((total, item) => total + Number(item?.balance), 0)).toBe(initial * accounts.length);
    expect(final.every((item) => Number(item?.balance) >= 0)).toBe(true);
    expect(final.reduce((total, item) => total + Number(item?.touches), 0)).toBe(touches);
    expect(unbalancedReads).toBe(0);
    expect(committed).toBeGreaterThan(0);
    expect(committed + cancelled).toBeGreaterThan(0);
  });

  it('a GSI query never sees a transaction half-applied', async () => {
    const pk = id('SWAP');
    const members = 6;
    for (let i = 0; i < members; i++) {
      const side = i % 2 ? 'left' : 'right';
      await ddb.send(
        new PutCommand({
          TableName: TABLE,
          Item: { pk, sk: `M${i}`, gsi1pk: `${pk}#${side}`, gsi1sk: `M${i}` },
        }),
      );
    }
    let wrongCounts = 0;
    const swaps: Promise<unknown>[] = [];
    const reads: Promise<void>[] = [];
    for (let n = 0; n < 40; n++) {
      // Moves one item from each side to the other: each side keeps members/2 items.
      swaps.push(
        (async () => {
          const items = await gsi(`${pk}#left`).then(
            async (left) => [left, await gsi(`${pk}#right`)] as const,
          );
          const [left, right] = items;
          const a = left[n % left.length];
          const b = right[n % right.length];
          if (!a || !b) return;
          await ddb
            .send(
              new TransactWriteCommand({
                TransactItems: [
                  {
                    Update: {
                      TableName: TABLE,
                      Key: { pk, sk: a.sk },
                      UpdateExpression: 'SET gsi1pk = :to',
                      ConditionExpression: 'gsi1pk = :from',
                      ExpressionAttributeValues: { ':to': `${pk}#right`, ':from': `${pk}#left` },
                    },
                  },
                  {
                    Update: {
                      TableName: TABLE,
                      Key: { pk, sk: b.sk },
                      UpdateExpression: 'SET gsi1pk = :to',
                      ConditionExpression: 'gsi1pk = :from',
                      ExpressionAttributeValues: { ':to': `${pk}#left`, ':from': `${pk}#right` },
                    },
                  },
                ],
              }),
            )
            .catch((error) => {
              if (error.name !== 'TransactionCanceledException') throw error;
            });
        })(),
      );
      reads.push(
        gsi(`${pk}#left`).then((left) => {
          if (left.length !== members / 2) wrongCounts++;
        }),
      );
    }
    await Promise.all([...swaps, ...reads]);
    expect(wrongCounts).toBe(0);
    expect((await gsi(`${pk}#left`)).length + (await gsi(`${pk}#right`)).length).toBe(members);
  });
});

describe('durability on disk', () => {
  it('after kill -9 mid-run, every transaction is on disk entirely or not at all, and every acknowledged one is there', async () => {
    const dataDir = join(mkdtempSync(join(tmpdir(), 'kg-txn-')), 'data');
    const child = spawn(process.execPath, ['test/helpers/transaction-writer.ts', dataDir, TABLE], {
      env: { ...process.env, NODE_OPTIONS: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const acknowledged = new Set<number>();
    let errors = '';
    child.stderr.on('data', (d) => {
      errors += d;
    });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    await new Promise<void>((resolve, reject) => {
      let buffered = '';
      child.stdout.on('data', (d) => {
        buffered += d;
        const lines = buffered.split('\n');
        buffered = lines.pop()!;
        for (const line of lines) if (/^\d+$/.test(line)) acknowledged.add(Number(line));
        // Killed while transactions are still being written (the writer keeps 8 in flight).
        if (acknowledged.size >= 150) {
          child.kill('SIGKILL');
          resolve();
        }
      });
      child.once('exit', () => reject(new Error(`writer exited early:\n${errors}`)));
    });
    await exited;

    const reopened = await startEmbeddedServices(dataDir);
    const reader = client(reopened.dynamodbEndpoint, reopened);
    try {
      const torn: number[] = [];
      const missing: number[] = [];
      let present = 0;
      let items = 0;
      for (let n = 0; n < acknowledged.size + 50; n++) {
        const { Items = [] } = await reader.send(
          new QueryCommand({
            TableName: TABLE,
            KeyConditionExpression: 'pk = :p',
            ExpressionAttributeValues: { ':p': `CRASH#${n}` },
            ConsistentRead: true,
          }),
        );
        const indexed = await reader.send(
          new QueryCommand({
            TableName: TABLE,
            IndexName: 'gsi1',
            KeyConditionExpression: 'gsi1pk = :p',
            ExpressionAttributeValues: { ':p': `CRASH#${n}` },
          }),
        );
        if (Items.length !== 0 && (Items.length !== 4 || indexed.Items?.length !== 4)) torn.push(n);
        if (Items.length === 0 && indexed.Items?.length) torn.push(n);
        if (acknowledged.has(n) && Items.length === 0) missing.push(n);
        if (Items.length) present++;
        items += Items.length;
      }
      const total = await reader.send(
        new GetCommand({ TableName: TABLE, Key: { pk: 'CRASH', sk: 'TOTAL' } }),
      );
      expect(torn).toEqual([]);
      expect(missing).toEqual([]);
      expect(present).toBeGreaterThanOrEqual(acknowledged.size);
      // The counter moved in the same transactions as the items: it counts exactly the items on disk.
      expect(total.Item?.items).toBe(items);
    } finally {
      reader.destroy();
      await reopened.close();
    }
  }, 120_000);
});

describe('table definitions kept in memory (local/dynamodb-transactions.ts, cacheTables)', () => {
  it('a table deleted, re-created with another key schema, is seen as it is now on the very next call', async () => {
    const name = `keygate-table-cache-${Date.now()}`;
    await ddb.send(
      new CreateTableCommand({
        TableName: name,
        AttributeDefinitions: [{ AttributeName: 'pk', AttributeType: 'S' }],
        KeySchema: [{ AttributeName: 'pk', KeyType: 'HASH' }],
        BillingMode: 'PAY_PER_REQUEST',
      }),
    );
    await ddb.send(new PutCommand({ TableName: name, Item: { pk: 'a', v: 1 } }));
    // Read twice: the second answer comes from the cached definition.
    for (let i = 0; i < 2; i++)
      expect((await ddb.send(new GetCommand({ TableName: name, Key: { pk: 'a' } }))).Item).toEqual({
        pk: 'a',
        v: 1,
      });

    await ddb.send(new DeleteTableCommand({ TableName: name }));
    await expect(ddb.send(new GetCommand({ TableName: name, Key: { pk: 'a' } }))).rejects.toMatchObject({
      name: 'ResourceNotFoundException',
    });

    await ddb.send(
      new CreateTableCommand({
        TableName: name,
        AttributeDefinitions: [
          { AttributeName: 'id', AttributeType: 'S' },
          { AttributeName: 'n', AttributeType: 'N' },
        ],
        KeySchema: [
          { AttributeName: 'id', KeyType: 'HASH' },
          { AttributeName: 'n', KeyType: 'RANGE' },
        ],
        BillingMode: 'PAY_PER_REQUEST',
      }),
    );
    // The old key schema is refused, the new one is used, in transactions too.
    await expect(ddb.send(new GetCommand({ TableName: name, Key: { pk: 'a' } }))).rejects.toMatchObject({
      name: 'ValidationException',
    });
    await ddb.send(
      new TransactWriteCommand({ TransactItems: [{ Put: { TableName: name, Item: { id: 'x', n: 1 } } }] }),
    );
    expect((await ddb.send(new GetCommand({ TableName: name, Key: { id: 'x', n: 1 } }))).Item).toEqual({
      id: 'x',
      n: 1,
    });
  });
});
