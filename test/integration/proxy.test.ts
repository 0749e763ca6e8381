import { createServer, type Server } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import type { ProxyOutcome } from '../../lambdas/data-plane/outcome.ts';
import { createProxyHandler, type ProxyHandlerOptions } from '../../lambdas/data-plane/proxy-api.ts';
import type { Deps } from '../../lambdas/shared/deps.ts';
import { REQUEST_ID_PATTERN } from '../../lambdas/telemetry/request-id.ts';
import type { HttpFront } from '../../local/http-front.ts';
import { type LocalStack, startLocalStack } from '../../local/stack.ts';
import { captureLogs } from '../helpers/logs.ts';
import {
  INVENTORY_RULE,
  type RecordingUpstream,
  send,
  sendRaw,
  startProxyFront,
  startRecordingUpstream,
  writeSnapshot,
} from '../helpers/proxy-fixtures.ts';

// Upstream failures are provoked on purpose here: their ERROR lines go to a capture, not the output.
const logs = captureLogs();
afterAll(() => logs.restore());

const VENDOR_SECRET = 'sk_live_vendor_secret_1';

let stack: LocalStack;
let upstream: RecordingUpstream;
/** A port nothing listens on, allowlisted so the call really tries to connect. */
let closed: number;
const outcomes: ProxyOutcome[] = [];
const extraFronts: HttpFront[] = [];

/** Another proxy front over the same store, with its own handler options or dependencies. */
async function front(options: ProxyHandlerOptions = {}, deps: Deps = stack.deps): Promise<string> {
  const f = await startProxyFront(deps, options);
  extraFronts.push(f);
  return f.url;
}

beforeAll(async () => {
  upstream = await startRecordingUpstream();
  closed = await closedPort();
  stack = await startLocalStack({
    targetAllowlist: [`127.0.0.1:${upstream.port}`, `127.0.0.1:${closed}`],
    proxyOptions: { onOutcome: (o) => outcomes.push(o) },
  });
});

afterAll(async () => {
  await Promise.all(extraFronts.map((f) => f.close()));
  await upstream.close();
  await stack.close();
});

beforeEach(() => {
  upstream.received.length = 0;
  outcomes.length = 0;
  upstream.respond = (req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': 'yes' });
    res.end(JSON.stringify({ ok: true, path: req.url }));
  };
});

async function inventoryProxy(
  extra: Parameters<typeof writeSnapshot>[1] extends infer S ? Partial<S> : never = {},
) {
  return writeSnapshot(stack.deps, {
    targetBaseURL: upstream.url,
    rules: { proxyCredential: [INVENTORY_RULE] },
    ...extra,
  });
}

