import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { Deps } from '../../lambdas/shared/deps.ts';
import { createAggregatorHandler } from '../../lambdas/telemetry/aggregator.ts';
import { PRODUCT_METRICS } from '../../lambdas/telemetry/metrics.ts';
import { judgeProxy } from '../../lambdas/telemetry/proxy-anomalies.ts';
import type { TelemetryRecord } from '../../lambdas/telemetry/record.ts';
import { bucketStart } from '../../lambdas/telemetry/rollup.ts';
import { type LocalStack, startLocalStack } from '../../local/stack.ts';
import { type Delivered, eventOf, makeRecord, onShard } from '../helpers/telemetry.ts';

/**
 * The AnomalyFlags metric the dashboard graphs: raised by the aggregator, once per flag, as the
 * records of a spike or a new path arrive — and never on steady traffic, redelivery or replay.
 */
let stack: LocalStack;
let deps: Deps;
let handler: ReturnType<typeof createAggregatorHandler>;
let logged = '';
const originalWrite = process.stdout.write;
let nextSeq = 1;
const SHARD = 'shardId-000000000007';
const table = () => Object.values(deps.cells)[0]!;
const MINUTE = 60_000;

beforeAll(async () => {
  process.stdout.write = ((chunk: unknown, ...rest: unknown[]) => {
    logged += String(chunk);
    return (originalWrite as (...a: unknown[]) => boolean).call(process.stdout, chunk, ...rest);
  }) as typeof process.stdout.write;
  stack = await startLocalStack({ telemetryPoller: false });
  deps = stack.deps;
  handler = createAggregatorHandler(deps);
});
afterAll(async () => {
  await stack.close();
  process.stdout.write = originalWrite;
});

/** The "anomaly flagged" log lines of a proxy, parsed. */
function flagLines(proxyId: string): Array<Record<string, any>> {
  return logged
    .split('\n')
    .filter((l) => l.includes('"anomaly flagged"') && l.includes(proxyId))
    .map((l) => JSON.parse(l.slice(l.indexOf('{'))));
}

async function deliver(records: TelemetryRecord[]): Promise<Delivered[]> {
  const delivered = onShard(records, SHARD, nextSeq);
  nextSeq += records.length;
  // As the event source mapping does: a partial failure (a store call that timed out on a loaded
  // machine) is redelivered from the first failed record. Exactly-once makes the retry harmless,
  // and the assertions below are on what the redelivered batches add up to.
  let pending = delivered;
  for (let attempt = 0; pending.length > 0; attempt++) {
    if (attempt === 20) throw new Error('a batch kept failing after 20 redeliveries');
    const { batchItemFailures } = await handler(eventOf(pending));
    const first = batchItemFailures[0]?.itemIdentifier;
    pending = first === undefined ? [] : pending.slice(pending.findIndex((d) => d.seq === first));
  }
  return delivered;
}

/** `n` requests spread over one minute. */
function minuteOf(proxyId: string, start: number, n: number, overrides: Partial<TelemetryRecord> = {}) {
  return Array.from({ length: n }, (_, i) =>
    makeRecord(
      { proxyId, clientId: `client-${proxyId}`, path: '/v2/inventory/items', ...overrides },
      new Date(start + Math.floor((i * MINUTE) / (n + 1))),
    ),
  );
}

/** A minute boundary `back` minutes ago. */
const minutesAgo = (back: number) => Math.floor(Date.now() / MINUTE) * MINUTE - back * MINUTE;

