import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { headerKey } from '../../lambdas/data-plane/header-hygiene.ts';
import type { ProxyOutcome } from '../../lambdas/data-plane/outcome.ts';
import type { Cell, Deps } from '../../lambdas/shared/deps.ts';
import type { HttpFront } from '../../local/http-front.ts';
import { type LocalStack, startLocalStack } from '../../local/stack.ts';
import { captureLogs } from '../helpers/logs.ts';
import {
  INVENTORY_RULE,
  REGION,
  type RecordingUpstream,
  send,
  sendRaw,
  startProxyFront,
  startRecordingUpstream,
  type Written,
  writeSnapshot,
} from '../helpers/proxy-fixtures.ts';

// Faults are provoked on purpose here: their WARN/ERROR lines go to a capture, not the test output.
const logs = captureLogs();
afterAll(() => logs.restore());

/**
 * The hygiene corpus (issues 10 and 20): what a consumer sends that the vendor must never see,
 * ambiguous Host shapes, and key-guessing floods. A recording upstream sees every request that
 * gets through; a counting store client sees every store call.
 */
let stack: LocalStack;
let upstream: RecordingUpstream;
let p: Written;

beforeAll(async () => {
  upstream = await startRecordingUpstream();
  stack = await startLocalStack({ targetAllowlist: [`127.0.0.1:${upstream.port}`] });
  p = await writeSnapshot(stack.deps, {
    targetBaseURL: upstream.url,
    rules: { proxyCredential: [INVENTORY_RULE] },
  });
});

afterAll(async () => {
  await upstream.close();
  await stack.close();
});

/** Headers no vendor may receive from a consumer, each a well-known proxy/CDN/server family. */
const STRIPPED = [
  'True-Client-IP',
  'CF-Connecting-IP',
  'X-Client-IP',
  'Client-IP',
  'Via',
  'X-Host',
  'X-Original-Host',
  'X-Envoy-Original-Path',
  'X-Envoy-Internal',
  'X-Middleware-Subrequest',
  'X-Forwarded-For',
  'X-Forwarded-Host',
  'X-Forwarded-Proto',
  'X-Forwarded',
  'Forwarded',
  'X-Real-IP',
  'X-Original-URL',
  'X-Rewrite-URL',
  'X-Cluster-Client-IP',
  'Fastly-Client-IP',
  'X-HTTP-Method-Override',
  'X-Invoke-Path',
  'Proxy-Authorization',
  'Keygate-Internal',
];

/** Every spelling a lenient server folds into the same name. */
function spellings(name: string): string[] {
  return [
    name,
    name.toLowerCase(),
    name.toUpperCase(),
    name.replace(/-/g, '_'),
    name.toLowerCase().replace(/-/g, '_'),
  ];
}

function received(since: number) {
  return upstream.received.slice(since);
}

/** Header names (folded as servers fold them) of one received request, with their values. */
function foldedHeaders(rawHeaders: string[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i < rawHeaders.length; i += 2) out.push([headerKey(rawHeaders[i]!), rawHeaders[i + 1]!]);
  return out;
}

