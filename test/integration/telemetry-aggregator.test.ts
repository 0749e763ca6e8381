import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { InitializeMiddleware, MetadataBearer } from '@smithy/types';
import fc from 'fast-check';
import type { Deps } from '../../lambdas/shared/deps.ts';
import { createDocumentClient } from '../../lambdas/storage/dynamodb-client.ts';
import { type Interval, keys } from '../../lambdas/storage/keys.ts';
import { getItem, queryPrefix } from '../../lambdas/storage/table.ts';
import { type AggregatorOptions, createAggregatorHandler } from '../../lambdas/telemetry/aggregator.ts';
import { pendingKey } from '../../lambdas/telemetry/request-log.ts';
import { bucketStart, bucketView, pathTemplate } from '../../lambdas/telemetry/rollup.ts';
import { type LocalStack, startLocalStack } from '../../local/stack.ts';
import { captureLogs } from '../helpers/logs.ts';
import { type Delivered, eventOf, makeRecord, onShard } from '../helpers/telemetry.ts';

// Faults are provoked on purpose here: their WARN/ERROR lines go to a capture, not the test output.
const logs = captureLogs();
afterAll(() => logs.restore());

let stack: LocalStack;
let deps: Deps;
let handler: ReturnType<typeof createAggregatorHandler>;
let n = 0;
const uniqueProxy = () => `proxy-agg-${++n}-${Date.now()}`;
const table = () => Object.values(deps.cells)[0]!;

beforeAll(async () => {
  stack = await startLocalStack({ telemetryPoller: false });
  deps = stack.deps;
});
afterAll(async () => {
  await stack.close();
});

async function bucketItem(scope: 'CLIENT' | 'PROXY', id: string, interval: Interval, at: Date) {
  return getItem<Record<string, unknown>>(
    table(),
    keys.telemetryBucket(scope, id, interval, bucketStart(at, interval)),
  );
}

/** The bucket without its watermarks and ttl: what a replay must leave untouched. */
function counts(item: Record<string, unknown> | undefined) {
  return Object.fromEntries(Object.entries(item ?? {}).filter(([k]) => !k.startsWith('wm_') && k !== 'ttl'));
}

async function logCount(proxyId: string, at: Date) {
  return (await queryPrefix(table(), keys.requestLogPartition(proxyId, at.toISOString().slice(0, 10))))
    .length;
}

/** Runs the handler the way the event source mapping does: redeliver from the lowest failure. */
async function deliverUntilDone(delivered: Delivered[], batchSize = delivered.length) {
  let pos = 0;
  let rounds = 0;
  while (pos < delivered.length) {
    if (++rounds > 50) throw new Error('never converged');
    const batch = delivered.slice(pos, pos + batchSize);
    const out = await handler(eventOf(batch));
    const failed = out.batchItemFailures.map((f) => f.itemIdentifier);
    if (failed.length === 0) pos += batch.length;
    else pos += batch.findIndex((d) => failed.includes(d.seq));
  }
}

/** Does this DynamoDB call write the item `key` (a single UpdateItem, or inside a transaction)? */
function updates(input: Record<string, unknown>, key: { pk: string; sk?: string }): boolean {
  const hits = (u: { Key?: { pk?: string; sk?: string }; UpdateExpression?: string } | undefined) =>
    !!u?.UpdateExpression && u.Key?.pk === key.pk && (key.sk === undefined || u.Key?.sk === key.sk);
  const items = (input.TransactItems ?? []) as { Update?: Parameters<typeof hits>[0] }[];
  return hits(input) || items.some((t) => hits(t.Update));
}

/**
 * An aggregator handler whose store client runs `middleware` first (fault injection, counting):
 * the embedded store can't fail on demand.
 */
function handlerWith(middleware: InitializeMiddleware<object, MetadataBearer>, options: AggregatorOptions) {
  const client = createDocumentClient({
    region: 'us-east-1',
    endpoint: stack.services.dynamodbEndpoint,
    credentials: stack.services.credentials,
  }) as DynamoDBDocumentClient;
  client.middlewareStack.add(middleware, { step: 'initialize', name: 'test-middleware' });
  const cell = Object.values(deps.cells)[0]!;
  const handler = createAggregatorHandler(
    { ...deps, cells: Object.fromEntries(Object.keys(deps.cells).map((r) => [r, { ...cell, ddb: client }])) },
    options,
  );
  return { handler, client };
}