describe('the reference scenario', () => {
  it('forwards an allowed GET with the vendor secret injected and the proxy key stripped', async () => {
    const p = await inventoryProxy();
    const res = await send(stack.proxyUrl, {
      path: `/api/${p.proxyId}/v2/inventory/items?sku=A1&sort=-qty`,
      headers: { authorization: p.proxyKey, accept: 'application/json' },
    });
    expect(res.status).toBe(200);
    expect(res.headers['keygate-proxy-code']).toBe('proxy-access-granted');
    expect(res.headers['keygate-request-id']).toMatch(REQUEST_ID_PATTERN);
    expect(res.headers['x-upstream']).toBe('yes');
    expect(res.json()).toEqual({ ok: true, path: '/v2/inventory/items?sku=A1&sort=-qty' });
    expect(upstream.received).toHaveLength(1);
    const got = upstream.received[0]!;
    expect(got.method).toBe('GET');
    expect(got.url).toBe('/v2/inventory/items?sku=A1&sort=-qty');
    expect(got.headers['x-vendor-key']).toBe(VENDOR_SECRET);
    expect(got.headers.authorization).toBeUndefined();
    expect(got.headers.host).toBe(new URL(upstream.url).host);
    expect(got.headers.accept).toBe('application/json');
    expect(JSON.stringify(got.rawHeaders)).not.toContain(p.proxyKey);
  });

  it('accepts the key after "Bearer " too', async () => {
    const p = await inventoryProxy();
    const res = await send(stack.proxyUrl, {
      path: `/api/${p.proxyId}/v2/inventory/1`,
      headers: { authorization: `Bearer ${p.proxyKey}` },
    });
    expect(res.status).toBe(200);
  });

  it('refuses everything else with 403 proxy-access-denied and sends nothing upstream', async () => {
    const p = await inventoryProxy();
    const cases: Array<[string, string]> = [
      ['POST', '/v2/inventory/items'],
      ['DELETE', '/v2/inventory/items'],
      ['PUT', '/v2/inventory/items'],
      ['HEAD', '/v2/inventory/items'],
      ['GET', '/v2/orders/1'],
      ['GET', '/v2/inventory'],
      ['GET', '/v3/inventory/items'],
      ['GET', '/'],
      ['GET', ''],
    ];
    for (const [method, path] of cases) {
      const res = await send(stack.proxyUrl, {
        method,
        path: `/api/${p.proxyId}${path}`,
        headers: { authorization: p.proxyKey },
        body: method === 'POST' || method === 'PUT' ? '{"qty":1}' : undefined,
      });
      expect([method, path, res.status]).toEqual([method, path, 403]);
      expect(res.headers['keygate-proxy-code']).toBe('proxy-access-denied');
      expect(res.headers['keygate-request-id']).toMatch(REQUEST_ID_PATTERN);
      if (method !== 'HEAD') expect(res.json().code).toBe('proxy-access-denied');
    }
    expect(upstream.received).toHaveLength(0);
  });

  it('lets a matching deny win over an allow, whatever the priorities', async () => {
    const p = await inventoryProxy({
      rules: {
        proxyCredential: [INVENTORY_RULE],
        target: [
          {
            ruleId: 'no-secrets',
            effect: 'deny',
            priority: 900,
            path: { path: { pattern: '^/v2/inventory/secret' }, presence: 'must_exist' },
          },
        ],
      },
    });
    const denied = await send(stack.proxyUrl, {
      path: `/api/${p.proxyId}/v2/inventory/secret-stock`,
      headers: { authorization: p.proxyKey },
    });
    expect(denied.status).toBe(403);
    expect(outcomes.at(-1)?.rule).toEqual({
      ruleId: 'no-secrets',
      scope: 'target',
      effect: 'deny',
      priority: 900,
    });
    expect(upstream.received).toHaveLength(0);
  });

  it('allows by default only when both defaults are allow', async () => {
    const both = await inventoryProxy({
      rules: {},
      proxyDefaultRuleEffect: 'allow',
      targetDefaultRuleEffect: 'allow',
    });
    const one = await inventoryProxy({
      rules: {},
      proxyDefaultRuleEffect: 'allow',
      targetDefaultRuleEffect: 'deny',
    });
    expect(
      (
        await send(stack.proxyUrl, {
          path: `/api/${both.proxyId}/x`,
          headers: { authorization: both.proxyKey },
        })
      ).status,
    ).toBe(200);
    expect(
      (
        await send(stack.proxyUrl, {
          path: `/api/${one.proxyId}/x`,
          headers: { authorization: one.proxyKey },
        })
      ).status,
    ).toBe(403);
  });

  it('checks header, query and JSON body conditions on the request as it will be sent', async () => {
    const p = await inventoryProxy({
      rules: {
        proxy: [
          {
            ruleId: 'orders',
            effect: 'allow',
            priority: 1,
            methods: ['POST'],
            path: { path: { pattern: '^/v2/orders$' }, presence: 'must_exist' },
            headerChecks: [
              { name: { pattern: '^x-tenant$' }, value: { pattern: '^acme$' }, presence: 'must_exist' },
            ],
            queryChecks: [{ name: { pattern: '^dryRun$' }, presence: 'must_not_exist' }],
            body: [{ jsonPath: '$.currency', matchValue: { pattern: '^EUR$' }, presence: 'must_exist' }],
          },
        ],
      },
    });
    const post = (path: string, headers: Record<string, string>, body: string) =>
      send(stack.proxyUrl, {
        method: 'POST',
        path: `/api/${p.proxyId}${path}`,
        headers: { authorization: p.proxyKey, 'content-type': 'application/json', ...headers },
        body,
      });
    expect((await post('/v2/orders', { 'x-tenant': 'acme' }, '{"currency":"EUR"}')).status).toBe(200);
    expect((await post('/v2/orders', { 'x-tenant': 'evil' }, '{"currency":"EUR"}')).status).toBe(403);
    expect((await post('/v2/orders?dryRun=1', { 'x-tenant': 'acme' }, '{"currency":"EUR"}')).status).toBe(
      403,
    );
    expect((await post('/v2/orders', { 'x-tenant': 'acme' }, '{"currency":"USD"}')).status).toBe(403);
    // Declared JSON that is not: refused as unreadable (body checks apply), never forwarded.
    expect((await post('/v2/orders', { 'x-tenant': 'acme' }, 'not json')).status).toBe(400);
    expect(upstream.received).toHaveLength(1);
    expect(upstream.received[0]!.body.toString()).toBe('{"currency":"EUR"}');
    expect(upstream.received[0]!.headers['content-type']).toBe('application/json');
  });
});