describe('AnomalyFlags metric', () => {
  it('stays silent on steady traffic, however busy or error-prone', async () => {
    const proxyId = `proxy-steady-${Date.now()}`;
    const t0 = minutesAgo(30);
    for (let m = 0; m < 15; m++) {
      const start = t0 + m * MINUTE;
      await deliver([
        ...minuteOf(proxyId, start, 32),
        ...minuteOf(proxyId, start + 1000, 8, { status: 404 }),
        ...minuteOf(proxyId, start + 2000, 2, { status: 403, decision: 'denied' }),
      ]);
    }
    expect(flagLines(proxyId)).toEqual([]);
  });

  it('counts a spike and a first-seen path once each, as they arrive, in embedded metric format', async () => {
    const proxyId = `proxy-spiky-${Date.now()}`;
    const t0 = minutesAgo(20);
    for (let m = 0; m < 10; m++) await deliver(minuteOf(proxyId, t0 + m * MINUTE, 8));
    expect(flagLines(proxyId)).toEqual([]);

    // Minute 10: 120 requests in three batches (a spike against 8 a minute) and one new path.
    const spikeStart = t0 + 10 * MINUTE;
    const spike = minuteOf(proxyId, spikeStart, 120);
    const first = await deliver(spike.slice(0, 40));
    const afterFirst = flagLines(proxyId);
    expect(afterFirst.map((l) => l.anomaly.type)).toEqual(['request_spike']);
    await deliver([
      ...spike.slice(40, 80),
      makeRecord(
        { proxyId, clientId: `client-${proxyId}`, path: '/v2/admin/export' },
        new Date(spikeStart + 5000),
      ),
    ]);
    await deliver(spike.slice(80));

    const lines = flagLines(proxyId);
    expect(lines.map((l) => l.anomaly.type).sort()).toEqual(['first_seen_paths', 'request_spike']);
    const minute = bucketStart(new Date(spikeStart), 'minute');
    for (const line of lines) {
      expect(line).toMatchObject({
        message: 'anomaly flagged',
        clientId: `client-${proxyId}`,
        proxyId,
        interval: 'minute',
        bucketStart: minute,
        service: 'keygate',
        [PRODUCT_METRICS.anomalyFlags]: 1,
      });
      expect(line._aws.CloudWatchMetrics).toEqual([
        {
          Namespace: 'keygate',
          Dimensions: [['service']],
          Metrics: [{ Name: PRODUCT_METRICS.anomalyFlags, Unit: 'Count' }],
        },
      ]);
      expect(typeof line.anomaly.reason).toBe('string');
    }
    const pathFlag = lines.find((l) => l.anomaly.type === 'first_seen_paths')!;
    expect(pathFlag.anomaly.paths).toEqual(['/v2/admin/export']);

    // Redelivery of a batch and a replay of the whole minute count nothing again.
    await handler(eventOf(first));
    expect(flagLines(proxyId)).toHaveLength(2);

    // What the telemetry API shows for that minute is the same pair of flags.
    const { flags } = await judgeProxy(table(), proxyId, 'minute', [minute]);
    expect((flags.get(minute) ?? []).map((f) => f.type).sort()).toEqual([
      'first_seen_paths',
      'request_spike',
    ]);
  });

  it('judges a proxy on its own baseline: a busy neighbour does not hide a quiet proxy’s spike', async () => {
    const quiet = `proxy-quiet-${Date.now()}`;
    const busy = `proxy-busy-${Date.now()}`;
    const t0 = minutesAgo(20);
    for (let m = 0; m < 10; m++)
      await deliver([...minuteOf(quiet, t0 + m * MINUTE, 2), ...minuteOf(busy, t0 + m * MINUTE, 200)]);
    // 30 requests: nothing for the busy proxy, a spike for the quiet one.
    await deliver([...minuteOf(quiet, t0 + 10 * MINUTE, 30), ...minuteOf(busy, t0 + 10 * MINUTE, 200)]);
    expect(flagLines(quiet).map((l) => l.anomaly.type)).toEqual(['request_spike']);
    expect(flagLines(busy)).toEqual([]);
  });

  it('counts paths denied for the first time: one probing call is enough, the next one is not new', async () => {
    const proxyId = `proxy-probed-${Date.now()}`;
    const t0 = minutesAgo(20);
    for (let m = 0; m < 8; m++) await deliver(minuteOf(proxyId, t0 + m * MINUTE, 6));
    const denied = { status: 403, decision: 'denied' as const, proxyCode: 'proxy-access-denied' };
    await deliver([
      ...minuteOf(proxyId, t0 + 8 * MINUTE, 6),
      makeRecord(
        { proxyId, clientId: `client-${proxyId}`, path: '/v2/admin/users', ...denied },
        new Date(t0 + 8 * MINUTE + 7000),
      ),
    ]);
    // Denied again a minute later, and an allowed path denied for the first time.
    await deliver([
      makeRecord(
        { proxyId, clientId: `client-${proxyId}`, path: '/v2/admin/users', ...denied },
        new Date(t0 + 9 * MINUTE + 1000),
      ),
      makeRecord(
        { proxyId, clientId: `client-${proxyId}`, path: '/v2/inventory/items', ...denied },
        new Date(t0 + 9 * MINUTE + 2000),
      ),
    ]);
    const lines = flagLines(proxyId).map((l) => [l.bucketStart, l.anomaly.type, l.anomaly.paths]);
    const m8 = bucketStart(new Date(t0 + 8 * MINUTE), 'minute');
    const m9 = bucketStart(new Date(t0 + 9 * MINUTE), 'minute');
    expect(lines).toEqual([
      [m8, 'first_seen_paths', ['/v2/admin/users']],
      [m8, 'first_denied_paths', ['/v2/admin/users']],
      [m9, 'first_denied_paths', ['/v2/inventory/items']],
    ]);
    // The telemetry API reads the same from the path markers.
    const { flags } = await judgeProxy(table(), proxyId, 'minute', [m8, m9]);
    expect((flags.get(m9) ?? []).map((f) => [f.type, f.paths])).toEqual([
      ['first_denied_paths', ['/v2/inventory/items']],
    ]);
  });
});
