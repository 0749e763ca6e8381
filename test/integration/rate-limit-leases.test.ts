import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { maxBlock, RateLimiter } from '../../lambdas/data-plane/rate-limit.ts';
import type { Deps } from '../../lambdas/shared/deps.ts';
import type { HttpFront } from '../../local/http-front.ts';
import { type LocalStack, startLocalStack } from '../../local/stack.ts';
import {
  INVENTORY_RULE,
  putSnapshot,
  REGION,
  type RecordingUpstream,
  send,
  startProxyFront,
  startRecordingUpstream,
  type Written,
  writeSnapshot,
} from '../helpers/proxy-fixtures.ts';

/**
 * Token leases (lambdas/data-plane/rate-limit.ts, docs/hot-path.md): several proxy handler
 * instances, each with its own limiter, share one embedded store. Clocks are fake (deps.now), so
 * windows and observed rates do not depend on the machine's speed.
 */
let stack: LocalStack;
let upstream: RecordingUpstream;
const fronts: HttpFront[] = [];

beforeAll(async () => {
  upstream = await startRecordingUpstream();
  stack = await startLocalStack({ targetAllowlist: [`127.0.0.1:${upstream.port}`], telemetryPoller: false });
});

afterAll(async () => {
  await Promise.all(fronts.map((f) => f.close()));
  await upstream.close();
  await stack.close();
});

/** A fake clock: `at` milliseconds into the first minute of 2030 (a fresh window every test). */
function clock(startMs: number) {
  const c = { ms: startMs, now: () => new Date(c.ms) };
  return c;
}
let minute = 0;
const nextMinuteStart = () => Date.UTC(2030, 0, 1, 0, ++minute, 0);

/** Store calls by command name, and an optional barrier that holds the first `n` claims. */
function countingDdb(barrier?: { n: number }) {
  const real = stack.deps.cells[REGION]!.ddb;
  const calls: Record<string, number> = {};
  let held: Array<() => void> = [];
  const ddb = {
    send: async (command: { constructor: { name: string } }, ...rest: unknown[]) => {
      const name = command.constructor.name;
      calls[name] = (calls[name] ?? 0) + 1;
      if (name === 'UpdateCommand' && barrier && barrier.n > 0) {
        // Every instance's first claim waits for the others: they all reach the store together.
        await new Promise<void>((release) => {
          held.push(release);
          if (held.length >= barrier.n) {
            barrier.n = 0;
            for (const r of held) r();
            held = [];
          }
        });
      }
      return (real.send as (...a: unknown[]) => Promise<unknown>)(command, ...rest);
    },
  };
  return { ddb: ddb as unknown as DynamoDBDocumentClient, calls };
}

function depsWith(ddb: DynamoDBDocumentClient, now: () => Date): Deps {
  const cell = stack.deps.cells[REGION]!;
  return { ...stack.deps, now, cells: { [REGION]: { ...cell, ddb } } };
}

async function instance(deps: Deps, limiter?: RateLimiter): Promise<string> {
  // A generous store deadline: a safety net on a loaded machine, not a timing assertion.
  const f = await startProxyFront(deps, { rateLimiter: limiter, dependencyTimeoutMs: 30_000 });
  fronts.push(f);
  return f.url;
}

const call = (url: string, p: Written, tag: string, key = p.proxyKey) =>
  send(url, { path: `/api/${p.proxyId}/v2/inventory/${tag}`, headers: { authorization: key } }).then(
    (r) => r.status,
  );

const forwarded = (p: Written) => upstream.received.filter((r) => r.url.includes(`/${p.proxyId}-`)).length;

/** Sends to one instance, one request at a time, until it answers 429; returns how many passed. */
async function drain(url: string, p: Written): Promise<number> {
  let passed = 0;
  for (;;) {
    const status = await call(url, p, `${p.proxyId}-drain`);
    if (status === 429) return passed;
    expect(status).toBe(200);
    passed++;
  }
}