describe('authentication', () => {
  it('answers one 401 for unknown proxy, missing, wrong, revoked and expired keys', async () => {
    const p = await inventoryProxy();
    const revoked = await inventoryProxy({ proxyCredential: null });
    const expired = await inventoryProxy({
      proxyCredential: { expiresAt: new Date(Date.now() - 1000).toISOString() },
    });
    const attempts: Array<[string, Record<string, string>]> = [
      [`/api/prx_doesnotexist/v2/inventory/1`, { authorization: p.proxyKey }],
      [`/api/${p.proxyId}/v2/inventory/1`, {}],
      [`/api/${p.proxyId}/v2/inventory/1`, { authorization: `${p.proxyKey}x` }],
      [
        `/api/${p.proxyId}/v2/inventory/1`,
        { authorization: `Basic ${Buffer.from(`u:${p.proxyKey}`).toString('base64')}` },
      ],
      [`/api/${p.proxyId}/v2/inventory/1`, { authorization: '' }],
      [`/api/${revoked.proxyId}/v2/inventory/1`, { authorization: revoked.proxyKey }],
      [`/api/${expired.proxyId}/v2/inventory/1`, { authorization: expired.proxyKey }],
      [`/api/${'x'.repeat(300)}/v2/inventory/1`, { authorization: p.proxyKey }],
    ];
    const bodies = new Set<string>();
    for (const [path, headers] of attempts) {
      const res = await send(stack.proxyUrl, { path, headers });
      expect([path.slice(0, 40), res.status]).toEqual([path.slice(0, 40), 401]);
      expect(res.headers['keygate-proxy-code']).toBe('proxy-unauthorized');
      const { requestId, ...rest } = res.json();
      expect(requestId).toBe(res.headers['keygate-request-id']);
      bodies.add(JSON.stringify(rest));
      expect(res.headers['www-authenticate']).toBeUndefined();
    }
    expect(bodies.size).toBe(1);
    expect(upstream.received).toHaveLength(0);
    expect(outcomes.every((o) => o.decision === 'unauthenticated' && o.status === 401)).toBe(true);
  });

  it('does the same store work for an unknown proxy and a wrong key (one read, nothing counted)', async () => {
    // A limited proxy this instance has seen pass: were a wrong key counted early (and uncounted),
    // it would cost a round trip or two more than an unknown proxy — a timing oracle. Both cost
    // exactly one read. (Counted, not timed: timings belong in `npm run bench`.)
    const p = await inventoryProxy({ perMinute: 1_000_000 });
    await send(stack.proxyUrl, {
      path: `/api/${p.proxyId}/v2/inventory/1`,
      headers: { authorization: p.proxyKey },
    });
    const ddb = Object.values(stack.deps.cells)[0]!.ddb;
    const calls: string[] = [];
    const original = ddb.send.bind(ddb);
    ddb.send = ((command: { constructor: { name: string } }, ...rest: unknown[]) => {
      calls.push(command.constructor.name);
      return (original as (...a: unknown[]) => unknown)(command, ...rest);
    }) as typeof ddb.send;
    try {
      const storeWork = async (path: string, authorization: string) => {
        calls.length = 0;
        const res = await send(stack.proxyUrl, { path, headers: { authorization } });
        expect(res.status).toBe(401);
        return [...calls];
      };
      const wrong = await storeWork(`/api/${p.proxyId}/v2/inventory/1`, `${p.proxyKey}x`);
      const unknown = await storeWork('/api/prx_unknown000000/v2/inventory/1', p.proxyKey);
      expect(wrong).toEqual(['GetCommand']);
      expect(unknown).toEqual(wrong);
    } finally {
      ddb.send = original as typeof ddb.send;
    }
  });

  it('authenticates bearer (with its prefix) and basicAuth proxy credentials', async () => {
    const { hashSecret } = await import('../../lambdas/crypto/secrets.ts');
    const bearer = await inventoryProxy({
      proxyKey: 'tok_0123456789abcdef0123456789',
      proxyCredential: {
        credentialAuthType: 'bearer',
        prefix: 'Token ',
        secretHash: hashSecret('tok_0123456789abcdef0123456789'),
      },
    });
    const ok = await send(stack.proxyUrl, {
      path: `/api/${bearer.proxyId}/v2/inventory/1`,
      headers: { authorization: 'Token tok_0123456789abcdef0123456789' },
    });
    expect(ok.status).toBe(200);
    const wrongPrefix = await send(stack.proxyUrl, {
      path: `/api/${bearer.proxyId}/v2/inventory/1`,
      headers: { authorization: 'Bearer tok_0123456789abcdef0123456789' },
    });
    expect(wrongPrefix.status).toBe(401);

    const basic = await inventoryProxy({
      proxyCredential: { credentialAuthType: 'basicAuth', secretHash: hashSecret('svc:pa:ss') },
    });
    const good = await send(stack.proxyUrl, {
      path: `/api/${basic.proxyId}/v2/inventory/1`,
      headers: { authorization: `Basic ${Buffer.from('svc:pa:ss').toString('base64')}` },
    });
    expect(good.status).toBe(200);
    const bad = await send(stack.proxyUrl, {
      path: `/api/${basic.proxyId}/v2/inventory/1`,
      headers: { authorization: `Basic ${Buffer.from('svc:wrong').toString('base64')}` },
    });
    expect(bad.status).toBe(401);
    expect(upstream.received).toHaveLength(2);
  });

  it('answers 403 proxy-inactive for an inactive proxy, after authentication only', async () => {
    const p = await inventoryProxy({ proxyActive: false });
    const res = await send(stack.proxyUrl, {
      path: `/api/${p.proxyId}/v2/inventory/1`,
      headers: { authorization: p.proxyKey },
    });
    expect(res.status).toBe(403);
    expect(res.headers['keygate-proxy-code']).toBe('proxy-inactive');
    const anon = await send(stack.proxyUrl, { path: `/api/${p.proxyId}/v2/inventory/1` });
    expect(anon.status).toBe(401);
    expect(upstream.received).toHaveLength(0);
  });

  it('refuses a proxy whose target credential was deleted or has expired', async () => {
    const gone = await inventoryProxy({ target: null });
    const expired = await inventoryProxy({
      target: { type: 'apiKey', secret: { key: 'k' }, expiresAt: new Date(Date.now() - 1).toISOString() },
    });
    for (const p of [gone, expired]) {
      const res = await send(stack.proxyUrl, {
        path: `/api/${p.proxyId}/v2/inventory/1`,
        headers: { authorization: p.proxyKey },
      });
      expect(res.status).toBe(403);
      expect(res.headers['keygate-proxy-code']).toBe('proxy-target-credential-unavailable');
    }
    expect(upstream.received).toHaveLength(0);
  });
});

