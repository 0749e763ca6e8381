import { brotliCompressSync, deflateSync, gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { ProxyOutcome } from '../../lambdas/data-plane/outcome.ts';
import { RULE_WORK_BUDGET } from '../../lambdas/rules/limits.ts';
import { compilePattern } from '../../lambdas/rules/patterns.ts';
import type { Rule } from '../../lambdas/rules/types.ts';
import type { HttpFront } from '../../local/http-front.ts';
import { type LocalStack, startLocalStack } from '../../local/stack.ts';
import {
  INVENTORY_RULE,
  type Recorded,
  type RecordingUpstream,
  send,
  startProxyFront,
  startRecordingUpstream,
  type Written,
  writeSnapshot,
} from '../helpers/proxy-fixtures.ts';

/**
 * The adversarial corpus for rules, through the local HTTP front to a recording upstream. Each
 * class of trick (content-type games, BOM, trailing bytes, duplicate keys, content codings, form
 * bodies, JSON-RPC batches, query pollution, header repetition, disguised dot segments, cost) is
 * sent at a proxy whose rules deny it. The invariant: nothing a rule denies reaches the upstream —
 * checked on what the upstream received, under the most lenient reading a vendor might make.
 */
let stack: LocalStack;
let upstream: RecordingUpstream;
let front: HttpFront;
const outcomes: ProxyOutcome[] = [];

const DENY_DELETE: Rule = {
  ruleId: 'no-delete-tool',
  effect: 'deny',
  priority: 1,
  body: [{ jsonPath: '$.params.name', matchValue: { pattern: '^delete_file$' }, presence: 'must_exist' }],
};
const DENY_BIG_AMOUNT: Rule = {
  ruleId: 'no-big-amount',
  effect: 'deny',
  priority: 2,
  body: [{ jsonPath: '$.amount', matchValue: { pattern: '^[0-9]{4,}' }, presence: 'must_exist' }],
};
const DRY_RUN_ONLY: Rule = {
  ruleId: 'dry-run-only',
  effect: 'allow',
  priority: 1,
  queryChecks: [{ name: { pattern: '^dry_run$' }, value: { pattern: '^true$' }, presence: 'must_exist' }],
};
const NO_DELETE_MODE: Rule = {
  ruleId: 'no-delete-mode',
  effect: 'deny',
  priority: 0,
  headerChecks: [{ name: { pattern: '^x-mode$' }, value: { pattern: '^delete$' }, presence: 'must_exist' }],
};
const ADMIN_DENY: Rule = {
  ruleId: 'no-admin',
  effect: 'deny',
  priority: 1,
  path: { path: { pattern: '/admin' }, presence: 'must_exist' },
  regexFlags: 'i',
};
// The costliest accepted pattern found, as an allow every value must satisfy.
const WORST = '(.{0,60}a){3}$';
const COSTLY: Rule = {
  ruleId: 'costly',
  effect: 'allow',
  priority: 1,
  body: [{ jsonPath: '$.items[*]', matchValue: { pattern: WORST }, presence: 'must_exist' }],
};

let bodyProxy: Written;
let queryProxy: Written;
let pathProxy: Written;
let costlyProxy: Written;
let otherTenant: Written;

beforeAll(async () => {
  upstream = await startRecordingUpstream();
  stack = await startLocalStack({ targetAllowlist: [`127.0.0.1:${upstream.port}`] });
  front = await startProxyFront(stack.deps, { onOutcome: (o) => outcomes.push(o) });
  const open = { proxyDefaultRuleEffect: 'allow', targetDefaultRuleEffect: 'allow' } as const;
  bodyProxy = await writeSnapshot(stack.deps, {
    targetBaseURL: `${upstream.url}/body`,
    rules: { proxy: [DENY_DELETE], target: [DENY_BIG_AMOUNT] },
    ...open,
  });
  queryProxy = await writeSnapshot(stack.deps, {
    targetBaseURL: `${upstream.url}/query`,
    rules: { proxy: [DRY_RUN_ONLY, NO_DELETE_MODE] },
  });
  pathProxy = await writeSnapshot(stack.deps, {
    targetBaseURL: `${upstream.url}/path`,
    rules: { proxyCredential: [INVENTORY_RULE], target: [ADMIN_DENY] },
  });
  costlyProxy = await writeSnapshot(stack.deps, {
    targetBaseURL: `${upstream.url}/costly`,
    rules: { proxy: [COSTLY] },
  });
  otherTenant = await writeSnapshot(stack.deps, { targetBaseURL: `${upstream.url}/other`, ...open });
});

afterAll(async () => {
  await front.close();
  await upstream.close();
  await stack.close();
});

const received = (prefix: string) => upstream.received.filter((r) => r.url.startsWith(prefix));

/** Every reading a lenient vendor might make of a received body: decoded, as JSON (any duplicate), as form. */
function lenientBodyText(r: Recorded): string {
  let bytes = r.body;
  const coding = String(r.headers['content-encoding'] ?? '');
  if (/gzip/.test(coding)) bytes = gunzipSync(bytes);
  let text = bytes.toString('utf8');
  try {
    text += ` ${decodeURIComponent(text.replace(/\+/g, ' '))}`;
  } catch {
    // not form-decodable; the raw text stands
  }
  return text.replace(/\\u005f/gi, '_').replace(/\\u0061/gi, 'a');
}

describe('bodies: nothing a body rule denies reaches the vendor', () => {
  const bad = '{"jsonrpc":"2.0","method":"tools/call","params":{"name":"delete_file"},"id":1}';
  const post = (body: string | Buffer, headers: Record<string, string> = {}, path = '/mcp') =>
    send(front.url, {
      method: 'POST',
      path: `/api/${bodyProxy.proxyId}${path}`,
      headers: { authorization: bodyProxy.proxyKey, ...headers },
      body,
    });

  const attacks: Array<[string, string | Buffer, Record<string, string>]> = [
    ['application/json', bad, { 'content-type': 'application/json' }],
    ['text/plain', bad, { 'content-type': 'text/plain' }],
    ['no content type', bad, {}],
    ['form content type', bad, { 'content-type': 'application/x-www-form-urlencoded' }],
    ['json with charset', bad, { 'content-type': 'application/json; charset=utf-8' }],
    ['vendor json type', bad, { 'content-type': 'application/vnd.api+json' }],
    ['a BOM', `\ufeff${bad}`, { 'content-type': 'application/json' }],
    ['trailing bytes', `${bad}garbage`, { 'content-type': 'application/json' }],
    ['a second document', `{"params":{"name":"ok"}}${bad}`, { 'content-type': 'application/json' }],
    [
      'duplicate keys',
      '{"params":{"name":"delete_file","name":"ok"}}',
      { 'content-type': 'application/json' },
    ],
    ['duplicate keys, last wins', '{"params":{"name":"ok","name":"delete_file"}}', {}],
    ['duplicate parents', '{"params":{"name":"ok"},"params":{"name":"delete_file"}}', {}],
    ['key in another case', '{"Params":{"NAME":"delete_file"}}', {}],
    ['escaped key and value', '{"p\\u0061rams":{"name":"delete\\u005ffile"}}', {}],
    ['amount duplicate', '{"amount":5,"amount":99999}', { 'content-type': 'application/json' }],
    ['amount as exponent', '{"amount":1e5}', {}],
    ['amount huge', '{"amount":99999999999999999999999}', {}],
    ['gzip', gzipSync(bad), { 'content-type': 'application/json', 'content-encoding': 'gzip' }],
    ['x-gzip', gzipSync(bad), { 'content-encoding': 'x-gzip' }],
    ['deflate', deflateSync(bad), { 'content-encoding': 'deflate' }],
    ['br', brotliCompressSync(bad), { 'content-encoding': 'br' }],
    ['gzip twice', gzipSync(gzipSync(bad)), { 'content-encoding': 'gzip, gzip' }],
    ['unknown coding', Buffer.from(bad), { 'content-encoding': 'compress' }],
    ['zip bomb', gzipSync(Buffer.alloc(8 * 1024 * 1024, 0x20)), { 'content-encoding': 'gzip' }],
    ['form field', 'params%5Bname%5D=delete_file', { 'content-type': 'application/x-www-form-urlencoded' }],
    ['form raw brackets', 'params[name]=delete_file', {}],
    ['form repeated', 'amount=5&amount=99999', { 'content-type': 'application/x-www-form-urlencoded' }],
    ['form encoded value', 'amount=%39%39%39%39', { 'content-type': 'application/x-www-form-urlencoded' }],
    [
      'multipart',
      '--x\r\nContent-Disposition: form-data; name="amount"\r\n\r\n99999\r\n--x--',
      {
        'content-type': 'multipart/form-data; boundary=x',
      },
    ],
    ['JSON-RPC batch', `[${bad}]`, { 'content-type': 'application/json' }],
    ['batch with a benign first', `[{"params":{"name":"read_file"}},${bad}]`, {}],
    ['nested batch', `[[${bad}]]`, {}],
    ['empty batch', '[]', {}],
    [
      'invalid UTF-8',
      Buffer.concat([Buffer.from('{"params":{"name":"delete_file'), Buffer.from([0xff]), Buffer.from('"}}')]),
      {},
    ],
    ['UTF-16', Buffer.from(bad, 'utf16le'), { 'content-type': 'application/json' }],
    ['deep nesting', `${'['.repeat(100)}${bad}${']'.repeat(100)}`, {}],
  ];

  it.each(attacks)('%s: refused, nothing sent', async (_name, body, headers) => {
    const before = received('/body').length;
    const res = await post(body, headers);
    expect([400, 403, 413]).toContain(res.status);
    expect(res.json().code).toMatch(/^proxy-/);
    expect(received('/body').length).toBe(before);
  });

  it('benign bodies pass, and what was checked is what is sent (gzip sent decoded)', async () => {
    const ok = '{"params":{"name":"read_file"},"amount":12}';
    expect((await post(ok, { 'content-type': 'application/json' })).status).toBe(200);
    expect(
      (await post('amount=5&note=hi', { 'content-type': 'application/x-www-form-urlencoded' })).status,
    ).toBe(200);
    expect((await post(`[${ok},${ok}]`, { 'content-type': 'application/json' })).status).toBe(200);
    const zipped = await post(gzipSync(ok), {
      'content-type': 'application/json',
      'content-encoding': 'gzip',
    });
    expect(zipped.status).toBe(200);
    const last = received('/body').at(-1)!;
    expect(last.body.toString()).toBe(ok);
    expect(last.headers['content-encoding']).toBeUndefined();
  });

  it('0 bypasses: no received body reads as delete_file or a 4-digit amount', () => {
    expect(received('/body').length).toBeGreaterThanOrEqual(4);
    const leaks = received('/body').filter((r) =>
      /delete_file|"?amount"?\W{1,3}\d{4}|\d\s*e\s*\d/i.test(lenientBodyText(r)),
    );
    expect(leaks).toEqual([]);
  });
});

describe('query pollution and header repetition', () => {
  const get = (query: string, headers: Record<string, string | string[]> = {}) =>
    send(front.url, {
      path: `/api/${queryProxy.proxyId}/v1/charges?${query}`,
      headers: { authorization: queryProxy.proxyKey, ...headers },
    });

  it.each([
    ['dry_run=true&dry_run=false', {}],
    ['dry_run=false&dry_run=true', {}],
    ['DRY_RUN=false&dry_run=true', {}],
    ['dry_run=true&Dry_Run=0', {}],
    ['dry_run=true', { 'x-mode': ['read', 'delete'] }],
    ['dry_run=true', { 'x-mode': 'read, delete' }],
    ['dry_run=true', { 'X-Mode': 'delete' }],
    ['dry_run=true', { 'x-mode': ['delete', 'read'] }],
  ])('%s %j: denied, nothing sent', async (query, headers) => {
    const before = received('/query').length;
    expect((await get(query, headers as Record<string, string | string[]>)).status).toBe(403);
    expect(received('/query').length).toBe(before);
  });

  it('a single dry_run=true passes, and 0 bypasses in what arrived', async () => {
    expect((await get('dry_run=true', { 'x-mode': 'read' })).status).toBe(200);
    const arrived = received('/query');
    expect(arrived.length).toBeGreaterThanOrEqual(1);
    for (const r of arrived) {
      const params = new URLSearchParams(r.url.split('?')[1]);
      const values = [...params].filter(([k]) => k.toLowerCase() === 'dry_run').map(([, v]) => v);
      expect(values).toEqual(['true']);
      expect(String(r.headers['x-mode'] ?? '')).not.toMatch(/delete/i);
    }
  });
});

describe('disguised dot segments', () => {
  it.each([
    '/v2/inventory/..%20/admin',
    '/v2/inventory/%20../admin',
    '/v2/inventory/%2e%2e%20/admin',
    '/v2/inventory/.%09./admin',
    '/v2/inventory/..%C2%A0/admin',
    '/v2/inventory/..%E2%80%8B/admin',
    '/v2/inventory/..%EF%BB%BF/admin',
    '/v2/inventory/.../admin',
    '/v2/inventory/%EF%BC%8E%EF%BC%8E/admin',
    '/v2/inventory/..%E2%80%8B/..%E2%80%8B/secrets',
  ])('%s: 400, nothing sent', async (path) => {
    const before = received('/path').length;
    const res = await send(front.url, {
      path: `/api/${pathProxy.proxyId}${path}`,
      headers: { authorization: pathProxy.proxyKey },
    });
    expect(res.status).toBe(400);
    expect(received('/path').length).toBe(before);
  });

  it('a plain inventory path passes; everything that arrived stays under /v2/inventory once trimmed', async () => {
    expect(
      (
        await send(front.url, {
          path: `/api/${pathProxy.proxyId}/v2/inventory/items`,
          headers: { authorization: pathProxy.proxyKey },
        })
      ).status,
    ).toBe(200);
    for (const r of received('/path')) {
      const segments = decodeURIComponent(r.url.split('?')[0]!.slice('/path'.length))
        .normalize('NFKC')
        .split('/')
        .map((s) => s.replace(/[\s\p{Cf}\p{Default_Ignorable_Code_Point}]/gu, ''));
      expect(segments).not.toContain('..');
      expect(segments.join('/')).toMatch(/^\/v2\/inventory\//);
    }
  });
});

describe('bounded rule cost', () => {
  it('the costliest pattern on the largest inputs: refused within the bound, another tenant unaffected', async () => {
    const size = compilePattern(WORST).programSize();
    // Values as long as one run may take; enough of them to exhaust the budget several times over.
    const valueLength = Math.floor(RULE_WORK_BUDGET / size) - 1;
    const items = Array.from({ length: 200 }, () => 'a'.repeat(valueLength));
    const body = JSON.stringify({ items });
    const costly = () =>
      send(front.url, {
        method: 'POST',
        path: `/api/${costlyProxy.proxyId}/v1/x`,
        headers: { authorization: costlyProxy.proxyKey, 'content-type': 'application/json' },
        body,
      });
    const other = () =>
      send(front.url, {
        path: `/api/${otherTenant.proxyId}/v1/ping`,
        headers: { authorization: otherTenant.proxyKey },
      });
    // Baseline: the other tenant alone.
    expect((await other()).status).toBe(200);
    const answers = await Promise.all([costly(), costly(), costly(), other(), costly(), other()]);
    for (const a of [answers[0], answers[1], answers[2], answers[4]]) {
      expect(a!.status).toBe(400);
      expect(a!.json().code).toBe('proxy-rule-budget-exceeded');
    }
    expect(answers[3]!.status).toBe(200);
    expect(answers[5]!.status).toBe(200);
    expect(received('/costly')).toHaveLength(0);
    const costlyOutcomes = outcomes.filter((o) => o.proxyId === costlyProxy.proxyId);
    const worstMs = Math.max(...costlyOutcomes.map((o) => o.durations.rulesMs ?? 0));
    // Calibrate this machine now: ns per step of the same pattern on a run of known cost.
    const { WorkMeter } = await import('../../lambdas/rules/evaluator.ts');
    const calibrate = () => {
      const meter = new WorkMeter(Number.MAX_SAFE_INTEGER, Number.POSITIVE_INFINITY);
      const t0 = performance.now();
      meter.finds(WORST, 'a'.repeat(valueLength), '');
      return ((performance.now() - t0) * 1e6) / meter.steps;
    };
    calibrate();
    const nsPerStep = calibrate();
    process.stdout.write(
      `costly request rules: ${costlyOutcomes.map((o) => o.durations.rulesMs?.toFixed(1)).join(', ')} ms; worst ${worstMs.toFixed(1)} ms (${nsPerStep.toFixed(1)} ns/step)\n`,
    );
    // The 50 ms bound at the design speed (55 ns/step), scaled if this machine is slower right now.
    expect(worstMs).toBeLessThan(50 * Math.max(1, nsPerStep / 55) * 2);
  });
});