describe.each([
  ['one write per item (AWS)', {}],
  ['transactions of up to 100 writes (local mode)', { transactions: true }],
] as const)('telemetry aggregator, %s', (_, options) => {
  beforeAll(() => {
    handler = createAggregatorHandler(deps, options);
  });

  it('writes one log item per record and rolls up per client and proxy at three intervals', async () => {
    const proxyId = uniqueProxy();
    const clientId = `client-${proxyId}`;
    const at = new Date(Date.UTC(2026, 10, 28, 10, 15, 30));
    const records = [
      makeRecord({ proxyId, clientId, status: 200, bytes: { in: 10, out: 100 } }, at),
      makeRecord({ proxyId, clientId, status: 201, bytes: { in: 20, out: 200 } }, at),
      makeRecord({ proxyId, clientId, status: 302 }, at),
      makeRecord({ proxyId, clientId, status: 404 }, at),
      makeRecord(
        { proxyId, clientId, status: 403, decision: 'denied', proxyCode: 'proxy-access-denied' },
        at,
      ),
      makeRecord({ proxyId, clientId, status: 429, decision: 'rate_limited' }, at),
      makeRecord({ proxyId, clientId, status: 502, decision: 'error', durations: { gatewayMs: 3 } }, at),
      makeRecord({ proxyId, clientId, status: 500 }, at),
    ];
    const out = await handler(eventOf(onShard(records)));
    expect(out).toEqual({ batchItemFailures: [] });
    expect(await logCount(proxyId, at)).toBe(8);
    for (const interval of ['minute', 'hour', 'day'] as const) {
      for (const [scope, id] of [
        ['PROXY', proxyId],
        ['CLIENT', clientId],
      ] as const) {
        const view = bucketView('x', await bucketItem(scope, id, interval, at));
        expect(view).toMatchObject({
          requests: 8,
          status: { '2xx': 2, '3xx': 1, '4xx': 3, '5xx': 2 },
          allowed: 5,
          denied: 1,
          rateLimited: 1,
          gatewayErrors: 1,
          bytes: { in: 10 + 20 + 6 * 120, out: 100 + 200 + 6 * 2048 },
        });
      }
    }
    const item = await getItem<Record<string, unknown>>(
      table(),
      keys.requestLog(proxyId, '2026-11-28', records[4]!.requestId),
    );
    expect(item).toMatchObject({ decision: 'denied', status: 403, targetCredentialId: 'tcred-1' });
    expect(item!.ttl).toBe(Math.floor(at.getTime() / 1000) + 90 * 86_400);
  });

  it('changes no count and adds no log item when the same batch is delivered again', async () => {
    const proxyId = uniqueProxy();
    const at = new Date();
    const delivered = onShard(Array.from({ length: 30 }, () => makeRecord({ proxyId }, at)));
    await handler(eventOf(delivered));
    const before = counts(await bucketItem('PROXY', proxyId, 'minute', at));
    expect(before.requests).toBe(30);
    await handler(eventOf(delivered));
    await handler(eventOf(delivered.slice(7, 19)));
    expect(counts(await bucketItem('PROXY', proxyId, 'minute', at))).toEqual(before);
    expect(await logCount(proxyId, at)).toBe(30);
  });

  it('counts every record exactly once under any in-order redelivery and split (property)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 40 }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 15 })), { minLength: 1, maxLength: 8 }),
        async (total, deliveries) => {
          const proxyId = uniqueProxy();
          const at = new Date();
          const delivered = onShard(
            Array.from({ length: total }, (_, i) =>
              makeRecord({ proxyId, status: i % 5 === 0 ? 500 : 200, durations: { gatewayMs: i } }, at),
            ),
          );
          // Each delivery restarts at or before where the previous one ended (redelivery,
          // bisection), then a final pass delivers the rest.
          let end = 0;
          for (const [back, size] of deliveries) {
            const start = Math.max(0, end - (back % (end + 1)));
            await handler(eventOf(delivered.slice(start, start + size)));
            end = Math.max(end, Math.min(total, start + size));
          }
          await deliverUntilDone(delivered.slice(end), 7);
          const view = bucketView('x', await bucketItem('PROXY', proxyId, 'minute', at));
          expect(view.requests).toBe(total);
          expect(view.status['5xx']).toBe(delivered.filter((d) => d.record.status === 500).length);
          expect(await logCount(proxyId, at)).toBe(total);
        },
      ),
      { numRuns: 12 },
    );
  });

  it('keeps separate watermarks for records of one bucket arriving on two shards', async () => {
    const proxyId = uniqueProxy();
    const at = new Date();
    const a = onShard(
      Array.from({ length: 5 }, () => makeRecord({ proxyId }, at)),
      'shardId-000000000000',
      100,
    );
    const b = onShard(
      Array.from({ length: 7 }, () => makeRecord({ proxyId }, at)),
      'shardId-000000000001',
      1,
    );
    await handler(eventOf(a));
    await handler(eventOf(b)); // lower sequence numbers, other shard: still counted
    await handler(eventOf([...a, ...b])); // replay of both
    expect((await bucketItem('PROXY', proxyId, 'minute', at))!.requests).toBe(12);
  });

  it('reports only the records of a bucket that failed, and redelivery completes the count exactly', async () => {
    const proxyId = uniqueProxy();
    const at = new Date();
    const hourKey = keys.telemetryBucket('PROXY', proxyId, 'hour', bucketStart(at, 'hour'));
    // Fault injection the embedded store can't produce on demand: the first two updates of one
    // bucket fail, one before and one after DynamoDB applied it (a lost answer).
    let faults = 0;
    const faulty = handlerWith(
      (next) => async (args) => {
        const hit = updates(args.input as Record<string, unknown>, hourKey);
        if (hit && faults === 0) {
          faults++;
          throw Object.assign(new Error('throttled'), {
            name: 'ProvisionedThroughputExceededException',
            $metadata: {},
          });
        }
        if (hit && faults === 1) {
          faults++;
          await next(args);
          throw Object.assign(new Error('socket hang up'), { name: 'TimeoutError' });
        }
        return next(args);
      },
      options,
    );
    const delivered = onShard(Array.from({ length: 10 }, () => makeRecord({ proxyId }, at)));
    // Both faults are absorbed by the aggregator's own retries with a re-read.
    expect(await faulty.handler(eventOf(delivered))).toEqual({ batchItemFailures: [] });
    expect(faults).toBe(2);
    expect((await bucketItem('PROXY', proxyId, 'hour', at))!.requests).toBe(10);
    expect((await bucketItem('PROXY', proxyId, 'minute', at))!.requests).toBe(10);
    faulty.client.destroy();
  });

  it('reports failed records when a bucket stays unavailable, and the redelivery is exact', async () => {
    const proxyId = uniqueProxy();
    const at = new Date();
    const dayKey = keys.telemetryBucket('PROXY', proxyId, 'day', bucketStart(at, 'day'));
    const faulty = handlerWith(
      (next) => async (args) => {
        if (updates(args.input as Record<string, unknown>, { pk: dayKey.pk }))
          throw Object.assign(new Error('down'), { name: 'InternalServerError', $metadata: {} });
        return next(args);
      },
      options,
    );
    const other = uniqueProxy();
    const delivered = onShard([
      makeRecord({ proxyId: other }, at),
      ...Array.from({ length: 4 }, () => makeRecord({ proxyId }, at)),
      makeRecord({ proxyId: other }, at),
    ]);
    const out = await faulty.handler(eventOf(delivered));
    expect(out.batchItemFailures.map((f) => f.itemIdentifier)).toEqual(
      delivered.slice(1, 5).map((d) => d.seq),
    );
    faulty.client.destroy();
    // The mapping redelivers from the lowest failure: records 1..5 (5 was fine already).
    expect(await handler(eventOf(delivered.slice(1)))).toEqual({ batchItemFailures: [] });
    for (const interval of ['minute', 'hour', 'day'] as const)
      expect((await bucketItem('PROXY', proxyId, interval, at))!.requests).toBe(4);
    expect((await bucketItem('PROXY', other, 'minute', at))!.requests).toBe(2);
  });

  it('skips records it can never read, without blocking the shard', async () => {
    const proxyId = uniqueProxy();
    const good = onShard([makeRecord({ proxyId })], 'shardId-000000000000', 10);
    const event = eventOf(good);
    const poison = structuredClone(event.Records[0]!);
    poison.kinesis.sequenceNumber = '1';
    poison.kinesis.data = Buffer.from('{"not":"a record"').toString('base64');
    expect(await handler({ Records: [poison, ...event.Records] })).toEqual({ batchItemFailures: [] });
    expect((await bucketItem('PROXY', proxyId, 'minute', new Date()))!.requests).toBe(1);
  });

  it('neither logs nor rolls up records of unknown proxies', async () => {
    const proxyId = uniqueProxy();
    const at = new Date();
    await handler(
      eventOf(
        onShard([makeRecord({ proxyId, clientId: undefined, decision: 'unauthenticated', status: 401 }, at)]),
      ),
    );
    expect(await logCount(proxyId, at)).toBe(0);
    expect(await bucketItem('PROXY', proxyId, 'minute', at)).toBeUndefined();
    expect(await getItem(table(), keys.proxyOwner(proxyId))).toBeUndefined();
  });

  it('counts unauthenticated calls of a known proxy without one request-log record each', async () => {
    const proxyId = uniqueProxy();
    const at = new Date();
    const records = Array.from({ length: 5 }, (_, i) =>
      makeRecord(
        { proxyId, decision: 'unauthenticated', status: i < 4 ? 401 : 429, path: `/guess/${i}` },
        at,
      ),
    );
    await handler(eventOf(onShard(records)));
    expect(await logCount(proxyId, at)).toBe(0);
    expect((await bucketItem('PROXY', proxyId, 'minute', at))!.requests).toBe(5);
    expect(await getItem(table(), keys.proxyPath(proxyId, pathTemplate('/guess/0')))).toBeUndefined();
  });

  it('joins a start and its completion in one batch without a pending item, in either order', async () => {
    const proxyId = uniqueProxy();
    const at = new Date();
    const a = makeRecord({ proxyId }, at);
    const b = makeRecord({ proxyId }, at);
    const late = makeRecord({ proxyId }, at);
    const delivered = onShard([
      { ...a, phase: 'start' as const },
      a,
      b, // its completion before its start (the log route does not keep their order)
      { ...b, phase: 'start' as const },
      { ...late, phase: 'start' as const },
    ]);
    // Counted: every store call that names a pending-call item (alone or in a transaction).
    let pendingWrites = 0;
    const counting = handlerWith(
      (next, context) => async (args) => {
        const write = !['QueryCommand', 'GetCommand'].includes(context.commandName ?? '');
        if (write && JSON.stringify(args.input).includes('"PENDINGCALL#')) pendingWrites++;
        return next(args);
      },
      options,
    );
    expect(await counting.handler(eventOf(delivered))).toEqual({ batchItemFailures: [] });
    counting.client.destroy();
    // One: the pending item of `late`; none written (nor deleted) for the calls joined in the batch.
    expect(pendingWrites).toBe(1);
    expect(await getItem(table(), pendingKey(a))).toBeUndefined();
    expect(await getItem(table(), pendingKey(b))).toBeUndefined();
    // A call whose completion is not in the batch stays pending until it comes.
    expect(await getItem(table(), pendingKey(late))).toMatchObject({ type: 'PendingCall' });
    expect(await handler(eventOf(onShard([late], 'shardId-000000000000', 6)))).toEqual({
      batchItemFailures: [],
    });
    expect(await getItem(table(), pendingKey(late))).toBeUndefined();
    expect(await logCount(proxyId, at)).toBe(3);
    expect((await bucketItem('PROXY', proxyId, 'minute', at))!.requests).toBe(3);
  });

  it('keeps the pending item of a call whose completion failed to be logged, until the redelivery', async () => {
    const proxyId = uniqueProxy();
    const at = new Date();
    const call = makeRecord({ proxyId }, at);
    const logPk = keys.requestLog(proxyId, at.toISOString().slice(0, 10), call.requestId).pk;
    const faulty = handlerWith(
      (next) => async (args) => {
        const input = args.input as {
          Item?: { pk?: string };
          TransactItems?: { Put?: { Item?: { pk?: string } } }[];
        };
        const puts = [input.Item, ...(input.TransactItems ?? []).map((t) => t.Put?.Item)];
        if (puts.some((item) => item?.pk === logPk))
          throw Object.assign(new Error('down'), { name: 'InternalServerError', $metadata: {} });
        return next(args);
      },
      options,
    );
    const delivered = onShard([{ ...call, phase: 'start' as const }, call]);
    const out = await faulty.handler(eventOf(delivered));
    faulty.client.destroy();
    expect(out.batchItemFailures.map((f) => f.itemIdentifier)).toEqual([delivered[1]!.seq]);
    // Neither logged nor pending would lose the call: it is pending (the sweep's `unknown` covers it).
    expect(await getItem(table(), pendingKey(call))).toMatchObject({ type: 'PendingCall' });
    expect(await handler(eventOf(delivered.slice(1)))).toEqual({ batchItemFailures: [] });
    expect(await getItem(table(), pendingKey(call))).toBeUndefined();
    expect(await logCount(proxyId, at)).toBe(1);
    expect((await bucketItem('PROXY', proxyId, 'minute', at))!.requests).toBe(1);
  });

  it('masks again on the way in (defence in depth)', async () => {
    const proxyId = uniqueProxy();
    const at = new Date();
    const secret = 'sk_live_shouldnotbehere0123456789';
    const r = makeRecord({ proxyId, query: `api_key=${secret}`, headers: { 'x-api-key': secret } }, at);
    await handler(eventOf(onShard([r])));
    const item = await getItem(table(), keys.requestLog(proxyId, at.toISOString().slice(0, 10), r.requestId));
    expect(JSON.stringify(item)).not.toContain(secret);
  });
});