describe('injection per target credential type', () => {
  const call = async (
    target: { type: string; secret: Record<string, unknown> },
    path = '/v2/inventory/1',
    headers: Record<string, string> = {},
  ) => {
    const p = await inventoryProxy({ target });
    const res = await send(stack.proxyUrl, {
      path: `/api/${p.proxyId}${path}`,
      headers: { authorization: p.proxyKey, ...headers },
    });
    expect(res.status).toBe(200);
    return upstream.received.at(-1)!;
  };

  it('apiKey in a header replaces every consumer copy (never merged)', async () => {
    const got = await call(
      { type: 'apiKey', secret: { key: 'vendor-k', headerName: 'X-Api-Key' } },
      '/v2/inventory/1',
      {
        'x-api-key': 'consumer-k',
        'X-API-KEY': 'consumer-2',
      },
    );
    expect(got.headers['x-api-key']).toBe('vendor-k');
    expect(got.rawHeaders.filter((h) => h.toLowerCase() === 'x-api-key')).toHaveLength(1);
  });

  it('apiKey defaults to X-API-Key', async () => {
    const got = await call({ type: 'key', secret: { key: 'vendor-k' } });
    expect(got.headers['x-api-key']).toBe('vendor-k');
  });

  it('apiKey as a query parameter replaces the consumer copy and keeps the rest byte-for-byte', async () => {
    const got = await call(
      { type: 'apiKey', secret: { key: 'v k&1', queryParam: 'api_key' } },
      "/v2/inventory/1?b=%2F&api_key=mine&a='x'&api%5Fkey=also",
    );
    expect(got.url).toBe("/v2/inventory/1?b=%2F&a='x'&api_key=v%20k%261");
  });

  it('bearer with its prefix, basicAuth, custom headers, none', async () => {
    expect((await call({ type: 'bearer', secret: { token: 't0k' } })).headers.authorization).toBe(
      'Bearer t0k',
    );
    expect(
      (await call({ type: 'bearer', secret: { token: 't0k', prefix: 'Token ' } })).headers.authorization,
    ).toBe('Token t0k');
    expect(
      (await call({ type: 'basicAuth', secret: { username: 'u', password: 'p:w' } })).headers.authorization,
    ).toBe(`Basic ${Buffer.from('u:p:w').toString('base64')}`);
    const custom = await call(
      { type: 'custom', secret: { headers: { 'X-One': '1', 'X-Two': '2' } } },
      '/v2/inventory/1',
      { 'x-one': 'mine' },
    );
    expect([custom.headers['x-one'], custom.headers['x-two']]).toEqual(['1', '2']);
    const none = await call({ type: 'none', secret: {} });
    expect(none.headers.authorization).toBeUndefined();
    expect(none.headers['x-api-key']).toBeUndefined();
  });
});

