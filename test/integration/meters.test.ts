import type { IncomingMessage } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import OpenAI from 'openai';
import type { ProxyOutcome } from '../../lambdas/data-plane/outcome.ts';
import { telemetryHook } from '../../lambdas/data-plane/telemetry-hook.ts';
import type { HttpFront } from '../../local/http-front.ts';
import { deferred, type FakeVendor, startFakeVendor, startSse } from '../helpers/fake-vendors.ts';
import { startTestGateway, type TestGateway } from '../helpers/local.ts';
import { captureLogs } from '../helpers/logs.ts';
import { REGION, startProxyFront } from '../helpers/proxy-fixtures.ts';

// Exhausted and over-limit meters log their metric lines on purpose: their WARN/ERROR lines go to a capture, not the output.
const logs = captureLogs();
afterAll(() => logs.restore());

/**
 * Meters (docs/meters.md) end to end: meters made through the Core API, a fake OpenAI-style vendor
 * (streamed and buffered answers, usage as OpenAI reports it) called through the real `openai` SDK,
 * TWO proxy handler instances (each with its own leases) on one embedded store, the telemetry
 * pipeline on. Each call's outcome is emitted once its meter values are counted, so the tests wait
 * for outcomes (a barrier), never for time.
 */
let gw: TestGateway;
let vendor: FakeVendor;
const fronts: HttpFront[] = [];
const outcomes: ProxyOutcome[] = [];
/** The two proxy instances: each its own handler, limiter and leases; both emit telemetry. */
let instances: string[] = [];

/** Requests of a model ending in `-held` wait at the vendor until the gate opens. */
let gate = deferred();
let arrivals = 0;

beforeAll(async () => {
  vendor = await startFakeVendor();
  vendor.handle = openAiLike;
  gw = await startTestGateway({ targetAllowlist: [new URL(vendor.url).host] });
  const emit = telemetryHook(gw.stack.telemetry!);
  for (let i = 0; i < 2; i++) {
    const front = await startProxyFront(gw.stack.deps, {
      dependencyTimeoutMs: 30_000,
      onOutcome: (o) => {
        outcomes.push(o);
        emit(o);
      },
    });
    fronts.push(front);
  }
  instances = fronts.map((f) => f.url);
});

afterAll(async () => {
  gate.resolve();
  await Promise.all(fronts.map((f) => f.close()));
  await gw?.close();
  await vendor?.close();
});

async function bodyOf(req: IncomingMessage): Promise<Record<string, any>> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

/** OpenAI's chat completions: model `tokens-<n>[-held]` answers with usage.total_tokens = n. */
async function openAiLike(req: IncomingMessage, res: import('node:http').ServerResponse) {
  const body = await bodyOf(req);
  const model = String(body.model);
  const total = Number(/^tokens-(\d+)/.exec(model)?.[1] ?? 0);
  arrivals++;
  if (model.endsWith('-held')) await gate.promise;
  const usage = { prompt_tokens: 7, completion_tokens: total - 7, total_tokens: total };
  const base = { id: 'chatcmpl-1', created: 0, model };
  if (body.stream) {
    startSse(res);
    const delta = { index: 0, delta: { role: 'assistant', content: 'hi' }, finish_reason: null };
    res.write(`data: ${JSON.stringify({ ...base, object: 'chat.completion.chunk', choices: [delta] })}\n\n`);
    if (body.stream_options?.include_usage)
      res.write(
        `data: ${JSON.stringify({ ...base, object: 'chat.completion.chunk', choices: [], usage })}\n\n`,
      );
    res.end('data: [DONE]\n\n');
    return;
  }
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(
    JSON.stringify({
      ...base,
      object: 'chat.completion',
      choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }],
      usage,
    }),
  );
}

