import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { PutRecordCommand } from '@aws-sdk/client-kinesis';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { telemetryHooks } from '../../lambdas/data-plane/telemetry-hook.ts';
import { createLogTelemetrySink } from '../../lambdas/telemetry/log-sink.ts';
import { api, type GatewayProcess, provisionProxy, startGatewayProcess } from '../helpers/gateway-process.ts';
import { startTestGateway, type TestGateway } from '../helpers/local.ts';
import { captureLogs } from '../helpers/logs.ts';
import {
  type RecordingUpstream,
  send,
  startProxyFront,
  startRecordingUpstream,
} from '../helpers/proxy-fixtures.ts';

// Faults are provoked on purpose here: their WARN/ERROR lines go to a capture, not the test output.
const logs = captureLogs();
afterAll(() => logs.restore());

/**
 * The audit trail (docs/audit-trail.md): every call that reached the vendor has exactly one
 * record — its completion, or `unknown` when the gateway died with the call in flight — across
 * kill -9, SIGTERM and a Lambda-style timeout; every answered call has its completion; rollups
 * equal the log. Ground truth is what the vendor itself recorded; nothing depends on speed (the
 * kill happens at a barrier: the vendor holding a chosen call), and the pipeline is polled with
 * generous timeouts.
 */

// A fixed, random-looking key (the strength check refuses predictable ones).
const PROXY_KEY = 'kg_test_audit_Q7vN2xLp9RtW4mZs8KdY3hFj6Bc';
const HELD = 20;
type Json = any;

/** `npm start` with the vendor allowed, a short `unknown` grace and a drain that outlasts the test. */
function startChild(dataDir: string, vendorPort: number): Promise<GatewayProcess> {
  return startGatewayProcess(dataDir, {
    KEYGATE_TARGET_ALLOWLIST: `127.0.0.1:${vendorPort}`,
    KEYGATE_UNKNOWN_AFTER_SECONDS: '2',
    KEYGATE_DRAIN_SECONDS: '30',
  });
}

/** The shared provisioning (over the Core API) with this suite's proxy key by default. */
const provision = (base: string, token: string, clientId: string, vendorUrl: string, proxyKey = PROXY_KEY) =>
  provisionProxy(base, token, clientId, vendorUrl, proxyKey);

/** The call number a vendor request or a log record is about (`/v2/inventory/<n>`). */
const callOf = (path: string) => Number(/\/v2\/inventory\/(\d+)/.exec(path)?.[1] ?? Number.NaN);

/**
 * A vendor answering in 100 ms, except call HELD, which it holds until released: the barrier at
 * which the test kills or stops the gateway, with that call certainly in flight at the vendor.
 */
async function slowVendor() {
  const vendor = await startRecordingUpstream();
  let release!: () => void;
  const released = new Promise<void>((r) => {
    release = r;
  });
  let heldArrived!: () => void;
  const held = new Promise<void>((r) => {
    heldArrived = r;
  });
  vendor.respond = (req, res) => {
    const n = callOf(req.url);
    const answer = () => {
      if (res.destroyed) return;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ n }));
    };
    if (n === HELD) {
      heldArrived();
      void released.then(answer);
    } else setTimeout(answer, 100);
  };
  return { vendor, release, held };
}

/** Eight consumers calling /v2/inventory/<n> with increasing n until stopped; answered calls noted. */
function traffic(proxyUrl: string, proxyId: string) {
  let next = 1;
  let stopped = false;
  const answered = new Map<number, number>();
  const workers = Array.from({ length: 8 }, async () => {
    while (!stopped) {
      const n = next++;
      try {
        const res = await send(proxyUrl, {
          path: `/api/${proxyId}/v2/inventory/${n}`,
          headers: { authorization: PROXY_KEY },
        });
        answered.set(n, res.status);
      } catch {
        return; // the gateway is gone
      }
    }
  });
  return {
    answered,
    stop: async () => {
      stopped = true;
      await Promise.all(workers);
    },
  };
}

async function requestLog(base: string, token: string, clientId: string, proxyId: string) {
  const records: Json[] = [];
  let nextToken: string | undefined;
  do {
    const q = `limit=1000${nextToken ? `&nextToken=${encodeURIComponent(nextToken)}` : ''}`;
    const res = await api(base, token, 'GET', `/clients/${clientId}/proxies/${proxyId}/requests?${q}`);
    expect(res.status).toBe(200);
    records.push(...res.body.requests);
    nextToken = res.body.nextToken;
  } while (nextToken);
  return records;
}

async function rollup(base: string, token: string, clientId: string, proxyId: string) {
  const res = await api(
    base,
    token,
    'GET',
    `/clients/${clientId}/proxies/${proxyId}/telemetry?interval=day&limit=2`,
  );
  expect(res.status).toBe(200);
  let requests = 0;
  let unknown = 0;
  for (const b of res.body.buckets as Json[]) {
    requests += b.requests;
    unknown += b.unknown;
  }
  return { requests, unknown };
}