describe('token leases', () => {
  it('never lets more than the limit pass across 4 instances, over 20 runs with barriers; under-admission within its bound, none once every instance is drained', async () => {
    const INSTANCES = 4;
    const limits = [1, 5, 20, 64, 130];
    let overAdmissions = 0;
    for (let run = 0; run < 20; run++) {
      const limit = limits[run % limits.length]!;
      const c = clock(nextMinuteStart() + 1000);
      const barrier = { n: INSTANCES };
      const { ddb } = countingDdb(barrier);
      const deps = depsWith(ddb, c.now);
      const urls = await Promise.all(Array.from({ length: INSTANCES }, () => instance(deps)));
      const p = await writeSnapshot(stack.deps, {
        targetBaseURL: upstream.url,
        rules: { proxyCredential: [INVENTORY_RULE] },
        perMinute: limit,
        perDay: limit * 50,
      });
      const demand = Math.ceil(limit * 1.5) + INSTANCES;
      const statuses = await Promise.all(
        Array.from({ length: demand }, (_, i) => {
          c.ms += 1; // the traffic of a busy second
          return call(urls[i % INSTANCES]!, p, `${p.proxyId}-${i}`);
        }),
      );
      const passed = statuses.filter((s) => s === 200).length;
      expect({ run, limit, statuses: statuses.filter((s) => s !== 200 && s !== 429) }).toEqual({
        run,
        limit,
        statuses: [],
      });
      if (passed > limit || forwarded(p) > limit) overAdmissions++;
      // Lost: at most what the instances hold (1.25 blocks each), never more.
      expect(passed).toBeGreaterThanOrEqual(limit - INSTANCES * Math.ceil(1.25 * maxBlock('minute', limit)));
      // Each instance, asked until it refuses, spends what it holds: the window's budget, exactly.
      let drained = 0;
      for (const url of urls) drained += await drain(url, p);
      expect(passed + drained).toBe(limit);
      expect(forwarded(p)).toBe(limit);
    }
    expect(overAdmissions).toBe(0);
  }, 240_000);

  it('lets unauthenticated calls burn nothing: no claim, no store write, the whole budget left', async () => {
    const c = clock(nextMinuteStart() + 1000);
    const { ddb, calls } = countingDdb();
    const url = await instance(depsWith(ddb, c.now));
    const p = await writeSnapshot(stack.deps, {
      targetBaseURL: upstream.url,
      rules: { proxyCredential: [INVENTORY_RULE] },
      perMinute: 7,
    });
    const flood = await Promise.all(
      Array.from({ length: 40 }, (_, i) => call(url, p, `${p.proxyId}-x${i}`, 'kg_live_wrong')),
    );
    expect(flood.every((s) => s === 401)).toBe(true);
    expect(calls.UpdateCommand ?? 0).toBe(0);
    expect(calls.GetCommand).toBe(40);
    expect(await drain(url, p)).toBe(7);
  });

  it('applies a lowered limit on the very next request of every instance (at most max(new limit, passed) pass), and a raised one at once', async () => {
    const c = clock(nextMinuteStart() + 1000);
    const { ddb } = countingDdb();
    const deps = depsWith(ddb, c.now);
    const urls = [await instance(deps), await instance(deps)];
    const p = await writeSnapshot(stack.deps, {
      targetBaseURL: upstream.url,
      rules: { proxyCredential: [INVENTORY_RULE] },
      perMinute: 600,
    });
    for (let i = 0; i < 40; i++) {
      c.ms += 20;
      expect(await call(urls[i % 2]!, p, `${p.proxyId}-a${i}`)).toBe(200);
    }
    // Both instances hold leases, some of them with indices below 40 (they interleave). Lowered to
    // 40 with 40 passed: nothing more passes anywhere, not even the low indices an instance holds.
    await putSnapshot(stack.deps, { ...p.snapshot, proxyMaxRequestsPerMinute: 40, version: 2 });
    for (let i = 0; i < 6; i++) expect(await call(urls[i % 2]!, p, `${p.proxyId}-b${i}`)).toBe(429);
    expect(forwarded(p)).toBe(40);
    // Raised back to 600: requests pass again on both instances, at once; the tokens dropped at the
    // lowering are lost for this window, at most 1.25 blocks per instance.
    await putSnapshot(stack.deps, { ...p.snapshot, proxyMaxRequestsPerMinute: 600, version: 3 });
    for (const url of urls) expect(await call(url, p, `${p.proxyId}-c`)).toBe(200);
    const more = (await drain(urls[0]!, p)) + (await drain(urls[1]!, p));
    expect(forwarded(p)).toBe(42 + more);
    expect(forwarded(p)).toBeLessThanOrEqual(600);
    expect(forwarded(p)).toBeGreaterThanOrEqual(600 - 2 * Math.ceil(1.25 * maxBlock('minute', 600)));
  });

  it('costs at most 0.05 store writes per request at steady state with the default limits (600/min, 100,000/day)', async () => {
    // Traffic at exactly the minute limit's pace (10 req/s): the whole minute budget is spent.
    const c = clock(nextMinuteStart());
    const { ddb, calls } = countingDdb();
    const limiter = new RateLimiter({ ...stack.deps.cells[REGION]!, ddb });
    const url = await instance(depsWith(ddb, c.now), limiter);
    const p = await writeSnapshot(stack.deps, {
      targetBaseURL: upstream.url,
      rules: { proxyCredential: [INVENTORY_RULE] },
      perMinute: 600,
      perDay: 100_000,
    });
    const statuses: number[] = [];
    for (let i = 0; i < 600; i++) {
      c.ms += 99;
      statuses.push(await call(url, p, `${p.proxyId}-${i}`));
    }
    expect(statuses.filter((s) => s === 200)).toHaveLength(600);
    expect(await call(url, p, `${p.proxyId}-over`)).toBe(429);
    const writes = calls.UpdateCommand ?? 0;
    expect(writes / 601).toBeLessThanOrEqual(0.05);
    expect(writes).toBe(limiter.stats.claims);
    // One snapshot read per request; a request rarely waits for a claim (prefetched in the background).
    expect(calls.GetCommand).toBe(601);
    expect(limiter.stats.inlineClaims / 601).toBeLessThanOrEqual(0.02);
  });
});
