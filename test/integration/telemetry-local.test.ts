import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from '@jest/globals';
import type { KinesisStreamEvent } from 'aws-lambda';
import { keys } from '../../lambdas/storage/keys.ts';
import { getItem, putItem, queryPrefix } from '../../lambdas/storage/table.ts';
import { createAggregatorHandler } from '../../lambdas/telemetry/aggregator.ts';
import { createTelemetryEmitter } from '../../lambdas/telemetry/emitter.ts';
import { bucketStart } from '../../lambdas/telemetry/rollup.ts';
import { type KinesisPollerOptions, startKinesisPoller } from '../../local/kinesis-poller.ts';
import { ensureStream } from '../../local/provision.ts';
import { startLocalStack } from '../../local/stack.ts';
import { startTestGateway } from '../helpers/local.ts';
import { captureLogs } from '../helpers/logs.ts';
import { eventOf, makeRecord, onShard } from '../helpers/telemetry.ts';

describe('anomaly flags through the API', () => {
  it('flags a synthetic spike and a first-seen path, and nothing on a steady proxy', async () => {
    const gw = await startTestGateway({ telemetryPoller: false });
    try {
      const clientId = gw.admin.clientId;
      const cell = Object.values(gw.stack.deps.cells)[0]!;
      const handler = createAggregatorHandler(gw.stack.deps);
      const now = Date.parse(bucketStart(new Date(), 'minute'));
      const spiky = randomUUID();
      const steady = randomUUID();
      for (const proxyId of [spiky, steady])
        await putItem(cell, { ...keys.proxy(clientId, proxyId), type: 'Proxy', proxyId, clientId });
      const records = [];
      for (let m = 20; m >= 1; m--) {
        const spike = m === 1;
        for (const proxyId of [spiky, steady]) {
          const count = spike && proxyId === spiky ? 120 : 10;
          for (let i = 0; i < count; i++) {
            const at = new Date(now - m * 60_000 + 1000 + i * 100);
            records.push(
              makeRecord({ clientId, proxyId, path: `/v2/inventory/${i}`, status: i === 0 ? 404 : 200 }, at),
            );
          }
        }
      }
      records.push(
        makeRecord({ clientId, proxyId: spiky, path: '/admin/export' }, new Date(now - 60_000 + 30_000)),
      );
      const delivered = onShard(records);
      for (let i = 0; i < delivered.length; i += 100)
        expect(await handler(eventOf(delivered.slice(i, i + 100)))).toEqual({ batchItemFailures: [] });

      const res = await gw.api(
        'GET',
        `/clients/${clientId}/proxies/${spiky}/telemetry?interval=minute&limit=30`,
      );
      expect(res.status).toBe(200);
      const flagged = res.body.buckets.filter((b: { anomalies: unknown[] }) => b.anomalies.length > 0);
      expect(flagged).toHaveLength(1);
      expect(flagged[0].requests).toBe(121);
      const types = flagged[0].anomalies.map((a: { type: string }) => a.type).sort();
      expect(types).toEqual(['first_seen_paths', 'request_spike']);
      const spike = flagged[0].anomalies.find((a: { type: string }) => a.type === 'request_spike');
      expect(spike).toMatchObject({ observed: 121, baseline: 10 });
      expect(spike.reason).toContain('121 requests');
      const paths = flagged[0].anomalies.find((a: { type: string }) => a.type === 'first_seen_paths');
      expect(paths.paths).toEqual(['/admin/export']);

      // The client's answer lists its proxies' flags, each with the proxyId.
      const client = await gw.api('GET', `/clients/${clientId}/telemetry?interval=minute&limit=30`);
      const clientFlags = client.body.buckets.flatMap(
        (b: { anomalies: { proxyId: string; type: string }[] }) => b.anomalies,
      );
      expect(
        clientFlags.map((f: { proxyId: string; type: string }) => `${f.proxyId}:${f.type}`).sort(),
      ).toEqual([`${spiky}:first_seen_paths`, `${spiky}:request_spike`]);

      const calm = await gw.api(
        'GET',
        `/clients/${clientId}/proxies/${steady}/telemetry?interval=minute&limit=30`,
      );
      expect(calm.body.buckets.every((b: { anomalies: unknown[] }) => b.anomalies.length === 0)).toBe(true);
      expect(calm.body.buckets.reduce((s: number, b: { requests: number }) => s + b.requests, 0)).toBe(200);
    } finally {
      await gw.close();
    }
  });
});