describe('header hygiene', () => {
  it('strips hop-by-hop, Connection-named, Proxy-*, method overrides, rewrite URLs and forwarding headers', async () => {
    const p = await inventoryProxy();
    const res = await send(stack.proxyUrl, {
      path: `/api/${p.proxyId}/v2/inventory/1`,
      headers: {
        authorization: p.proxyKey,
        connection: 'keep-alive, X-Drop-Me, X-Vendor-Key',
        'x-drop-me': '1',
        'keep-alive': 'timeout=5',
        'proxy-authorization': 'Basic Zm9vOmJhcg==',
        'proxy-foo': '1',
        'x-http-method-override': 'DELETE',
        'x-http-method': 'DELETE',
        'x-method-override': 'DELETE',
        'x-original-url': '/admin',
        'x-rewrite-url': '/admin',
        'x-forwarded-for': '10.0.0.1',
        'x-forwarded-host': 'evil.example',
        'x-forwarded-proto': 'http',
        forwarded: 'for=10.0.0.1',
        'x-real-ip': '10.0.0.1',
        'keygate-proxy-code': 'spoofed',
        'x-keep': 'kept',
        cookie: 'a=1; b=2',
      },
    });
    expect(res.status).toBe(200);
    const got = upstream.received[0]!;
    const names = got.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
    for (const dropped of [
      'x-drop-me',
      'keep-alive',
      'proxy-authorization',
      'proxy-foo',
      'x-http-method-override',
      'x-http-method',
      'x-method-override',
      'x-original-url',
      'x-rewrite-url',
      'x-forwarded-for',
      'x-forwarded-host',
      'x-forwarded-proto',
      'forwarded',
      'x-real-ip',
      'keygate-proxy-code',
      'authorization',
    ])
      expect([dropped, names.includes(dropped)]).toEqual([dropped, false]);
    // The injected credential survives a Connection header that names it.
    expect(got.headers['x-vendor-key']).toBe(VENDOR_SECRET);
    expect(got.headers['x-keep']).toBe('kept');
    expect(got.headers.cookie).toBe('a=1; b=2');
    expect(got.method).toBe('GET');
  });

  it('passes the upstream answer through unchanged apart from hop-by-hop headers, redirects included', async () => {
    const p = await inventoryProxy();
    upstream.respond = (_req, res) => {
      res.setHeader('set-cookie', ['s=1; Path=/', 't=2']);
      res.writeHead(302, {
        location: 'https://elsewhere.example/x',
        'x-vendor': 'v',
        connection: 'x-hop',
        'x-hop': 'h',
      });
      res.end('moved');
    };
    const res = await send(stack.proxyUrl, {
      path: `/api/${p.proxyId}/v2/inventory/1`,
      headers: { authorization: p.proxyKey },
    });
    expect(res.status).toBe(302);
    expect(res.headers.location).toBe('https://elsewhere.example/x');
    expect(res.headers['x-vendor']).toBe('v');
    expect(res.headers['x-hop']).toBeUndefined();
    expect(res.headers['set-cookie']).toEqual(['s=1; Path=/', 't=2']);
    expect(res.text).toBe('moved');
    expect(upstream.received).toHaveLength(1);
  });

  it('passes binary bodies both ways byte-for-byte', async () => {
    const p = await inventoryProxy({
      rules: {},
      proxyDefaultRuleEffect: 'allow',
      targetDefaultRuleEffect: 'allow',
    });
    const bytes = Buffer.from([0, 255, 1, 254, 0x80, 0x0d, 0x0a, 0x1f]);
    upstream.respond = (req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.end(Buffer.concat([req.body, bytes]));
    };
    const res = await send(stack.proxyUrl, {
      method: 'PUT',
      path: `/api/${p.proxyId}/blob`,
      headers: { authorization: p.proxyKey, 'content-type': 'application/octet-stream' },
      body: bytes,
    });
    expect(res.status).toBe(200);
    expect(res.body.equals(Buffer.concat([bytes, bytes]))).toBe(true);
    expect(upstream.received[0]!.body.equals(bytes)).toBe(true);
  });

  it('refuses Transfer-Encoding with Content-Length, and never forwards TRACE or CONNECT', async () => {
    const p = await inventoryProxy({
      rules: {},
      proxyDefaultRuleEffect: 'allow',
      targetDefaultRuleEffect: 'allow',
    });
    const raw = await sendRaw(
      stack.proxyUrl,
      `POST /api/${p.proxyId}/x HTTP/1.1\r\nHost: a\r\nAuthorization: ${p.proxyKey}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n`,
    );
    expect(raw).toMatch(/^HTTP\/1\.1 400/);
    // The same shape handed to the handler directly (a front that let it through).
    const handler = createProxyHandler(stack.deps);
    const direct = await handler(
      eventFor(`/api/${p.proxyId}/x`, 'POST', {
        authorization: p.proxyKey,
        'content-length': '4',
        'transfer-encoding': 'chunked',
      }),
    );
    expect(direct.statusCode).toBe(400);
    for (const method of ['TRACE', 'CONNECT', 'PROPFIND']) {
      const res = await handler(eventFor(`/api/${p.proxyId}/x`, method, { authorization: p.proxyKey }));
      expect([method, res.statusCode, res.headers?.['keygate-proxy-code']]).toEqual([
        method,
        405,
        'proxy-method-not-allowed',
      ]);
    }
    const trace = await send(stack.proxyUrl, {
      method: 'TRACE',
      path: `/api/${p.proxyId}/x`,
      headers: { authorization: p.proxyKey },
    });
    expect(trace.status).toBe(405);
    expect(upstream.received).toHaveLength(0);
  });
});

