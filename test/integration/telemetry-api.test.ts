import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import type { TableRef } from '../../lambdas/shared/deps.ts';
import { logger } from '../../lambdas/shared/logger.ts';
import { keys } from '../../lambdas/storage/keys.ts';
import { deleteItem, putItem } from '../../lambdas/storage/table.ts';
import { createAggregatorHandler } from '../../lambdas/telemetry/aggregator.ts';
import { createTelemetryEmitter, type TelemetryEmitter } from '../../lambdas/telemetry/emitter.ts';
import { maskHeaders, maskQuery } from '../../lambdas/telemetry/masking.ts';
import { startTestGateway, type TestGateway } from '../helpers/local.ts';
import { eventually } from '../helpers/poll.ts';
import { eventOf, makeRecord, onShard } from '../helpers/telemetry.ts';

let gw: TestGateway;
let emitter: TelemetryEmitter;
let cell: TableRef;
let clientId: string;

beforeAll(async () => {
  gw = await startTestGateway();
  const first = Object.values(gw.stack.deps.cells)[0]!;
  cell = first;
  emitter = createTelemetryEmitter({ kinesis: first.kinesis, streamName: first.streamName! });
  clientId = gw.admin.clientId;
});
afterAll(async () => {
  await gw.close();
});

/** A proxy item as the Core API (issue 3) would write it. */
async function createProxy(owner = clientId): Promise<string> {
  const proxyId = randomUUID();
  await putItem(cell, {
    ...keys.proxy(owner, proxyId),
    type: 'Proxy',
    proxyId,
    clientId: owner,
    proxyName: 'inventory',
    proxyRegion: 'us-east-1',
  });
  return proxyId;
}

