import { createServer, type Server, type Socket } from 'node:net';
import type { KMSClient } from '@aws-sdk/client-kms';
import { type DynamoDBDocumentClient, PutCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, beforeEach, describe, expect, it, jest } from '@jest/globals';
import { createKmsClient } from '../../lambdas/crypto/kms-client.ts';
import type { ProxyOutcome } from '../../lambdas/data-plane/outcome.ts';
import type { ProxyHandlerOptions } from '../../lambdas/data-plane/proxy-api.ts';
import type { Deps } from '../../lambdas/shared/deps.ts';
import { createDocumentClient } from '../../lambdas/storage/dynamodb-client.ts';
import { keys } from '../../lambdas/storage/keys.ts';
import type { HttpFront } from '../../local/http-front.ts';
import { type LocalStack, startLocalStack } from '../../local/stack.ts';
import { captureLogs } from '../helpers/logs.ts';
import {
  buildSnapshot,
  deleteSnapshot,
  INVENTORY_RULE,
  putSnapshot,
  REGION,
  type RecordingUpstream,
  send,
  startProxyFront,
  startRecordingUpstream,
  writeSnapshot,
} from '../helpers/proxy-fixtures.ts';

// Faults are provoked on purpose here: their WARN/ERROR lines go to a capture, not the test output.
const logs = captureLogs();
afterAll(() => logs.restore());

let stack: LocalStack;
let upstream: RecordingUpstream;
const fronts: HttpFront[] = [];
const servers: Server[] = [];
const credentials = { accessKeyId: 'local', secretAccessKey: 'local' };

let lastOutcome: ProxyOutcome | undefined;
async function front(deps: Deps = stack.deps, options: ProxyHandlerOptions = {}): Promise<string> {
  const f = await startProxyFront(deps, {
    onOutcome: (o) => {
      lastOutcome = o;
    },
    ...options,
  });
  fronts.push(f);
  return f.url;
}

/** Deps whose cell uses other DynamoDB / KMS clients (the faulty ones). */
function withCell(patch: { ddb?: DynamoDBDocumentClient; kms?: KMSClient }): Deps {
  const cell = stack.deps.cells[REGION]!;
  return { ...stack.deps, cells: { [REGION]: { ...cell, ...patch } } };
}

const sockets: Socket[] = [];

async function listen(onConnection: (s: Socket) => void): Promise<number> {
  const s = createServer((socket) => {
    sockets.push(socket);
    onConnection(socket);
  });
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return (s.address() as { port: number }).port;
}

async function closedPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** An AWS SDK v3 service error as the SDK raises it (what throttling looks like to the caller). */
function awsError(name: string): Error {
  return Object.assign(new Error('Rate exceeded'), {
    name,
    $fault: 'client',
    $metadata: { httpStatusCode: 400, attempts: 3 },
  });
}

beforeAll(async () => {
  upstream = await startRecordingUpstream();
  stack = await startLocalStack({ targetAllowlist: [`127.0.0.1:${upstream.port}`] });
});

afterAll(async () => {
  await Promise.all(fronts.map((f) => f.close()));
  for (const socket of sockets) socket.destroy();
  for (const s of servers) s.close();
  await upstream.close();
  await stack.close();
});

beforeEach(() => {
  upstream.received.length = 0;
});

const inventory = (extra: Partial<Parameters<typeof writeSnapshot>[1]> = {}) =>
  writeSnapshot(stack.deps, {
    targetBaseURL: upstream.url,
    rules: { proxyCredential: [INVENTORY_RULE] },
    ...extra,
  });