describe('local pipeline across restarts', () => {
  it('loses nothing and reprocesses nothing: the poller resumes from its stored checkpoint', async () => {
    const dataDir = join(mkdtempSync(join(tmpdir(), 'kg-tele-')), 'data');
    const proxyId = randomUUID();
    const at = new Date();
    const day = at.toISOString().slice(0, 10);
    const emitInto = async (stack: Awaited<ReturnType<typeof startLocalStack>>, count: number) => {
      const cell = Object.values(stack.deps.cells)[0]!;
      const emitter = createTelemetryEmitter({ kinesis: cell.kinesis, streamName: cell.streamName! });
      for (let i = 0; i < count; i++) emitter.emit(makeRecord({ proxyId }, at));
      await emitter.flush();
      expect(emitter.stats()).toMatchObject({ delivered: count, dropped: 0 });
    };

    // 1. Records reach the stream while no aggregator runs, then the gateway stops.
    const a = await startLocalStack({ dataDir, telemetryPoller: false });
    await emitInto(a, 5);
    await a.close();

    // 2. The next start picks them up.
    const b = await startLocalStack({ dataDir });
    await b.telemetryPoller!.drain();
    const cellB = Object.values(b.deps.cells)[0]!;
    expect(await queryPrefix(cellB, keys.requestLogPartition(proxyId, day))).toHaveLength(5);
    expect(b.telemetryPoller!.stats().delivered).toBeGreaterThanOrEqual(5);
    await b.close();

    // 3. A further start resumes after the checkpoint: only new records reach the aggregator.
    const c = await startLocalStack({ dataDir });
    await emitInto(c, 3);
    await c.telemetryPoller!.drain();
    expect(c.telemetryPoller!.stats().delivered).toBe(3);
    const cellC = Object.values(c.deps.cells)[0]!;
    expect(await queryPrefix(cellC, keys.requestLogPartition(proxyId, day))).toHaveLength(8);
    const bucket = await getItem<{ requests: number }>(
      cellC,
      keys.telemetryBucket('PROXY', proxyId, 'minute', bucketStart(at, 'minute')),
    );
    expect(bucket!.requests).toBe(8);
    await c.close();
  }, 30_000);
});