describe('request log API over the local pipeline', () => {
  it('shows a proxied call in the request log, masked', async () => {
    const proxyId = await createProxy();
    const secret = 'rr_live_a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6';
    const raw = {
      Authorization: `Bearer ${secret}`,
      'X-Api-Key': secret,
      Cookie: `sid=${secret}; theme=dark`,
      'X-Amz-Security-Token': secret,
      accept: 'application/json',
    };
    const record = makeRecord({
      clientId,
      proxyId,
      headers: maskHeaders(raw),
      query: maskQuery(`page=2&api_key=${secret}&token=${secret}`),
    });
    // A forgetful caller: raw secrets in the record. The emitter and the aggregator mask again.
    const unmasked = makeRecord({ clientId, proxyId, headers: raw, query: `api_key=${secret}` });
    // Every log line goes through the one Powertools logger: record what it is asked to print.
    const output: string[] = [];
    const writes = (['debug', 'info', 'warn', 'error', 'critical'] as const).map((level) => {
      const original = logger[level].bind(logger);
      const spy = jest.spyOn(logger, level).mockImplementation(((...args: unknown[]) => {
        output.push(JSON.stringify(args));
        return (original as (...a: unknown[]) => void)(...args);
      }) as never);
      return () => spy.mockRestore();
    });
    let res: Awaited<ReturnType<TestGateway['api']>>;
    try {
      emitter.emit(record);
      await emitter.flush();
      res = await eventually(
        () => gw.api('GET', `/clients/${clientId}/proxies/${proxyId}/requests`),
        (r) => r.body?.requests?.length === 1,
      );
      emitter.emit(unmasked);
      await emitter.flush();
      await gw.stack.telemetryPoller!.drain();
    } finally {
      for (const restore of writes) restore();
    }
    expect(output.join('')).not.toContain(secret);
    const again = await gw.api(
      'GET',
      `/clients/${clientId}/proxies/${proxyId}/requests/${unmasked.requestId}`,
    );
    expect(again.body).toMatchObject({ query: 'api_key=****', headers: { authorization: 'Bearer ****' } });
    expect(again.text).not.toContain(secret);
    expect(res.status).toBe(200);
    expect(res.body.requests[0]).toMatchObject({
      requestId: record.requestId,
      proxyId,
      clientId,
      targetCredentialId: 'tcred-1',
      query: 'page=2&api_key=****&token=****',
      headers: { authorization: 'Bearer ****', cookie: 'sid=****; theme=****', 'x-api-key': '****' },
    });
    expect(res.body.requests[0].pk).toBeUndefined();
    expect(res.body.requests[0].ttl).toBeUndefined();
    const one = await gw.api('GET', `/clients/${clientId}/proxies/${proxyId}/requests/${record.requestId}`);
    expect(one.status).toBe(200);
    expect(one.body.requestId).toBe(record.requestId);
    const tele = await gw.api(
      'GET',
      `/clients/${clientId}/proxies/${proxyId}/telemetry?interval=minute&limit=5`,
    );
    for (const text of [res.text, one.text, tele.text]) expect(text).not.toContain(secret);
  });

  it('pages newest first through a time range, with nextToken, without gaps or repeats', async () => {
    const proxyId = await createProxy();
    const base = Date.now() - 3 * 86_400_000; // spans day partitions
    const records = Array.from({ length: 25 }, (_, i) =>
      makeRecord({ clientId, proxyId, path: `/v2/items/${i}` }, new Date(base + i * 3 * 3_600_000)),
    );
    for (const r of records) emitter.emit(r);
    await emitter.flush();
    await gw.stack.telemetryPoller!.drain();
    const seen: string[] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const qs = new URLSearchParams({ limit: '10', ...(token ? { nextToken: token } : {}) });
      const page = await gw.api('GET', `/clients/${clientId}/proxies/${proxyId}/requests?${qs}`);
      expect(page.status).toBe(200);
      seen.push(...page.body.requests.map((r: { requestId: string }) => r.requestId));
      token = page.body.nextToken;
      pages++;
    } while (token);
    expect(pages).toBe(3);
    expect(seen).toEqual(records.map((r) => r.requestId).reverse());

    const after = records[5]!.processedAt;
    const before = records[14]!.processedAt;
    const ranged = await gw.api(
      'GET',
      `/clients/${clientId}/proxies/${proxyId}/requests?processedAfter=${after}&processedBefore=${before}`,
    );
    expect(ranged.body.requests.map((r: { requestId: string }) => r.requestId)).toEqual(
      records
        .slice(5, 15)
        .map((r) => r.requestId)
        .reverse(),
    );
  });

  it('confirms a rotation in one call: traffic after the switch is on the new credential', async () => {
    const proxyId = await createProxy();
    const t0 = Date.now() - 60_000;
    const old = Array.from({ length: 4 }, (_, i) =>
      makeRecord({ clientId, proxyId, targetCredentialId: 'tcred-old' }, new Date(t0 + i * 1000)),
    );
    const switchedAt = new Date(t0 + 10_000);
    const fresh = Array.from({ length: 3 }, (_, i) =>
      makeRecord({ clientId, proxyId, targetCredentialId: 'tcred-new' }, new Date(t0 + 11_000 + i * 1000)),
    );
    for (const r of [...old, ...fresh]) emitter.emit(r);
    await emitter.flush();
    await gw.stack.telemetryPoller!.drain();
    const res = await gw.api(
      'GET',
      `/clients/${clientId}/proxies/${proxyId}/requests?processedAfter=${switchedAt.toISOString()}`,
    );
    expect(res.body.summary.byTargetCredentialId).toEqual({ 'tcred-new': 3 });
    const all = await gw.api('GET', `/clients/${clientId}/proxies/${proxyId}/requests`);
    expect(all.body.summary.byTargetCredentialId).toEqual({ 'tcred-new': 3, 'tcred-old': 4 });
  });

  it('answers 400 on malformed or out-of-range parameters', async () => {
    const proxyId = await createProxy();
    const base = `/clients/${clientId}/proxies/${proxyId}`;
    for (const qs of [
      'processedAfter=yesterday',
      'processedBefore=2026-13-01T00:00:00Z',
      'limit=0',
      'limit=1001',
      'limit=ten',
      'limit=-1',
      'nextToken=garbage',
      'processedAfter=2026-11-02T00:00:00Z&processedBefore=2026-11-01T00:00:00Z',
      'colour=blue',
    ]) {
      const res = await gw.api('GET', `${base}/requests?${qs}`);
      expect([qs, res.status]).toEqual([qs, 400]);
      expect(res.body).toMatchObject({ code: expect.any(String), message: expect.any(String) });
    }
    for (const qs of [
      'interval=week',
      'limit=0',
      'interval=minute&limit=100000',
      'interval=day&limit=401',
      'x=1',
    ]) {
      expect([qs, (await gw.api('GET', `${base}/telemetry?${qs}`)).status]).toEqual([qs, 400]);
      expect([qs, (await gw.api('GET', `/clients/${clientId}/telemetry?${qs}`)).status]).toEqual([qs, 400]);
    }
    expect((await gw.api('GET', `${base}/requests/not-a-request-id`)).status).toBe(400);
    expect((await gw.api('GET', `${base}/requests/01KB0000000000000000000000`)).status).toBe(404);
  });

  it('a bound against a default is no error: an empty page (processedAfter in the future, processedBefore before retention)', async () => {
    const proxyId = await createProxy();
    emitter.emit(makeRecord({ clientId, proxyId }));
    await emitter.flush();
    await gw.stack.telemetryPoller!.drain();
    const base = `/clients/${clientId}/proxies/${proxyId}/requests`;
    expect((await gw.api('GET', base)).body.count).toBe(1);
    const future = new Date(Date.now() + 86_400_000).toISOString();
    const past = new Date(Date.now() - 400 * 86_400_000).toISOString();
    for (const qs of [`processedAfter=${future}`, `processedBefore=${past}`]) {
      const res = await gw.api('GET', `${base}?${qs}`);
      expect([qs, res.status, res.body]).toEqual([
        qs,
        200,
        { requests: [], count: 0, summary: { byTargetCredentialId: {}, byProxyCredentialId: {} } },
      ]);
    }
  });

  it('keeps tenants apart: another client, a stranger and an unknown proxy all get 404', async () => {
    const proxyId = await createProxy();
    emitter.emit(makeRecord({ clientId, proxyId }));
    await emitter.flush();
    await gw.stack.telemetryPoller!.drain();
    // A second user with their own client.
    const user = await gw.api('POST', '/users', { body: { userName: 'mallory' } });
    const other = await gw.api('POST', '/clients', { token: user.body.token, body: { clientName: 'other' } });
    const theirs = other.body.clientId as string;
    const asStranger = { token: user.body.token };
    expect((await gw.api('GET', `/clients/${clientId}/proxies/${proxyId}/requests`, asStranger)).status).toBe(
      404,
    );
    expect((await gw.api('GET', `/clients/${clientId}/telemetry`, asStranger)).status).toBe(404);
    // Their own client, our proxy id: the proxy is not theirs.
    expect((await gw.api('GET', `/clients/${theirs}/proxies/${proxyId}/requests`, asStranger)).status).toBe(
      404,
    );
    expect((await gw.api('GET', `/clients/${theirs}/proxies/${proxyId}/telemetry`, asStranger)).status).toBe(
      404,
    );
    expect((await gw.api('GET', `/clients/${clientId}/proxies/${randomUUID()}/requests`)).status).toBe(404);
    expect(
      (await gw.api('GET', `/clients/${clientId}/proxies/${proxyId}/requests`, { token: null })).status,
    ).toBe(401);
  });

  it('keeps the records of a deleted proxy readable by its client', async () => {
    const proxyId = await createProxy();
    emitter.emit(makeRecord({ clientId, proxyId, targetCredentialId: 'deleted-cred' }));
    await emitter.flush();
    await gw.stack.telemetryPoller!.drain();
    await deleteItem(cell, keys.proxy(clientId, proxyId));
    const res = await gw.api('GET', `/clients/${clientId}/proxies/${proxyId}/requests`);
    expect(res.status).toBe(200);
    expect(res.body.requests).toHaveLength(1);
    expect(res.body.requests[0].targetCredentialId).toBe('deleted-cred');
  });

  it('rolls calls up into client and proxy telemetry whose counts equal the calls made', async () => {
    const fresh = await gw.api('POST', '/clients', { body: { clientName: 'tele' } });
    const cid = fresh.body.clientId as string;
    const p1 = await createProxy(cid);
    const p2 = await createProxy(cid);
    const at = new Date();
    const sent = [
      ...Array.from({ length: 7 }, (_, i) =>
        makeRecord(
          {
            clientId: cid,
            proxyId: p1,
            durations: { gatewayMs: 1 + i, upstreamMs: 100, ttfbMs: 10 * (i + 1) },
          },
          at,
        ),
      ),
      ...Array.from({ length: 3 }, () =>
        makeRecord({ clientId: cid, proxyId: p2, status: 403, decision: 'denied' }, at),
      ),
    ];
    for (const r of sent) emitter.emit(r);
    await emitter.flush();
    await gw.stack.telemetryPoller!.drain();
    // Replay the same records straight into the aggregator: nothing changes.
    await createAggregatorHandler(gw.stack.deps)(eventOf(onShard(sent)));
    const client = await gw.api('GET', `/clients/${cid}/telemetry?interval=day&limit=30`);
    expect(client.status).toBe(200);
    expect(client.body.buckets).toHaveLength(30);
    const today = client.body.buckets[0];
    expect(today).toMatchObject({ requests: 10, denied: 3, status: { '2xx': 7, '4xx': 3 } });
    expect(today.latency.gateway.p50).toBeGreaterThan(0);
    const proxy = await gw.api('GET', `/clients/${cid}/proxies/${p1}/telemetry?interval=minute&limit=3`);
    const minute = proxy.body.buckets.find((b: { requests: number }) => b.requests > 0);
    expect(minute).toMatchObject({ requests: 7, anomalies: [] });
    expect(minute.latency.gateway.p50).toBeCloseTo(4, 0);
    // Time to the vendor's first byte (10…70 ms): its percentiles per proxy, like the others'.
    expect(minute.latency.ttfb.p50).toBeGreaterThanOrEqual(38);
    expect(minute.latency.ttfb.p50).toBeLessThanOrEqual(42);
    expect(minute.latency.ttfb.p99).toBeGreaterThanOrEqual(67);
    expect(minute.latency.ttfb.mean).toBeCloseTo(40, 0);
    // Records without a first byte (denied here) do not count in it.
    const p2Minute = (
      await gw.api('GET', `/clients/${cid}/proxies/${p2}/telemetry?interval=minute&limit=3`)
    ).body.buckets.find((b: { requests: number }) => b.requests > 0);
    expect(p2Minute.latency.ttfb).toBeNull();
  });
});