/** Polls until every call the vendor saw has a record and the rollups have caught up with the log. */
async function settledLog(base: string, token: string, clientId: string, proxyId: string, seen: Set<number>) {
  const deadline = Date.now() + 90_000;
  for (;;) {
    const records = await requestLog(base, token, clientId, proxyId);
    const covered = new Set(records.map((r) => callOf(r.path)));
    const totals = await rollup(base, token, clientId, proxyId);
    if ([...seen].every((n) => covered.has(n)) && totals.requests === records.length)
      return { records, totals };
    if (Date.now() > deadline)
      throw new Error(`pipeline did not settle: ${covered.size} calls logged of ${seen.size} seen`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** The guarantee, checked against the vendor's own recording. */
function checkAuditTrail(
  records: Json[],
  totals: { requests: number; unknown: number },
  vendor: RecordingUpstream,
  answered: Map<number, number>,
) {
  const seen = vendor.received.map((r) => callOf(r.url));
  expect(new Set(seen).size).toBe(seen.length); // each call reached the vendor once
  const byCall = new Map<number, Json[]>();
  for (const r of records) byCall.set(callOf(r.path), [...(byCall.get(callOf(r.path)) ?? []), r]);
  const violations: string[] = [];
  for (const n of seen) {
    const list = byCall.get(n) ?? [];
    if (list.length !== 1) violations.push(`call ${n} reached the vendor and has ${list.length} records`);
  }
  for (const [n, status] of answered) {
    const r = byCall.get(n)?.[0];
    if (status === 200 && (r?.decision !== 'allowed' || r?.status !== 200))
      violations.push(`call ${n} was answered 200 and its record is ${r ? r.decision : 'missing'}`);
  }
  for (const r of records) {
    if (r.decision === 'unknown' && (r.status !== 0 || answered.get(callOf(r.path)) === 200))
      violations.push(`call ${callOf(r.path)} is unknown but was answered`);
    if (JSON.stringify(r).includes('sk_live_vendor') || JSON.stringify(r).includes(PROXY_KEY))
      violations.push('a record holds a secret');
    if ('countedBy' in r || 'phase' in r) violations.push('a record shows the aggregator’s bookkeeping');
  }
  expect(violations).toEqual([]);
  expect(new Set(records.map((r) => r.requestId)).size).toBe(records.length);
  expect(totals.requests).toBe(records.length);
  expect(totals.unknown).toBe(records.filter((r) => r.decision === 'unknown').length);
}

describe('audit trail across a killed and a stopped local gateway', () => {
  it('kill -9 during traffic: after a restart, every vendor-seen call has one record, answered ones complete', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'keygate-audit-kill-'));
    const { vendor, release, held } = await slowVendor();
    let child = await startChild(dataDir, vendor.port);
    try {
      const token = readFileSync(join(dataDir, 'admin-token'), 'utf8').trim();
      const clientId = /clientId\s+(\S+)/.exec(child.output())![1]!;
      const proxyId = await provision(child.apiUrl, token, clientId, vendor.url);
      const load = traffic(child.proxyUrl, proxyId);
      await held; // call HELD is at the vendor, unanswered: kill now
      child.child.kill('SIGKILL');
      expect((await child.exited()).signal).toBe('SIGKILL');
      await load.stop();
      release();

      child = await startChild(dataDir, vendor.port);
      const seen = new Set(vendor.received.map((r) => callOf(r.url)));
      const { records, totals } = await settledLog(child.apiUrl, token, clientId, proxyId, seen);
      checkAuditTrail(records, totals, vendor, load.answered);
      // The held call reached the vendor, and no answer was ever sent: it is on record as unknown.
      expect(records.find((r) => callOf(r.path) === HELD)).toMatchObject({ decision: 'unknown', status: 0 });
    } finally {
      await child.stop('SIGKILL');
      await vendor.close();
    }
  }, 180_000);

  it('SIGTERM during traffic: calls in flight finish, are answered and recorded, then it exits', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'keygate-audit-term-'));
    const { vendor, release, held } = await slowVendor();
    let child = await startChild(dataDir, vendor.port);
    try {
      const token = readFileSync(join(dataDir, 'admin-token'), 'utf8').trim();
      const clientId = /clientId\s+(\S+)/.exec(child.output())![1]!;
      const proxyId = await provision(child.apiUrl, token, clientId, vendor.url);
      const load = traffic(child.proxyUrl, proxyId);
      await held;
      child.child.kill('SIGTERM');
      // The held call is still in flight; it is answered only now, after the signal.
      await new Promise((r) => setTimeout(r, 300));
      release();
      expect(await child.exited()).toEqual({ code: 0, signal: null });
      await load.stop();
      expect(load.answered.get(HELD)).toBe(200);
      // Every call that reached the vendor was answered (the drain let it finish).
      for (const r of vendor.received) expect(load.answered.get(callOf(r.url))).toBe(200);

      child = await startChild(dataDir, vendor.port);
      const seen = new Set(vendor.received.map((r) => callOf(r.url)));
      const { records, totals } = await settledLog(child.apiUrl, token, clientId, proxyId, seen);
      checkAuditTrail(records, totals, vendor, load.answered);
      expect(records.filter((r) => r.decision === 'unknown')).toEqual([]);
      expect(records.filter((r) => r.status === 200)).toHaveLength(seen.size);
    } finally {
      await child.stop('SIGKILL');
      await vendor.close();
    }
  }, 180_000);
});