describe('headers a vendor never sees', () => {
  it('strips every client-IP, forwarding and internal header in every spelling', async () => {
    const since = upstream.received.length;
    let sent = 0;
    for (const name of STRIPPED) {
      for (const spelled of spellings(name)) {
        const res = await send(stack.proxyUrl, {
          path: `/api/${p.proxyId}/v2/inventory/1`,
          headers: { authorization: p.proxyKey, [spelled]: 'evil.example' },
        });
        expect(res.status).toBe(200);
        sent++;
      }
    }
    const got = received(since);
    expect(got).toHaveLength(sent);
    const stripped = new Set(STRIPPED.map(headerKey));
    const leaks = got.flatMap((r) => foldedHeaders(r.rawHeaders).filter(([name]) => stripped.has(name)));
    expect(leaks).toEqual([]);
    // And no value we sent reached the vendor under any other name.
    expect(
      got.flatMap((r) => foldedHeaders(r.rawHeaders).filter(([, v]) => v.includes('evil.example'))),
    ).toEqual([]);
  });

  it('drops every underscore header, so a rule never misses what a vendor reads as X-Role', async () => {
    const since = upstream.received.length;
    const res = await send(stack.proxyUrl, {
      path: `/api/${p.proxyId}/v2/inventory/1`,
      headers: { authorization: p.proxyKey, X_Role: 'admin', 'x-fine': 'kept' },
    });
    expect(res.status).toBe(200);
    const [r] = received(since);
    expect(r!.rawHeaders.filter((h, i) => i % 2 === 0 && h.includes('_'))).toEqual([]);
    expect(r!.headers['x-fine']).toBe('kept');
  });

  it('sends exactly one copy of the injected credential, whatever alias the consumer sent', async () => {
    const since = upstream.received.length;
    const res = await send(stack.proxyUrl, {
      path: `/api/${p.proxyId}/v2/inventory/1`,
      headers: {
        authorization: p.proxyKey,
        X_Vendor_Key: 'consumer-1',
        'x-vendor-key': 'consumer-2',
        'X-VENDOR_KEY': 'consumer-3',
      },
    });
    expect(res.status).toBe(200);
    const [r] = received(since);
    const copies = foldedHeaders(r!.rawHeaders).filter(([name]) => name === 'x-vendor-key');
    expect(copies).toEqual([['x-vendor-key', 'sk_live_vendor_secret_1']]);
  });

  it('replaces X_Api_Key next to an injected X-Api-Key (custom credential)', async () => {
    const custom = await writeSnapshot(stack.deps, {
      targetBaseURL: upstream.url,
      target: { type: 'custom', secret: { headers: { 'X-Api-Key': 'vendor-custom-secret' } } },
      rules: { proxyCredential: [INVENTORY_RULE] },
    });
    const since = upstream.received.length;
    const res = await send(stack.proxyUrl, {
      path: `/api/${custom.proxyId}/v2/inventory/1`,
      headers: { authorization: custom.proxyKey, X_Api_Key: 'consumer', 'x_api-key': 'consumer' },
    });
    expect(res.status).toBe(200);
    const [r] = received(since);
    expect(foldedHeaders(r!.rawHeaders).filter(([name]) => name === 'x-api-key')).toEqual([
      ['x-api-key', 'vendor-custom-secret'],
    ]);
  });
});

describe('Host', () => {
  const path = () => `/api/${p.proxyId}/v2/inventory/1`;

  it('answers 400 to two Host headers, before anything else, and sends nothing', async () => {
    const since = upstream.received.length;
    for (const hosts of [
      ['a.example', 'b.example'],
      ['127.0.0.1', '127.0.0.1'],
      ['a.example', ''],
    ]) {
      const raw = await sendRaw(
        stack.proxyUrl,
        `GET ${path()} HTTP/1.1\r\n${hosts.map((h) => `Host: ${h}\r\n`).join('')}Authorization: ${p.proxyKey}\r\nConnection: close\r\n\r\n`,
      );
      expect(raw).toMatch(/^HTTP\/1\.1 400 /);
    }
    // Even on an unknown route: the Host check comes first.
    const raw = await sendRaw(
      stack.proxyUrl,
      'GET /nowhere HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n',
    );
    expect(raw).toMatch(/^HTTP\/1\.1 400 /);
    expect(received(since)).toHaveLength(0);
  });

  it('answers 400 when an absolute-form target names another host, and serves it when they agree', async () => {
    const since = upstream.received.length;
    const host = new URL(stack.proxyUrl).host;
    const disagree = await sendRaw(
      stack.proxyUrl,
      `GET http://evil.example${path()} HTTP/1.1\r\nHost: ${host}\r\nAuthorization: ${p.proxyKey}\r\nConnection: close\r\n\r\n`,
    );
    expect(disagree).toMatch(/^HTTP\/1\.1 400 /);
    expect(received(since)).toHaveLength(0);
    // (sendRaw half-closes the socket, which the front answers only when it answers at once.)
    const agree = await send(stack.proxyUrl, {
      path: `http://${host}${path()}`,
      headers: { authorization: p.proxyKey },
    });
    expect(agree.status).toBe(200);
    expect(received(since).map((r) => r.url)).toEqual(['/v2/inventory/1']);
  });
});