describe('fail closed: store and KMS faults are a 503, never a forwarded call', () => {
  const expect503 = async (
    url: string,
    p: { proxyId: string; proxyKey: string },
    failedDependency: 'store' | 'kms',
  ) => {
    const res = await send(url, {
      path: `/api/${p.proxyId}/v2/inventory/1`,
      headers: { authorization: p.proxyKey },
    });
    expect(res.status).toBe(503);
    expect(res.headers['keygate-proxy-code']).toBe('proxy-dependency-unavailable');
    expect(res.headers['keygate-request-id']).toBeDefined();
    expect(res.json().code).toBe('proxy-dependency-unavailable');
    // Same answer for both; the outcome (→ KmsErrors / StoreErrors metrics) names the culprit.
    expect(lastOutcome?.failedDependency).toBe(failedDependency);
  };

  it('a malformed snapshot item (hand-edited, half-migrated) is a store fault, not a guess', async () => {
    const url = await front();
    for (const breakIt of [
      (s: Record<string, any>) => delete s.rules,
      (s: Record<string, any>) => {
        s.rules.proxyCredential = { 0: s.rules.proxyCredential[0] };
      },
      (s: Record<string, any>) => {
        s.proxyActive = 'yes';
      },
      (s: Record<string, any>) => delete s.target,
      (s: Record<string, any>) => {
        s.proxyCredential = 'apiKey';
      },
    ]) {
      const p = await inventory();
      const broken = structuredClone(p.snapshot) as unknown as Record<string, any>;
      breakIt(broken);
      await putSnapshot(stack.deps, broken as never);
      await expect503(url, p, 'store');
    }
    // A snapshot stored under another proxy's key is not this proxy's.
    const p = await inventory();
    const other = await inventory();
    const cell = stack.deps.cells[REGION]!;
    await cell.ddb.send(
      new PutCommand({
        TableName: cell.tableName,
        Item: { ...keys.proxySnapshot(p.proxyId), type: 'PROXY_SNAPSHOT', ...other.snapshot },
      }),
    );
    await expect503(url, p, 'store');
    expect(upstream.received).toHaveLength(0);
  });

  it('DynamoDB unreachable (closed port)', async () => {
    const p = await inventory();
    const ddb = createDocumentClient({
      region: REGION,
      endpoint: `http://127.0.0.1:${await closedPort()}`,
      credentials,
      maxAttempts: 1,
    });
    await expect503(await front(withCell({ ddb })), p, 'store');
    ddb.destroy();
    expect(upstream.received).toHaveLength(0);
  });

  it('DynamoDB timing out (accepts, never answers)', async () => {
    const p = await inventory();
    const port = await listen(() => undefined);
    const ddb = createDocumentClient({
      region: REGION,
      endpoint: `http://127.0.0.1:${port}`,
      credentials,
      maxAttempts: 1,
      requestTimeoutMs: 200,
    });
    await expect503(await front(withCell({ ddb }), { dependencyTimeoutMs: 300 }), p, 'store');
    ddb.destroy();
    expect(upstream.received).toHaveLength(0);
  });

  it('DynamoDB throttling', async () => {
    const p = await inventory();
    const ddb = { send: async () => Promise.reject(awsError('ProvisionedThroughputExceededException')) };
    await expect503(await front(withCell({ ddb: ddb as unknown as DynamoDBDocumentClient })), p, 'store');
    expect(upstream.received).toHaveLength(0);
  });

  it('the rate counter failing while the snapshot read works (both the first and the parallel path)', async () => {
    const p = await inventory({ perMinute: 1000 });
    const real = stack.deps.cells[REGION]!.ddb;
    const ddb = {
      send: (command: { constructor: { name: string } }) =>
        command.constructor.name === 'UpdateCommand'
          ? Promise.reject(awsError('ThrottlingException'))
          : real.send(command as never),
    };
    const url = await front(withCell({ ddb: ddb as unknown as DynamoDBDocumentClient }));
    await expect503(url, p, 'store');
    await expect503(url, p, 'store');
    expect(upstream.received).toHaveLength(0);
  });

  it('KMS unreachable (cold data-key cache)', async () => {
    const p = await inventory();
    const kms = createKmsClient({
      region: REGION,
      endpoint: `http://127.0.0.1:${await closedPort()}`,
      credentials,
      maxAttempts: 1,
    });
    await expect503(await front(withCell({ kms })), p, 'kms');
    kms.destroy();
    expect(upstream.received).toHaveLength(0);
  });

  it('KMS throttling', async () => {
    const p = await inventory();
    const kms = { send: async () => Promise.reject(awsError('ThrottlingException')) };
    await expect503(await front(withCell({ kms: kms as unknown as KMSClient })), p, 'kms');
    expect(upstream.received).toHaveLength(0);
  });

  it('a ciphertext moved to another credential does not decrypt: closed (an integrity failure, not an outage), and no secret in any log', async () => {
    const p = await inventory();
    const other = await inventory();
    // Graft p's sealed secret onto the other proxy's credential id: the encryption context differs.
    const grafted = {
      ...other.snapshot,
      targetCredential: {
        ...other.snapshot.targetCredential!,
        sealedSecret: p.snapshot.targetCredential!.sealedSecret,
      },
    };
    await putSnapshot(stack.deps, grafted);
    const written: string[] = [];
    const spies = [process.stdout, process.stderr].map((stream) =>
      jest.spyOn(stream, 'write').mockImplementation((chunk: unknown) => {
        written.push(String(chunk));
        return true;
      }),
    );
    const original = { log: console.log, error: console.error, warn: console.warn, info: console.info };
    for (const k of Object.keys(original) as Array<keyof typeof original>)
      console[k] = (...args: unknown[]) => {
        written.push(args.map(String).join(' '));
      };
    try {
      const res = await send(stack.proxyUrl, {
        path: `/api/${other.proxyId}/v2/inventory/1`,
        headers: { authorization: other.proxyKey },
      });
      expect(res.status).toBe(500);
      expect(res.json().code).toBe('proxy-credential-integrity-failure');
      expect(res.text).not.toContain('sk_live');
    } finally {
      for (const s of spies) s.mockRestore();
      Object.assign(console, original);
    }
    // What reached stdout/stderr, and what the logger was asked to print (captured for this file).
    const output = written.join('\n') + JSON.stringify(logs.lines);
    expect(output).toContain('proxy request failed');
    expect(output).not.toContain('sk_live_vendor_secret');
    expect(output).not.toContain(other.proxyKey);
    expect(upstream.received).toHaveLength(0);
  });
});

