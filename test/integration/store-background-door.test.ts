import { GetCommand, TransactWriteCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createDocumentClient } from '../../lambdas/storage/dynamodb-client.ts';
import { type EmbeddedServices, startEmbeddedServices } from '../../local/embedded.ts';
import { ensureTable } from '../../local/provision.ts';

/**
 * The embedded store's background door (local/embedded.ts): the telemetry consumer's calls go in
 * behind the proxy's, with at most a share of the store's time while the proxy keeps it busy — but
 * they are slowed, never starved, and what they write is written.
 */
const TABLE = 'keygate-background-door-test';
let services: EmbeddedServices;

const client = (endpoint: string) =>
  createDocumentClient({
    region: 'us-east-1',
    endpoint,
    credentials: services.credentials,
    requestTimeoutMs: 60_000,
  });

beforeAll(async () => {
  services = await startEmbeddedServices();
  const ddb = client(services.dynamodbEndpoint);
  await ensureTable(ddb, TABLE);
  ddb.destroy();
});

afterAll(async () => {
  await services.close();
});

describe('the background door of the embedded store', () => {
  it('lets every background transaction through while the main door is kept busy, and loses no write', async () => {
    const main = client(services.dynamodbEndpoint);
    const background = client(services.dynamodbBackgroundEndpoint);
    let busy = true;
    let mainCalls = 0;
    let mainFailures = 0;
    // Four callers that never leave the main door idle until the background work is done.
    const load = Array.from({ length: 4 }, async () => {
      while (busy) {
        try {
          await main.send(new GetCommand({ TableName: TABLE, Key: { pk: 'nothing', sk: 'A' } }));
          mainCalls++;
        } catch {
          mainFailures++;
        }
      }
    });
    const TRANSACTIONS = 24;
    const ACTIONS = 25;
    const written: string[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (next < TRANSACTIONS) {
          const t = next++;
          const items = Array.from({ length: ACTIONS }, (_, i) => ({
            pk: `bg#${t}`,
            sk: `item#${i}`,
            value: t * ACTIONS + i,
          }));
          await background.send(
            new TransactWriteCommand({
              TransactItems: items.map((Item) => ({
                Put: { TableName: TABLE, Item, ConditionExpression: 'attribute_not_exists(pk)' },
              })),
            }),
          );
          written.push(...items.map((i) => `${i.pk}|${i.sk}`));
        }
      }),
    );
    busy = false;
    await Promise.all(load);

    expect(mainFailures).toBe(0);
    expect(mainCalls).toBeGreaterThan(0);
    expect(written).toHaveLength(TRANSACTIONS * ACTIONS);
    const missing: string[] = [];
    for (const key of written) {
      const [pk, sk] = key.split('|');
      const got = await main.send(
        new GetCommand({ TableName: TABLE, Key: { pk, sk }, ConsistentRead: true }),
      );
      if (!got.Item) missing.push(key);
    }
    expect(missing).toEqual([]);
    main.destroy();
    background.destroy();
  }, 120_000);
});