/** Resolves once `predicate` holds (outcomes arrive after each call's values are counted). */
async function until(predicate: () => boolean, what: string) {
  const deadline = Date.now() + 60_000; // a safety net on a loaded machine, not a timing assertion
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

interface Proxy {
  proxyId: string;
  key: string;
  targetCredentialId: string;
}

const base = () => `/clients/${gw.admin.clientId}`;

/** A proxy made through the Core API, on a new target credential unless one is given. */
async function makeProxy(name: string, targetCredentialId?: string): Promise<Proxy> {
  const pc = await gw.api('POST', `${base()}/credentials`, {
    body: {
      credentialType: 'proxy',
      credentialAuthType: 'apiKey',
      credentialName: `${name}-key`,
      credentialRegion: REGION,
    },
  });
  const target = await gw.api('POST', `${base()}/targets`, {
    body: {
      targetName: name,
      targetBaseURL: vendor.url,
      targetRegion: REGION,
      targetDefaultRuleEffect: 'allow',
    },
  });
  let tcId = targetCredentialId;
  if (!tcId) {
    const tc = await gw.api('POST', `${base()}/credentials`, {
      body: {
        credentialType: 'target',
        credentialAuthType: 'bearer',
        credentialName: `${name}-vendor`,
        credentialRegion: REGION,
        credentialSecret: { token: 'sk-vendor-secret-0123456789' },
      },
    });
    tcId = tc.body.credentialId as string;
  }
  const proxy = await gw.api('POST', `${base()}/proxies`, {
    body: {
      proxyName: name,
      proxyRegion: REGION,
      proxyProxyCredentialId: pc.body.credentialId,
      proxyTargetId: target.body.targetId,
      proxyTargetCredentialId: tcId,
      proxyDefaultRuleEffect: 'allow',
      proxyMaxRequestsPerMinute: 100_000,
    },
  });
  expect(proxy.status).toBe(201);
  return { proxyId: proxy.body.proxyId, key: pc.body.credentialSecret.key, targetCredentialId: tcId };
}

async function addMeter(parent: string, meter: Record<string, unknown>): Promise<string> {
  const res = await gw.api('POST', `${base()}/${parent}/meters`, { body: meter });
  expect(res.status).toBe(201);
  return res.body.meterId;
}

function sdk(url: string, p: Proxy) {
  return new OpenAI({ apiKey: p.key, baseURL: `${url}/api/${p.proxyId}/v1`, maxRetries: 0 });
}

type Result =
  | { ok: true; tokens: number }
  | { ok: false; status: number; code?: string; retryAfter?: string };

/** One chat completion through the SDK, streamed (with include_usage) or not; waits for its outcome. */
async function chat(url: string, p: Proxy, model: string, stream: boolean): Promise<Result> {
  const seen = outcomes.length;
  const result = await chatOnly(url, p, model, stream);
  await until(() => outcomes.length > seen, 'the call outcome');
  return result;
}

async function chatOnly(
  url: string,
  p: Proxy,
  model: string,
  stream: boolean,
  includeUsage = true,
): Promise<Result> {
  const client = sdk(url, p);
  const messages = [{ role: 'user' as const, content: 'hello' }];
  try {
    if (stream) {
      const events = await client.chat.completions.create({
        model,
        messages,
        stream: true,
        stream_options: { include_usage: includeUsage },
      });
      let tokens = 0;
      for await (const event of events) tokens = event.usage?.total_tokens ?? tokens;
      return { ok: true, tokens };
    }
    const answer = await client.chat.completions.create({ model, messages });
    return { ok: true, tokens: answer.usage?.total_tokens ?? 0 };
  } catch (error) {
    if (!(error instanceof OpenAI.APIError)) throw error;
    return {
      ok: false,
      status: error.status ?? 0,
      code: error.code ?? undefined,
      retryAfter: error.headers?.get('retry-after') ?? undefined,
    };
  }
}

const meterValues = (meterId: string) =>
  outcomes.flatMap((o) => o.meters ?? []).filter((m) => m.meterId === meterId);

describe('meters', () => {
  it('a daily token budget blocks once spent, streamed and buffered, across two instances; spent stays within limit + instances × (value − 1)', async () => {
    const p = await makeProxy('budget');
    const LIMIT = 1000;
    const PER_CALL = 150;
    const meterId = await addMeter(`proxies/${p.proxyId}`, {
      meterName: 'openai tokens per day',
      meterType: 'response_value',
      valuePath: '$.usage.total_tokens',
      window: 'day',
      limit: LIMIT,
      action: 'block',
    });
    let served = 0;
    const refusedOn = new Set<number>();
    let i = 0;
    // Alternate instances and streamed/buffered until both instances refuse.
    while (refusedOn.size < 2) {
      const which = i % 2;
      const r = await chat(instances[which]!, p, `tokens-${PER_CALL}`, i % 4 < 2);
      i++;
      if (r.ok) {
        expect(refusedOn.has(which)).toBe(false); // once refused, an instance stays refused
        expect(r.tokens).toBe(PER_CALL);
        served += r.tokens;
      } else {
        expect(r).toMatchObject({ status: 429, code: 'proxy-meter-exhausted' });
        const dayEnd = Date.UTC(
          new Date().getUTCFullYear(),
          new Date().getUTCMonth(),
          new Date().getUTCDate() + 1,
        );
        const retryAfter = Number(r.retryAfter);
        expect(retryAfter).toBeGreaterThanOrEqual(1);
        expect(retryAfter).toBeLessThanOrEqual(Math.ceil((dayEnd - Date.now()) / 1000) + 5);
        expect(retryAfter).toBeGreaterThan(Math.ceil((dayEnd - Date.now()) / 1000) - 120);
        refusedOn.add(which);
      }
      expect(i).toBeLessThan(40);
    }
    // Every unit below the limit was spent (both instances drained), and the overshoot is bounded:
    // sequential calls, so one call in flight per instance when its share ran out.
    expect(served).toBeGreaterThanOrEqual(LIMIT);
    expect(served).toBeLessThanOrEqual(LIMIT + 2 * (PER_CALL - 1));
    // The request log records carry the values counted: exactly what was served.
    const counted = meterValues(meterId);
    expect(counted.filter((m) => !m.blocked).reduce((s, m) => s + m.value, 0)).toBe(served);
    expect(counted.filter((m) => m.blocked).length).toBe(2);

    // The telemetry API shows the meter per window (the pipeline is at-least-once, counts exact).
    const day = await telemetryMeter(p, meterId, 'day', (m) => m.value === served && m.blocked === 2);
    expect(day).toMatchObject({ meterId, value: served, blocked: 2 });
  });

  it('overshoot: N calls in flight released together all finish, spent ≤ limit + N × (value − 1), then 429', async () => {
    const p = await makeProxy('overshoot');
    const LIMIT = 1000;
    const N = 8;
    const PER_CALL = 100;
    const meterId = await addMeter(`proxies/${p.proxyId}`, {
      meterName: 'tokens per hour',
      meterType: 'response_value',
      valuePath: '$.usage.total_tokens',
      window: 'hour',
      limit: LIMIT,
    });
    // 950 of 1000 spent first, so the calls in flight run past the limit.
    expect(await chat(instances[0]!, p, 'tokens-950', false)).toEqual({ ok: true, tokens: 950 });
    gate = deferred();
    arrivals = 0;
    const seen = outcomes.length;
    // N calls, split over the two instances, all held at the vendor until every one has arrived.
    const calls = Array.from({ length: N }, (_, i) =>
      chatOnly(instances[i % 2]!, p, `tokens-${PER_CALL}-held`, i % 2 === 0),
    );
    await until(() => arrivals === N, 'every call at the vendor');
    gate.resolve();
    const results = await Promise.all(calls);
    await until(() => outcomes.length >= seen + N, 'the outcomes');
    // All N were admitted (budget left when they started): the overshoot is real...
    expect(results.every((r) => r.ok)).toBe(true);
    const spent = meterValues(meterId).reduce((s, m) => s + m.value, 0);
    expect(spent).toBe(950 + N * PER_CALL);
    // ...and within the bound stated in docs/meters.md.
    expect(spent).toBeGreaterThan(LIMIT);
    expect(spent).toBeLessThanOrEqual(LIMIT + N * (PER_CALL - 1));
    expect(meterValues(meterId).filter((m) => m.overLimit).length).toBeGreaterThan(0);
    // Now the budget is known spent on both instances: refused before anything goes out.
    arrivals = 0;
    for (const url of instances)
      expect(await chat(url, p, 'tokens-1', true)).toMatchObject({
        ok: false,
        status: 429,
        code: 'proxy-meter-exhausted',
      });
    expect(arrivals).toBe(0);
  });

  it('a flag meter never blocks: it marks the calls past its limit and raises the meter_over_limit flag', async () => {
    const p = await makeProxy('flagged');
    const meterId = await addMeter(`proxies/${p.proxyId}`, {
      meterName: 'soft token budget',
      meterType: 'response_value',
      valuePath: '$.usage.total_tokens',
      window: 'minute',
      limit: 100,
      action: 'flag',
    });
    for (let i = 0; i < 6; i++)
      expect(await chat(instances[i % 2]!, p, 'tokens-40', i % 2 === 1)).toEqual({ ok: true, tokens: 40 });
    const counted = meterValues(meterId);
    expect(counted.reduce((s, m) => s + m.value, 0)).toBe(240);
    expect(counted.filter((m) => m.overLimit).length).toBeGreaterThanOrEqual(3);
    expect(counted.some((m) => m.blocked)).toBe(false);
    const res = await untilTelemetry(p, 'minute', (buckets) =>
      buckets.some((b) => b.anomalies?.some((a: { type: string }) => a.type === 'meter_over_limit')),
    );
    const flag = res.flatMap((b) => b.anomalies).find((a: { type: string }) => a.type === 'meter_over_limit');
    expect(flag).toMatchObject({ meterId });
  });

  it('a request_count meter on a target credential is one budget for every proxy of that secret', async () => {
    const a = await makeProxy('shared-a');
    const b = await makeProxy('shared-b', a.targetCredentialId);
    await addMeter(`credentials/${a.targetCredentialId}`, {
      meterName: 'vendor calls per minute',
      meterType: 'request_count',
      window: 'minute',
      limit: 4,
      methods: ['POST'],
      pathPattern: '^/v1/chat/',
    });
    const statuses: Array<boolean> = [];
    for (let i = 0; i < 6; i++)
      statuses.push((await chat(instances[i % 2]!, i < 3 ? a : b, 'tokens-5', false)).ok);
    expect(statuses).toEqual([true, true, true, true, false, false]);
    // A path the meter does not cover still passes.
    const other = await fetch(`${instances[0]}/api/${b.proxyId}/v1/models`, {
      headers: { authorization: b.key },
    });
    expect(other.status).not.toBe(429);
  });

  it('the rule docs/meters.md recommends refuses OpenAI streams that would carry no usage', async () => {
    const p = await makeProxy('usage-rule');
    const rule = await gw.api('POST', `${base()}/proxies/${p.proxyId}/rules`, {
      body: {
        effect: 'deny',
        priority: 1,
        methods: ['POST'],
        body: [
          { jsonPath: '$.stream', matchValue: { pattern: '^true$' } },
          {
            jsonPath: '$.stream_options.include_usage',
            matchValue: { pattern: '^true$' },
            presence: 'must_not_exist',
          },
        ],
      },
    });
    expect(rule.status).toBe(201);
    expect(await chatOnly(instances[0]!, p, 'tokens-5', true, false)).toMatchObject({
      ok: false,
      status: 403,
    });
    expect(await chatOnly(instances[0]!, p, 'tokens-5', true, true)).toEqual({ ok: true, tokens: 5 });
    expect(await chatOnly(instances[0]!, p, 'tokens-5', false)).toEqual({ ok: true, tokens: 5 });
  });

  it('costs no store write per call in steady state: meter claims per call ≤ 0.05 at 10 calls/s (fake clock)', async () => {
    const p = await makeProxy('steady');
    await addMeter(`proxies/${p.proxyId}`, {
      meterName: 'tokens/day',
      meterType: 'response_value',
      valuePath: '$.usage.total_tokens',
      window: 'day',
      limit: 100_000_000,
    });
    // One more instance on a fake clock (10 calls/s, in today's window) counting its meter claims.
    const cell = gw.stack.deps.cells[REGION]!;
    const clock = { ms: Date.now() };
    let meterWrites = 0;
    const ddb = {
      send: (
        command: { constructor: { name: string }; input: { Key?: { pk?: string } } },
        ...rest: unknown[]
      ) => {
        if (command.constructor.name === 'UpdateCommand' && command.input.Key?.pk?.startsWith('LIMIT#METER#'))
          meterWrites++;
        return (cell.ddb.send as (...a: unknown[]) => Promise<unknown>)(command, ...rest);
      },
    };
    const seen: ProxyOutcome[] = [];
    const front = await startProxyFront(
      {
        ...gw.stack.deps,
        now: () => new Date(clock.ms),
        cells: { [REGION]: { ...cell, ddb: ddb as never } },
      },
      { dependencyTimeoutMs: 30_000, onOutcome: (o) => seen.push(o) },
    );
    fronts.push(front);
    const CALLS = 300;
    const WARM_UP = 50;
    let writesAfterWarmUp = 0;
    for (let i = 0; i < CALLS; i++) {
      if (i === WARM_UP) writesAfterWarmUp = meterWrites;
      expect(await chatOnly(front.url, p, 'tokens-150', i % 2 === 0)).toEqual({ ok: true, tokens: 150 });
      await until(() => seen.length > i, 'the outcome');
      clock.ms += 100;
    }
    const perCall = (meterWrites - writesAfterWarmUp) / (CALLS - WARM_UP);
    expect(perCall).toBeLessThanOrEqual(0.05);
    expect(seen.flatMap((o) => o.meters ?? []).reduce((s, m) => s + m.value, 0)).toBe(CALLS * 150);
  });

  it('bad meter definitions are a 400 naming the field; meters need a target credential; at most 10 per parent', async () => {
    const p = await makeProxy('validation');
    const good = {
      meterName: 'm',
      meterType: 'response_value',
      valuePath: '$.usage.total_tokens',
      window: 'day',
      limit: 10,
    };
    const bad: Array<[Record<string, unknown>, string]> = [
      [{ ...good, valuePath: undefined }, 'valuePath'],
      [{ ...good, valuePath: '$..usage' }, 'valuePath'],
      [{ ...good, valuePath: '$.choices[*].x' }, 'valuePath'],
      [{ ...good, valuePath: "$['usage']" }, 'valuePath'],
      [{ ...good, valuePath: 'usage.total_tokens' }, 'valuePath'],
      [{ ...good, meterType: 'request_count' }, 'valuePath'],
      [{ ...good, meterType: 'tokens' }, 'meterType'],
      [{ ...good, window: 'week' }, 'window'],
      [{ ...good, limit: 0 }, 'limit'],
      [{ ...good, limit: 1.5 }, 'limit'],
      [{ ...good, action: 'warn' }, 'action'],
      [{ ...good, methods: ['FETCH'] }, 'methods'],
      [{ ...good, pathPattern: '(' }, 'pathPattern'],
      [{ ...good, extra: 1 }, ''],
      [{ ...good, meterName: '' }, 'meterName'],
    ];
    for (const [body, field] of bad) {
      const res = await gw.api('POST', `${base()}/proxies/${p.proxyId}/meters`, { body });
      expect({ body, status: res.status }).toEqual({ body, status: 400 });
      expect(res.text).toContain(field);
      expect(res.text).not.toMatch(/stack|at \//);
    }
    const proxyCredential = await gw.api('GET', `${base()}/proxies/${p.proxyId}`);
    const onProxyKey = await gw.api(
      'POST',
      `${base()}/credentials/${proxyCredential.body.proxyProxyCredentialId}/meters`,
      {
        body: good,
      },
    );
    expect(onProxyKey.status).toBe(400);
    expect((await gw.api('POST', `${base()}/proxies/no-such-proxy/meters`, { body: good })).status).toBe(404);
    // CRUD round trip, then the cap.
    const id = await addMeter(`proxies/${p.proxyId}`, good);
    const got = await gw.api('GET', `${base()}/proxies/${p.proxyId}/meters/${id}`);
    expect(got.body).toMatchObject({ ...good, meterId: id, action: 'block' });
    const put = await gw.api('PUT', `${base()}/proxies/${p.proxyId}/meters/${id}`, {
      body: { ...got.body, limit: 20 },
    });
    expect(put.status).toBe(200);
    expect(put.body.limit).toBe(20);
    for (let i = 1; i < 10; i++) await addMeter(`proxies/${p.proxyId}`, { ...good, meterName: `m${i}` });
    const over = await gw.api('POST', `${base()}/proxies/${p.proxyId}/meters`, { body: good });
    expect(over.status).toBe(409);
    const list = await gw.api('GET', `${base()}/proxies/${p.proxyId}/meters`);
    expect(list.body.meters).toHaveLength(10);
    expect((await gw.api('DELETE', `${base()}/proxies/${p.proxyId}/meters/${id}`)).status).toBe(204);
    expect((await gw.api('GET', `${base()}/proxies/${p.proxyId}/meters/${id}`)).status).toBe(404);
    // In the OpenAPI document.
    const doc = await gw.api('GET', '/openapi.json', { token: null });
    expect(Object.keys(doc.body.paths)).toEqual(
      expect.arrayContaining([
        '/clients/{clientId}/proxies/{proxyId}/meters/{meterId}',
        '/clients/{clientId}/credentials/{credentialId}/meters',
      ]),
    );
  });
});

async function untilTelemetry(p: Proxy, interval: string, done: (buckets: any[]) => boolean): Promise<any[]> {
  let buckets: any[] = [];
  await untilAsync(async () => {
    const res = await gw.api('GET', `${base()}/proxies/${p.proxyId}/telemetry?interval=${interval}&limit=2`);
    buckets = res.body?.buckets ?? [];
    return done(buckets);
  }, 'telemetry');
  return buckets;
}

async function telemetryMeter(p: Proxy, meterId: string, interval: string, done: (m: any) => boolean) {
  const find = (buckets: any[]) =>
    buckets.flatMap((b) => b.meters ?? []).find((m: { meterId: string }) => m.meterId === meterId);
  return find(await untilTelemetry(p, interval, (buckets) => done(find(buckets) ?? {})));
}

async function untilAsync(predicate: () => Promise<boolean>, what: string) {
  const deadline = Date.now() + 60_000; // safety net only
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
