import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { keys } from '../../lambdas/storage/keys.ts';
import { getItem, putItem } from '../../lambdas/storage/table.ts';
import { createAggregatorHandler } from '../../lambdas/telemetry/aggregator.ts';
import type { TelemetryRecord } from '../../lambdas/telemetry/record.ts';
import { logKey, pendingKey } from '../../lambdas/telemetry/request-log.ts';
import { sweepUnknownCalls, unknownCompletion } from '../../lambdas/telemetry/unknown-calls.ts';
import { startTestGateway, type TestGateway } from '../helpers/local.ts';
import { eventOf, makeRecord, onShard } from '../helpers/telemetry.ts';

/**
 * Records shipped twice: the local write-ahead file re-ships whatever lies past its "shipped up to"
 * offset after a crash, so a call's start record may reach the stream again after its completion
 * was counted (the same may happen to any record at-least-once delivery repeats). The audit trail
 * must not change: one record per call, as answered, counted once, and no `unknown` record for it
 * from the sweep.
 */
let gw: TestGateway;
beforeAll(async () => {
  gw = await startTestGateway({ telemetryPoller: false });
});
afterAll(async () => {
  await gw.stack.close();
});

function startOf(completion: TelemetryRecord): TelemetryRecord {
  return {
    ...completion,
    status: 0,
    proxyCode: 'proxy-call-started',
    durations: { gatewayMs: completion.durations.gatewayMs },
    bytes: { in: completion.bytes.in, out: 0 },
    phase: 'start',
  };
}

describe('a start record delivered again after its completion was counted', () => {
  it.each([
    ['in the same batch as the completion', true],
    ['in a batch before the completion', false],
  ])(
    'first delivered %s: the replay changes neither the log nor the rollups, and the sweep adds no unknown',
    async (_, together) => {
      const cell = Object.values(gw.stack.deps.cells)[0]!;
      const clientId = gw.admin.clientId;
      const proxyId = randomUUID();
      await putItem(cell, { ...keys.proxy(clientId, proxyId), type: 'Proxy', proxyId, clientId });
      const handler = createAggregatorHandler(gw.stack.deps);
      const completion = makeRecord({ clientId, proxyId });
      const start = startOf(completion);
      const first = onShard([start, completion], 'shardId-000000000000', 1);
      if (together) expect(await handler(eventOf(first))).toEqual({ batchItemFailures: [] });
      else for (const d of first) expect(await handler(eventOf([d]))).toEqual({ batchItemFailures: [] });

      // The replay, with a new sequence number, as a re-shipped record gets.
      expect(await handler(eventOf(onShard([start], 'shardId-000000000000', 10)))).toEqual({
        batchItemFailures: [],
      });
      // The replay may leave a pending item; the sweep finds the call's completion on record and
      // drops it, without putting an `unknown` record into the stream.
      const swept = await sweepUnknownCalls(gw.stack.deps, cell, {
        graceMs: 0,
        now: () => new Date(Date.now() + 60_000),
      });
      expect(swept).toBe(0);
      expect(await getItem(cell, pendingKey(start))).toBeUndefined();

      // Even if a sweep had taken it for a call that never completed: the completion stays on record.
      const late = onShard([unknownCompletion(start)], 'shardId-000000000000', 11);
      expect(await handler(eventOf(late))).toEqual({ batchItemFailures: [] });
      const logged = await getItem<TelemetryRecord>(cell, logKey(completion));
      expect(logged).toMatchObject({ decision: 'allowed', status: 200 });

      const res = await gw.api(
        'GET',
        `/clients/${clientId}/proxies/${proxyId}/telemetry?interval=day&limit=1`,
      );
      expect(res.status).toBe(200);
      expect(res.body.buckets[0]).toMatchObject({ requests: 1, unknown: 0 });
    },
  );
});