function eventFor(rawPath: string, method: string, headers: Record<string, string>, rawQueryString = '') {
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath,
    rawQueryString,
    headers,
    requestContext: {
      http: { method, path: rawPath, protocol: 'HTTP/1.1', sourceIp: '127.0.0.1', userAgent: 'test' },
    },
    isBase64Encoded: false,
  } as unknown as Parameters<ReturnType<typeof createProxyHandler>>[0];
}

describe('the upstream call', () => {
  it('answers 504 when the target is too slow', async () => {
    const url = await front({ deadlines: { firstByteMs: 200 } });
    const p = await inventoryProxy();
    upstream.respond = () => undefined;
    const res = await send(url, {
      path: `/api/${p.proxyId}/v2/inventory/1`,
      headers: { authorization: p.proxyKey },
    });
    expect(res.status).toBe(504);
    expect(res.headers['keygate-proxy-code']).toBe('proxy-upstream-timeout');
  });

  it('answers 502 when the target cannot be reached', async () => {
    const p = await inventoryProxy({ targetBaseURL: `http://127.0.0.1:${closed}` });
    const res = await send(stack.proxyUrl, {
      path: `/api/${p.proxyId}/v2/inventory/1`,
      headers: { authorization: p.proxyKey },
    });
    expect(res.status).toBe(502);
    expect(res.headers['keygate-proxy-code']).toBe('proxy-upstream-unreachable');
  });

  it('passes answers over the old 4 MiB buffered cap whole, declared or chunked (streamed, uncapped)', async () => {
    const p = await inventoryProxy();
    const big = Buffer.alloc(6 * 1024 * 1024, 'x');
    upstream.respond = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(big.length) });
      res.end(big);
    };
    const declared = await send(stack.proxyUrl, {
      path: `/api/${p.proxyId}/v2/inventory/1`,
      headers: { authorization: p.proxyKey },
    });
    expect([declared.status, declared.body.length]).toEqual([200, big.length]);
    upstream.respond = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'transfer-encoding': 'chunked' });
      for (let i = 0; i < 6; i++) res.write(big.subarray(0, 1024 * 1024));
      res.end();
    };
    const chunked = await send(stack.proxyUrl, {
      path: `/api/${p.proxyId}/v2/inventory/1`,
      headers: { authorization: p.proxyKey },
    });
    expect([chunked.status, chunked.body.length]).toEqual([200, big.length]);
  });

  it('refuses a private target that is not allowlisted, at connect time, without connecting', async () => {
    let connections = 0;
    const listener = createServer((s) => {
      connections++;
      s.destroy();
    });
    await new Promise<void>((r) => listener.listen(0, '127.0.0.2', r));
    const port = (listener.address() as { port: number }).port;
    try {
      // An IP literal that is private and not on the allowlist (over https, as targets must be).
      const literal = await inventoryProxy({ targetBaseURL: `https://127.0.0.2:${port}` });
      const a = await send(stack.proxyUrl, {
        path: `/api/${literal.proxyId}/v2/inventory/1`,
        headers: { authorization: literal.proxyKey },
      });
      expect(a.status).toBe(502);
      expect(a.headers['keygate-proxy-code']).toBe('proxy-target-refused');
      // Plain http to a host that is not allowlisted.
      const plain = await inventoryProxy({ targetBaseURL: `http://127.0.0.2:${port}` });
      expect(
        (
          await send(stack.proxyUrl, {
            path: `/api/${plain.proxyId}/v2/inventory/1`,
            headers: { authorization: plain.proxyKey },
          })
        ).status,
      ).toBe(502);
      // A NAME that resolves to loopback, checked when the socket is opened (the rebinding case).
      const strict = await front(
        {},
        { ...stack.deps, config: { ...stack.deps.config, targetAllowlist: [`127.0.0.1:${port}`] } },
      );
      const named = await inventoryProxy({ targetBaseURL: `https://localhost:${port}` });
      const b = await send(strict, {
        path: `/api/${named.proxyId}/v2/inventory/1`,
        headers: { authorization: named.proxyKey },
      });
      expect(b.status).toBe(502);
      expect(b.headers['keygate-proxy-code']).toBe('proxy-target-refused');
      expect(connections).toBe(0);
    } finally {
      await new Promise<void>((r) => listener.close(() => r()));
    }
  });
});

