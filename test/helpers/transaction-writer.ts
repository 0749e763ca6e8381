import { TransactWriteCommand } from '@aws-sdk/lib-dynamodb';
import { createDocumentClient } from '../../lambdas/storage/dynamodb-client.ts';
import { startEmbeddedServices } from '../../local/embedded.ts';
import { ensureTable } from '../../local/provision.ts';

/**
 * Child process of the kill -9 test (test/integration/dynamodb-transactions.test.ts): writes
 * transactions on a data dir until it is killed, 8 in flight, and prints each one's number once
 * DynamoDB answered it. Transaction n puts 4 items under pk CRASH#n (with GSI entries) and adds 4
 * to the counter CRASH/TOTAL, so a torn transaction shows in the items, the index or the counter.
 */
const [dataDir, table] = process.argv.slice(2) as [string, string];
const services = await startEmbeddedServices(dataDir);
const ddb = createDocumentClient({
  region: 'us-east-1',
  endpoint: services.dynamodbEndpoint,
  credentials: services.credentials,
});
await ensureTable(ddb, table);

let next = 0;
async function writer() {
  for (;;) {
    const n = next++;
    await ddb.send(
      new TransactWriteCommand({
        TransactItems: [
          ...[1, 2, 3, 4].map((i) => ({
            Put: {
              TableName: table,
              Item: {
                pk: `CRASH#${n}`,
                sk: `${i}`,
                gsi1pk: `CRASH#${n}`,
                gsi1sk: `${i}`,
                pad: 'x'.repeat(2000),
              },
              ConditionExpression: 'attribute_not_exists(pk)',
            },
          })),
          {
            Update: {
              TableName: table,
              Key: { pk: 'CRASH', sk: 'TOTAL' },
              UpdateExpression: 'ADD #items :four',
              ExpressionAttributeNames: { '#items': 'items' },
              ExpressionAttributeValues: { ':four': 4 },
            },
          },
        ],
      }),
    );
    process.stdout.write(`${n}\n`);
  }
}

await Promise.all(Array.from({ length: 8 }, writer));