describe('audit trail in Lambda: a handler that times out mid-call', () => {
  let gw: TestGateway;
  let vendor: RecordingUpstream;
  beforeAll(async () => {
    vendor = await startRecordingUpstream();
    gw = await startTestGateway({ targetAllowlist: [`127.0.0.1:${vendor.port}`], unknownAfterMs: 1000 });
  });
  afterAll(async () => {
    await gw.close();
    await vendor.close();
  });

  it('leaves its start line, which becomes an unknown record counted in the rollups', async () => {
    const clientId = gw.admin.clientId;
    const proxyId = await provision(gw.stack.apiUrl, gw.admin.token, clientId, vendor.url);
    let arrived!: () => void;
    const atVendor = new Promise<void>((r) => {
      arrived = r;
    });
    vendor.respond = () => arrived(); // never answers: the invocation runs into its timeout
    // The Lambda proxy's telemetry route: one line per record on stdout (here, collected).
    const lines: string[] = [];
    let frozen = false;
    const sink = createLogTelemetrySink((line) => {
      if (!frozen) lines.push(line);
    });
    // A short upstream deadline, so the abandoned handler ends within the test.
    const front = await startProxyFront(gw.stack.deps, {
      ...telemetryHooks(sink),
      deadlines: { firstByteMs: 3000, totalMs: 3000 },
    });
    try {
      const pending = send(front.url, {
        path: `/api/${proxyId}/v2/inventory/${HELD}`,
        headers: { authorization: PROXY_KEY },
      }).catch(() => undefined);
      await atVendor;
      frozen = true; // the timeout: the sandbox is stopped, nothing more is written
      expect(lines).toHaveLength(1);
      expect(lines[0]).not.toContain('sk_live_vendor');
      expect(lines[0]).not.toContain(PROXY_KEY);

      // The subscription filter: the log lines, gzipped, into the telemetry stream.
      const cell = Object.values(gw.stack.deps.cells)[0]!;
      const payload = {
        messageType: 'DATA_MESSAGE',
        logGroup: '/aws/lambda/keygate-proxy',
        logEvents: lines.map((message, i) => ({ id: String(i), timestamp: Date.now(), message })),
      };
      await cell.kinesis.send(
        new PutRecordCommand({
          StreamName: cell.streamName,
          PartitionKey: 'log-stream',
          Data: gzipSync(JSON.stringify(payload)),
        }),
      );
      const { records, totals } = await settledLog(
        gw.stack.apiUrl,
        gw.admin.token,
        clientId,
        proxyId,
        new Set([HELD]),
      );
      expect(records).toHaveLength(1);
      expect(records[0]).toMatchObject({
        decision: 'unknown',
        status: 0,
        method: 'GET',
        path: `/v2/inventory/${HELD}`,
        proxyCode: 'proxy-outcome-unknown',
      });
      expect(totals).toEqual({ requests: 1, unknown: 1 });
      await pending;
    } finally {
      await front.close();
    }
  }, 120_000);

  it('does not make a call whose start cannot be recorded: 503, nothing reaches the vendor', async () => {
    const clientId = gw.admin.clientId;
    const otherKey = `${PROXY_KEY}_second`;
    const proxyId = await provision(gw.stack.apiUrl, gw.admin.token, clientId, vendor.url, otherKey);
    const before = vendor.received.length;
    const outcomes: string[] = [];
    const front = await startProxyFront(gw.stack.deps, {
      onCallOut: () => {
        throw new Error('disk full');
      },
      onOutcome: (o) => outcomes.push(o.proxyCode),
    });
    try {
      const res = await send(front.url, {
        path: `/api/${proxyId}/v2/inventory/1`,
        headers: { authorization: otherKey },
      });
      expect(res.status).toBe(503);
      expect(res.json().code).toBe('proxy-dependency-unavailable');
      expect(vendor.received.length).toBe(before);
      expect(outcomes).toEqual(['proxy-dependency-unavailable']);
    } finally {
      await front.close();
    }
  });
});