async function closedPort(): Promise<number> {
  const s: Server = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe('KMS and the hot path', () => {
  it('calls KMS Decrypt once for a new data key, then never per request', async () => {
    const p = await inventoryProxy();
    const counts = stack.services.kms.counts;
    await send(stack.proxyUrl, {
      path: `/api/${p.proxyId}/v2/inventory/1`,
      headers: { authorization: p.proxyKey },
    });
    const before = counts.Decrypt ?? 0;
    for (let i = 0; i < 20; i++) {
      const res = await send(stack.proxyUrl, {
        path: `/api/${p.proxyId}/v2/inventory/${i}`,
        headers: { authorization: p.proxyKey },
      });
      expect(res.status).toBe(200);
    }
    expect((counts.Decrypt ?? 0) - before).toBe(0);
  });

  it('hands every exit path one outcome, with no secret in it', async () => {
    const p = await inventoryProxy();
    await send(stack.proxyUrl, {
      path: `/api/${p.proxyId}/v2/inventory/1?q=1`,
      headers: { authorization: p.proxyKey, 'user-agent': 'ua/1' },
    });
    await send(stack.proxyUrl, {
      path: `/api/${p.proxyId}/v2/orders`,
      headers: { authorization: p.proxyKey },
    });
    await send(stack.proxyUrl, {
      path: `/api/${p.proxyId}/v2/inventory/1`,
      headers: { authorization: 'nope' },
    });
    await send(stack.proxyUrl, {
      path: `/api/${p.proxyId}/v2/inventory%2F1`,
      headers: { authorization: p.proxyKey },
    });
    expect(outcomes.map((o) => [o.status, o.decision, o.proxyCode])).toEqual([
      [200, 'allowed', 'proxy-access-granted'],
      [403, 'denied', 'proxy-access-denied'],
      [401, 'unauthenticated', 'proxy-unauthorized'],
      [400, 'bad_request', 'proxy-bad-request'],
    ]);
    const granted = outcomes[0]!;
    expect(granted).toMatchObject({
      proxyId: p.proxyId,
      clientId: p.clientId,
      proxyCredentialId: p.snapshot.proxyCredential!.credentialId,
      targetCredentialId: p.snapshot.targetCredential!.credentialId,
      targetId: p.snapshot.target.targetId,
      method: 'GET',
      path: '/v2/inventory/1',
      query: 'q=1',
      userAgent: 'ua/1',
      sourceIp: '127.0.0.1',
      rule: { ruleId: 'rule_inventory', scope: 'proxyCredential', effect: 'allow', priority: 10 },
    });
    expect(granted.requestId).toMatch(REQUEST_ID_PATTERN);
    expect(granted.durations.upstreamMs).toBeGreaterThan(0);
    expect(granted.durations.gatewayMs).toBeGreaterThan(0);
    expect(granted.bytes.out).toBeGreaterThan(0);
    const all = JSON.stringify(outcomes);
    expect(all).not.toContain(p.proxyKey);
    expect(all).not.toContain(VENDOR_SECRET);
    expect(all.toLowerCase()).not.toContain('authorization');
  });
});