describe('local event source mapping (poller)', () => {
  /**
   * A stack without a poller, and a new stream holding `count` records, in emit order; `poll`
   * starts a poller on that stream with the given handler and options.
   */
  async function streamOf(prefix: string, count: number) {
    const stack = await startLocalStack({ telemetryPoller: false });
    const cell = Object.values(stack.deps.cells)[0]!;
    const streamName = `${prefix}-${Date.now()}`;
    await ensureStream(cell.kinesis, streamName);
    const emitter = createTelemetryEmitter({ kinesis: cell.kinesis, streamName });
    const sent = Array.from({ length: count }, () => makeRecord());
    for (const r of sent) {
      emitter.emit(r);
      await emitter.flush(); // one by one: one shard order = emit order
    }
    const poll = (options: Pick<KinesisPollerOptions, 'handler' | 'batchSize' | 'pageSize'>) =>
      startKinesisPoller({
        kinesis: cell.kinesis,
        streamName,
        region: cell.region,
        table: cell,
        idleMs: 20,
        ...options,
      });
    return { stack, cell, streamName, sent, poll };
  }
  /** The requestIds of a delivered event's records, in order. */
  const requestIds = (event: KinesisStreamEvent) =>
    event.Records.map(
      (r) => JSON.parse(Buffer.from(r.kinesis.data, 'base64').toString()).requestId as string,
    );

  it('delivers Lambda-shaped events and resumes from the lowest reported failure', async () => {
    const { stack, cell, streamName, sent, poll } = await streamOf('poller-test', 5);
    const seen: string[][] = [];
    let failOnce = true;
    const poller = poll({
      handler: async (event) => {
        for (const r of event.Records) {
          expect(r).toMatchObject({
            eventSource: 'aws:kinesis',
            eventName: 'aws:kinesis:record',
            eventVersion: '1.0',
            awsRegion: cell.region,
            eventSourceARN: expect.stringContaining(`:stream/${streamName}`),
            kinesis: { kinesisSchemaVersion: '1.0', partitionKey: expect.any(String) },
          });
          expect(r.eventID).toBe(`${r.eventID.split(':')[0]}:${r.kinesis.sequenceNumber}`);
          expect(typeof r.kinesis.approximateArrivalTimestamp).toBe('number');
        }
        seen.push(requestIds(event));
        if (failOnce && event.Records.length >= 3) {
          failOnce = false;
          return { batchItemFailures: [{ itemIdentifier: event.Records[2]!.kinesis.sequenceNumber }] };
        }
        return { batchItemFailures: [] };
      },
    });
    try {
      await poller.drain(10_000);
      const ids = sent.map((r) => r.requestId);
      expect(seen[0]).toEqual(ids);
      expect(seen.slice(1).flat()).toEqual(ids.slice(2));
      expect(poller.stats()).toMatchObject({ delivered: 8, failedBatches: 1 });
      const checkpoint = await getItem<{ sequenceNumber: string }>(
        cell,
        keys.streamCheckpoint(streamName, 'shardId-000000000000'),
      );
      expect(checkpoint?.sequenceNumber).toBeTruthy();
    } finally {
      await poller.close();
      await stack.close();
    }
  });
  it('gathers a batch from several smaller reads (pageSize), in order, each record once', async () => {
    const { stack, cell, sent, poll } = await streamOf('poller-pages', 12);
    const seen: string[][] = [];
    const limits: number[] = [];
    cell.kinesis.middlewareStack.add(
      (next, context) => (args) => {
        if (context.commandName === 'GetRecordsCommand') limits.push((args.input as { Limit: number }).Limit);
        return next(args);
      },
      { step: 'initialize', name: 'recordLimits' },
    );
    const poller = poll({
      batchSize: 5,
      pageSize: 2,
      handler: async (event) => {
        seen.push(requestIds(event));
        return { batchItemFailures: [] };
      },
    });
    try {
      await poller.drain(10_000);
      expect(seen.flat()).toEqual(sent.map((r) => r.requestId));
      // Everything was in the stream before the first read: full batches from pages of two.
      expect(seen.map((b) => b.length)).toEqual([5, 5, 2]);
      expect(Math.max(...limits)).toBe(2);
    } finally {
      await poller.close();
      await stack.close();
    }
  });
});

describe('stray hits on the proxy port', () => {
  it('a request naming no proxy is answered 404 and is no record, so the pipeline logs no error', async () => {
    const gw = await startTestGateway();
    const logs = captureLogs();
    try {
      const before = gw.stack.telemetryPoller!.stats().delivered;
      for (const [path, status, code] of [
        ['/', 404, 'proxy-route-not-found'],
        ['/favicon.ico', 404, 'proxy-route-not-found'],
        ['/api/', 401, 'proxy-unauthorized'],
      ] as const) {
        const res = await fetch(`${gw.stack.proxyUrl}${path}`);
        expect([path, res.status, res.headers.get('keygate-proxy-code')]).toEqual([path, status, code]);
      }
      // A call that does name a proxy (an unknown one) still is a record: the barrier that shows
      // everything sent before it went through the pipeline.
      await fetch(`${gw.stack.proxyUrl}/api/${randomUUID()}/x`);
      await gw.stack.telemetry!.flush();
      await gw.stack.telemetryPoller!.drain();
      expect(gw.stack.telemetryPoller!.stats().delivered - before).toBe(1);
      expect(logs.lines.filter((l) => l.message.includes('telemetry record skipped'))).toEqual([]);
    } finally {
      logs.restore();
      await gw.close();
    }
  });
});