/** The stack's deps with a store client that counts every call. */
function countingDeps(deps: Deps): { deps: Deps; calls: () => number } {
  let calls = 0;
  const cell = deps.cells[REGION]!;
  const ddb = new Proxy(cell.ddb, {
    get(target, prop, receiver) {
      if (prop === 'send')
        return (...args: Parameters<typeof target.send>) => {
          calls++;
          return target.send(...args);
        };
      return Reflect.get(target, prop, receiver);
    },
  });
  const counted: Cell = { ...cell, ddb };
  return { deps: { ...deps, cells: { ...deps.cells, [REGION]: counted } }, calls: () => calls };
}

describe('key-guessing floods', () => {
  let front: HttpFront;
  let counted: ReturnType<typeof countingDeps>;
  const outcomes: ProxyOutcome[] = [];
  const PER_SOURCE = 10;

  beforeAll(async () => {
    counted = countingDeps(stack.deps);
    front = await startProxyFront(counted.deps, {
      authFailureBudget: { perSource: PER_SOURCE, perProxy: 1000, countLoopback: true },
      onOutcome: (o) => outcomes.push(o),
    });
  });
  afterAll(() => front.close());

  it('throttles a flood of wrong keys with 429 + Retry-After and no store read, and lets the real key through', async () => {
    const flood = await writeSnapshot(stack.deps, {
      targetBaseURL: upstream.url,
      rules: { proxyCredential: [INVENTORY_RULE] },
    });
    const path = `/api/${flood.proxyId}/v2/inventory/1`;
    // The real consumer has called before: its key is known good on this instance.
    expect((await send(front.url, { path, headers: { authorization: flood.proxyKey } })).status).toBe(200);

    const before = counted.calls();
    const statuses: number[] = [];
    let retryAfter: string | string[] | undefined;
    for (let i = 0; i < 200; i++) {
      const res = await send(front.url, { path, headers: { authorization: `kg_live_guess_${i}` } });
      statuses.push(res.status);
      if (res.status === 429) {
        retryAfter = res.headers['retry-after'];
        expect(res.json().code).toBe('proxy-auth-throttled');
      }
    }
    expect(statuses.slice(0, PER_SOURCE)).toEqual(Array(PER_SOURCE).fill(401));
    expect(statuses.slice(PER_SOURCE)).toEqual(Array(200 - PER_SOURCE).fill(429));
    expect(Number(retryAfter)).toBeGreaterThanOrEqual(1);
    expect(Number(retryAfter)).toBeLessThanOrEqual(60);
    // One snapshot read per 401 that was answered; none for the 190 throttled ones.
    expect(counted.calls() - before).toBe(PER_SOURCE);

    // The real consumer is not locked out by the flood.
    expect((await send(front.url, { path, headers: { authorization: flood.proxyKey } })).status).toBe(200);
    // Throttled calls are unauthenticated in telemetry (counted, not logged one record each).
    const throttled = outcomes.filter((o) => o.proxyCode === 'proxy-auth-throttled');
    expect(throttled).toHaveLength(200 - PER_SOURCE);
    expect(new Set(throttled.map((o) => `${o.status}/${o.decision}`))).toEqual(
      new Set(['429/unauthenticated']),
    );
  });

  it('throttles per proxy id too (many sources on one proxy), with the same exemption', async () => {
    const front2 = await startProxyFront(counted.deps, {
      authFailureBudget: { perSource: 1000, perProxy: 5 },
    });
    try {
      const target = await writeSnapshot(stack.deps, {
        targetBaseURL: upstream.url,
        rules: { proxyCredential: [INVENTORY_RULE] },
      });
      const path = `/api/${target.proxyId}/v2/inventory/1`;
      const statuses: number[] = [];
      for (let i = 0; i < 12; i++)
        statuses.push((await send(front2.url, { path, headers: { authorization: `wrong-${i}` } })).status);
      expect(statuses).toEqual([...Array(5).fill(401), ...Array(7).fill(429)]);
      // Another proxy on the same instance keeps its own budget.
      const other = await writeSnapshot(stack.deps, {
        targetBaseURL: upstream.url,
        rules: { proxyCredential: [INVENTORY_RULE] },
      });
      expect(
        (
          await send(front2.url, {
            path: `/api/${other.proxyId}/v2/inventory/1`,
            headers: { authorization: 'x' },
          })
        ).status,
      ).toBe(401);
    } finally {
      await front2.close();
    }
  });
});