describe('limits', () => {
  /** Waits so that a test does not straddle a minute boundary. */
  async function awayFromMinuteEdge() {
    const ms = 60_000 - (Date.now() % 60_000);
    if (ms < 5000) await new Promise((r) => setTimeout(r, ms + 50));
  }

  it('lets exactly the limit through per minute across two instances, then 429 with Retry-After', async () => {
    await awayFromMinuteEdge();
    const p = await inventory({ perMinute: 5 });
    const urls = [await front(), await front()];
    const answers = await Promise.all(
      Array.from({ length: 14 }, (_, i) =>
        send(urls[i % 2]!, {
          path: `/api/${p.proxyId}/v2/inventory/${i}`,
          headers: { authorization: p.proxyKey },
        }),
      ),
    );
    const statuses = answers.map((a) => a.status).sort();
    expect(statuses.filter((s) => s === 200)).toHaveLength(5);
    expect(statuses.filter((s) => s === 429)).toHaveLength(9);
    const limited = answers.find((a) => a.status === 429)!;
    expect(limited.headers['keygate-proxy-code']).toBe('proxy-rate-limited');
    const retry = Number(limited.headers['retry-after']);
    expect(Number.isInteger(retry) && retry >= 1 && retry <= 60).toBe(true);
    expect(upstream.received).toHaveLength(5);
  });

  it('does not let unauthenticated callers burn a proxy’s quota', async () => {
    await awayFromMinuteEdge();
    const p = await inventory({ perMinute: 3 });
    const url = await front();
    const ok = () =>
      send(url, { path: `/api/${p.proxyId}/v2/inventory/1`, headers: { authorization: p.proxyKey } });
    expect((await ok()).status).toBe(200); // the instance now counts this proxy in parallel with the read
    const flood = await Promise.all(
      Array.from({ length: 30 }, () =>
        send(url, { path: `/api/${p.proxyId}/v2/inventory/1`, headers: { authorization: 'kg_live_wrong' } }),
      ),
    );
    expect(flood.every((a) => a.status === 401)).toBe(true);
    expect((await ok()).status).toBe(200);
    expect((await ok()).status).toBe(200);
    expect((await ok()).status).toBe(429);
  });

  it('uncounts a key that was valid a moment ago and has just been revoked', async () => {
    await awayFromMinuteEdge();
    const p = await inventory({ perMinute: 3 });
    const url = await front();
    const call = (key: string) =>
      send(url, { path: `/api/${p.proxyId}/v2/inventory/1`, headers: { authorization: key } }).then(
        (r) => r.status,
      );
    expect(await call(p.proxyKey)).toBe(200); // count 1; this key is now counted early
    const { hashSecret, generateSecret } = await import('../../lambdas/crypto/secrets.ts');
    const newKey = generateSecret('kg_live_');
    await putSnapshot(stack.deps, {
      ...p.snapshot,
      proxyCredential: { ...p.snapshot.proxyCredential!, secretHash: hashSecret(newKey) },
      version: 2,
    });
    expect(await call(p.proxyKey)).toBe(401); // counted early, then uncounted
    expect(await call(p.proxyKey)).toBe(401);
    expect([await call(newKey), await call(newKey), await call(newKey)]).toEqual([200, 200, 429]);
  });

  it('enforces the daily limit too', async () => {
    await awayFromMinuteEdge();
    const p = await inventory({ perDay: 2 });
    const url = await front();
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++)
      statuses.push(
        (
          await send(url, {
            path: `/api/${p.proxyId}/v2/inventory/1`,
            headers: { authorization: p.proxyKey },
          })
        ).status,
      );
    expect(statuses).toEqual([200, 200, 429, 429]);
  });

  it('applies a limit added to a proxy on the very next request', async () => {
    await awayFromMinuteEdge();
    const p = await inventory();
    const url = await front();
    for (let i = 0; i < 3; i++)
      expect(
        (
          await send(url, {
            path: `/api/${p.proxyId}/v2/inventory/1`,
            headers: { authorization: p.proxyKey },
          })
        ).status,
      ).toBe(200);
    await putSnapshot(stack.deps, { ...p.snapshot, proxyMaxRequestsPerMinute: 1, version: 2 });
    const next = [];
    for (let i = 0; i < 2; i++)
      next.push(
        (
          await send(url, {
            path: `/api/${p.proxyId}/v2/inventory/1`,
            headers: { authorization: p.proxyKey },
          })
        ).status,
      );
    expect(next).toEqual([200, 429]);
  });
});

