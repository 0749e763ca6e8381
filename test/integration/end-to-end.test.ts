import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { startTestGateway, type TestGateway } from '../helpers/local.ts';
import { eventually } from '../helpers/poll.ts';
import { type RecordingUpstream, send, startRecordingUpstream } from '../helpers/proxy-fixtures.ts';

/**
 * The reference post, end to end, on the whole local gateway: Core API → snapshot → proxy → a real
 * upstream → telemetry through the embedded Kinesis and the aggregator → request log and telemetry
 * answers. Bodies are the post's, verbatim (its placeholder key replaced by a real 128-bit one).
 */
describe('reference scenario end to end', () => {
  let gw: TestGateway;
  let upstream: RecordingUpstream;
  let clientId: string;
  let proxyId: string;
  let proxyCredentialId: string;
  let oldTargetCredentialId: string;
  let newTargetCredentialId: string;
  const proxyKey = `rr_live_${randomBytes(16).toString('hex')}`;
  const vendorSecret = `shpat_${randomBytes(16).toString('hex')}`;
  const vendorSecret2 = `shpat_${randomBytes(16).toString('hex')}`;
  const answers: string[] = [];
  let logged = '';
  const originalWrite = process.stdout.write;
  let calls = 0;
  // Unauthenticated calls are counted in telemetry but not stored one request-log record each.
  let unlogged = 0;

  const api: TestGateway['api'] = async (method, path, opts) => {
    const res = await gw.api(method, path, opts);
    answers.push(res.text);
    return res;
  };
  const proxied = async (method: string, path: string, authorization = proxyKey) => {
    calls++;
    const res = await send(gw.stack.proxyUrl, {
      method,
      path: `/api/${proxyId}${path}`,
      headers: { authorization },
    });
    if (res.headers['keygate-proxy-code'] === 'proxy-unauthorized') unlogged++;
    answers.push(res.text);
    return res;
  };
  const requestLog = async (query = '') => {
    const res = await api('GET', `/clients/${clientId}/proxies/${proxyId}/requests${query}`);
    expect(res.status).toBe(200);
    return res.body as {
      requests: Array<Record<string, any>>;
      summary: Record<string, Record<string, number>>;
    };
  };
  /** Waits until the request log holds `n` records (the pipeline's promise is 2 s; the wait is a safety net). */
  const logHolds = (n: number) =>
    eventually(
      () => requestLog('?limit=1000'),
      (log) => log.requests.length >= n,
    );

  beforeAll(async () => {
    process.stdout.write = ((chunk: unknown, ...rest: unknown[]) => {
      logged += String(chunk);
      return (originalWrite as (...a: unknown[]) => boolean).call(process.stdout, chunk, ...rest);
    }) as typeof process.stdout.write;
    upstream = await startRecordingUpstream();
    gw = await startTestGateway({ targetAllowlist: [`127.0.0.1:${upstream.port}`] });
    clientId = gw.admin.clientId;
  });
  afterAll(async () => {
    await gw.close();
    await upstream.close();
    process.stdout.write = originalWrite;
  });

  it('sets up the scenario with the post’s bodies', async () => {
    const target = await api('POST', `/clients/${clientId}/targets`, {
      body: { targetName: 'shopify', targetBaseURL: upstream.url, targetRegion: 'us-east-1' },
    });
    expect(target.status).toBe(201);
    const vendor = await api('POST', `/clients/${clientId}/credentials`, {
      body: {
        credentialType: 'target',
        credentialAuthType: 'apiKey',
        credentialName: 'shopify-api-key',
        credentialRegion: 'us-east-1',
        credentialSecret: { key: vendorSecret, headerName: 'X-Shopify-Access-Token' },
      },
    });
    expect(vendor.status).toBe(201);
    oldTargetCredentialId = vendor.body.credentialId;

    const consumer = await api('POST', `/clients/${clientId}/credentials`, {
      body: {
        credentialType: 'proxy',
        credentialAuthType: 'key',
        credentialName: 'inventory-service',
        credentialRegion: 'us-east-1',
        credentialSecret: { key: proxyKey },
      },
    });
    expect(consumer.status).toBe(201);
    proxyCredentialId = consumer.body.credentialId;
    const rule = await api('POST', `/clients/${clientId}/credentials/${proxyCredentialId}/rules`, {
      body: {
        effect: 'allow',
        methods: ['GET'],
        path: { path: { pattern: '^/v2/inventory/.*' }, presence: 'must_exist' },
        priority: 10,
        notes: 'Inventory service: read-only access to /v2/inventory/*',
      },
    });
    expect(rule.status).toBe(201);
    const proxy = await api('POST', `/clients/${clientId}/proxies`, {
      body: {
        proxyName: 'shopify-inventory',
        proxyRegion: 'us-east-1',
        proxyProxyCredentialId: proxyCredentialId,
        proxyTargetId: target.body.targetId,
        proxyTargetCredentialId: oldTargetCredentialId,
        proxyDefaultRuleEffect: 'deny',
      },
    });
    expect(proxy.status).toBe(201);
    proxyId = proxy.body.proxyId;
  });

  it('forwards the allowed GET with the vendor secret injected and the proxy key removed', async () => {
    const res = await proxied('GET', '/v2/inventory/items?page=2');
    expect(res.status).toBe(200);
    expect(res.headers['x-upstream']).toBe('yes');
    expect(res.headers['keygate-proxy-code']).toBe('proxy-access-granted');
    expect(upstream.received).toHaveLength(1);
    const got = upstream.received[0]!;
    expect(got.url).toBe('/v2/inventory/items?page=2');
    expect(got.headers['x-shopify-access-token']).toBe(vendorSecret);
    expect(got.headers.authorization).toBeUndefined();
    expect(JSON.stringify(got.rawHeaders)).not.toContain(proxyKey);
  });

  it('refuses everything else with 403 and sends nothing upstream', async () => {
    for (const [method, path] of [
      ['POST', '/v2/inventory/items'],
      ['DELETE', '/v2/inventory/items/1'],
      ['GET', '/v2/orders'],
      ['GET', '/v2/inventory/../orders'],
      ['GET', '/v2/inventory%2F..%2Forders'],
    ] as const) {
      const res = await proxied(method, path);
      expect([400, 403]).toContain(res.status);
      expect(res.headers['keygate-proxy-code']).toBeDefined();
    }
    expect((await proxied('GET', '/v2/orders')).headers['keygate-proxy-code']).toBe('proxy-access-denied');
    expect((await proxied('GET', '/v2/inventory/items', 'kg_live_wrong')).status).toBe(401);
    expect(upstream.received).toHaveLength(1);
  });

  it('logs every call, allowed or not, exactly once and masked, and rolls them up', async () => {
    const log = await logHolds(calls - unlogged);
    expect(log.requests).toHaveLength(calls - unlogged);
    expect(new Set(log.requests.map((r) => r.requestId)).size).toBe(calls - unlogged);
    expect(log.requests.filter((r) => r.decision === 'unauthenticated')).toEqual([]);
    const allowed = log.requests.filter((r) => r.decision === 'allowed');
    expect(allowed).toHaveLength(1);
    expect(allowed[0]).toMatchObject({
      method: 'GET',
      path: '/v2/inventory/items',
      query: 'page=2',
      status: 200,
      proxyCredentialId,
      targetCredentialId: oldTargetCredentialId,
      rule: { effect: 'allow', priority: 10 },
    });
    expect(log.requests.filter((r) => r.decision === 'denied').length).toBeGreaterThanOrEqual(3);
    // Rolled up for the proxy's client: every call but the malformed one, refused before the
    // proxy was even looked up (it stays in the request log).
    // The rollups catch up on their own schedule: the unauthenticated call has no log record to
    // wait for, and may ship in a later batch than the others. Summed over the days (a run across
    // midnight UTC splits them).
    const totals = async () => {
      const res = await api('GET', `/clients/${clientId}/telemetry?interval=day&limit=2`);
      expect(res.status).toBe(200);
      const buckets = res.body.buckets as Array<{ requests: number; denied: number }>;
      return {
        requests: buckets.reduce((n, b) => n + b.requests, 0),
        denied: buckets.reduce((n, b) => n + b.denied, 0),
      };
    };
    const rolled = await eventually(totals, (t) => t.requests >= calls - 1);
    expect(rolled.requests).toBe(calls - 1);
    expect(rolled.denied).toBeGreaterThanOrEqual(3);
  });

  it('rotates the vendor secret with zero downtime and shows it in the request log', async () => {
    const fresh = await api('POST', `/clients/${clientId}/credentials`, {
      body: {
        credentialType: 'target',
        credentialAuthType: 'apiKey',
        credentialName: 'shopify-api-key-2',
        credentialRegion: 'us-east-1',
        credentialSecret: { key: vendorSecret2, headerName: 'X-Shopify-Access-Token' },
      },
    });
    newTargetCredentialId = fresh.body.credentialId;
    const switchedAt = new Date().toISOString();
    const put = await api('PUT', `/clients/${clientId}/proxies/${proxyId}`, {
      body: { proxyTargetCredentialId: newTargetCredentialId },
    });
    expect(put.status).toBe(200);
    const res = await proxied('GET', '/v2/inventory/items');
    expect(res.status).toBe(200);
    expect(upstream.received.at(-1)!.headers['x-shopify-access-token']).toBe(vendorSecret2);

    // The post's step 3, in one call: traffic after the switch runs on the new credential only.
    await logHolds(calls - unlogged);
    const since = await requestLog(`?processedAfter=${encodeURIComponent(switchedAt)}`);
    expect(since.summary.byTargetCredentialId).toEqual({ [newTargetCredentialId]: 1 });

    expect((await api('DELETE', `/clients/${clientId}/credentials/${oldTargetCredentialId}`)).status).toBe(
      204,
    );
    expect((await proxied('GET', '/v2/inventory/items')).status).toBe(200);
  });

  it('revokes the proxy key at once and keeps its audit trail', async () => {
    expect((await api('DELETE', `/clients/${clientId}/credentials/${proxyCredentialId}`)).status).toBe(204);
    const res = await proxied('GET', '/v2/inventory/items');
    expect(res.status).toBe(401);
    const before = upstream.received.length;
    expect((await proxied('GET', '/v2/inventory/items')).status).toBe(401);
    expect(upstream.received.length).toBe(before);
    const log = await logHolds(calls - unlogged);
    expect(log.requests).toHaveLength(calls - unlogged);
    expect(
      log.requests.filter((r) => r.proxyCredentialId === proxyCredentialId && r.decision === 'allowed'),
    ).toHaveLength(3);
  });

  it('never shows the proxy key or a vendor secret in an answer, the request log or a log line', () => {
    for (const secret of [proxyKey, vendorSecret, vendorSecret2]) {
      expect(answers.join('\n')).not.toContain(secret);
      expect(logged).not.toContain(secret);
    }
  });
});