/** Runs `workers` request loops until `stop()`, recording when each request started and ended. */
function traffic(url: string, path: string, authorization: string, workers = 8) {
  const log: Array<{ start: number; end: number; status: number; seq: string }> = [];
  let running = true;
  let seq = 0;
  const loops = Array.from({ length: workers }, async () => {
    while (running) {
      const id = String(seq++);
      const start = performance.now();
      const res = await send(url, { path, headers: { authorization, 'x-seq': id } });
      log.push({ start, end: performance.now(), status: res.status, seq: id });
    }
  });
  return {
    log,
    stop: async () => {
      running = false;
      await Promise.all(loops);
      return log;
    },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Waits until `count` logged requests satisfy `which` — ordering, not a time window, so a slow
 * machine only makes the test take longer (the cap is a safety net).
 */
async function untilLogged(
  log: Array<{ start: number; end: number; status: number }>,
  which: (r: { start: number; end: number; status: number }) => boolean,
  count: number,
) {
  const cap = Date.now() + 60_000;
  while (log.filter(which).length < count) {
    if (Date.now() > cap) throw new Error(`only ${log.filter(which).length} of ${count} requests in 60 s`);
    await sleep(5);
  }
}

describe('revocation and rotation under concurrent traffic', () => {
  it('revoking the proxy credential: zero successes for requests sent after the write returns', async () => {
    const p = await inventory();
    const t = traffic(stack.proxyUrl, `/api/${p.proxyId}/v2/inventory/1`, p.proxyKey);
    await untilLogged(t.log, () => true, 11);
    await putSnapshot(stack.deps, { ...p.snapshot, proxyCredential: undefined, version: 2 });
    const revokedAt = performance.now();
    await untilLogged(t.log, (r) => r.start > revokedAt, 11);
    const log = await t.stop();
    const before = log.filter((r) => r.end < revokedAt);
    const after = log.filter((r) => r.start > revokedAt);
    expect(before.length).toBeGreaterThan(10);
    expect(before.every((r) => r.status === 200)).toBe(true);
    expect(after.length).toBeGreaterThan(10);
    expect(after.filter((r) => r.status !== 401)).toEqual([]);
  });

  it('deleting the proxy (its snapshot) and deleting the target credential block at once', async () => {
    const a = await inventory();
    const ta = traffic(stack.proxyUrl, `/api/${a.proxyId}/v2/inventory/1`, a.proxyKey, 4);
    const b = await inventory();
    const tb = traffic(stack.proxyUrl, `/api/${b.proxyId}/v2/inventory/1`, b.proxyKey, 4);
    await Promise.all([untilLogged(ta.log, () => true, 4), untilLogged(tb.log, () => true, 4)]);
    await Promise.all([
      deleteSnapshot(stack.deps, a.proxyId),
      putSnapshot(stack.deps, { ...b.snapshot, targetCredential: undefined, version: 2 }),
    ]);
    const at = performance.now();
    await Promise.all([
      untilLogged(ta.log, (r) => r.start > at, 6),
      untilLogged(tb.log, (r) => r.start > at, 6),
    ]);
    const [la, lb] = await Promise.all([ta.stop(), tb.stop()]);
    expect(la.filter((r) => r.start > at).length).toBeGreaterThan(5);
    expect(la.filter((r) => r.start > at && r.status !== 401)).toEqual([]);
    expect(lb.filter((r) => r.start > at).length).toBeGreaterThan(5);
    expect(lb.filter((r) => r.start > at && r.status !== 403)).toEqual([]);
  });

  it('rotating the target credential: zero failed requests, and the new secret from the next request on', async () => {
    const p = await inventory();
    const t = traffic(stack.proxyUrl, `/api/${p.proxyId}/v2/inventory/1`, p.proxyKey);
    await untilLogged(t.log, () => true, 30);
    const rotated = await buildSnapshot(stack.deps, {
      proxyId: p.proxyId,
      clientId: p.clientId,
      targetBaseURL: upstream.url,
      target: { type: 'apiKey', secret: { key: 'sk_live_vendor_secret_2', headerName: 'X-Vendor-Key' } },
      rules: { proxyCredential: [INVENTORY_RULE] },
      version: 2,
    });
    await putSnapshot(stack.deps, { ...rotated.snapshot, proxyCredential: p.snapshot.proxyCredential });
    const rotatedAt = performance.now();
    await untilLogged(t.log, (r) => r.start > rotatedAt, 11);
    const log = await t.stop();
    expect(log.filter((r) => r.status !== 200)).toEqual([]);
    const secretOf = new Map(
      upstream.received.map((r) => [String(r.headers['x-seq']), r.headers['x-vendor-key']]),
    );
    const after = log.filter((r) => r.start > rotatedAt);
    expect(after.length).toBeGreaterThan(10);
    expect(after.filter((r) => secretOf.get(r.seq) !== 'sk_live_vendor_secret_2')).toEqual([]);
    expect(new Set(secretOf.values())).toEqual(
      new Set(['sk_live_vendor_secret_1', 'sk_live_vendor_secret_2']),
    );
  });

  it('a rule change takes effect on the very next request', async () => {
    const p = await inventory();
    const call = () =>
      send(stack.proxyUrl, {
        path: `/api/${p.proxyId}/v2/inventory/1`,
        headers: { authorization: p.proxyKey },
      });
    expect((await call()).status).toBe(200);
    await putSnapshot(stack.deps, {
      ...p.snapshot,
      rules: { ...p.snapshot.rules, proxyCredential: [] },
      version: 2,
    });
    expect((await call()).status).toBe(403);
  });
});
