import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent, createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type { ProxyOutcome } from '../lambdas/data-plane/outcome.ts';
import { telemetryHooks } from '../lambdas/data-plane/telemetry-hook.ts';
import { createDocumentClient } from '../lambdas/storage/dynamodb-client.ts';
import { type AggregatorOptions, createAggregatorHandler } from '../lambdas/telemetry/aggregator.ts';
import { createTelemetryEmitter, type TelemetryEmitter } from '../lambdas/telemetry/emitter.ts';
import { createKinesisClient } from '../lambdas/telemetry/kinesis-client.ts';
import { maskHeaders, maskQuery } from '../lambdas/telemetry/masking.ts';
import type { TelemetryRecord } from '../lambdas/telemetry/record.ts';
import { newRequestId } from '../lambdas/telemetry/request-id.ts';
import { toKinesisEvent } from '../local/kinesis-poller.ts';
import { ensureStream } from '../local/provision.ts';
import { startLocalStack } from '../local/stack.ts';
import { openTelemetryWal } from '../local/telemetry-wal.ts';

/**
 * Telemetry benchmark (standalone: `node bench/telemetry.ts`). Measures, on the embedded services:
 *  1. the emitter's cost on the request path: the same request handler with telemetry off and on,
 *     in the same process, in-process and over loopback HTTP (flush after the answer is written);
 *  2. the aggregator: calls per second through the handler, and its store calls and item writes
 *     per call, with one write per item (AWS) and with transactions (local mode).
 * It prints figures; it asserts nothing (speed is never asserted in tests).
 */

const HEADERS = {
  authorization: 'Bearer kg_live_0123456789abcdefghijABCDEFGHIJ012345',
  'x-api-key': 'sk_live_0123456789abcdef',
  accept: 'application/json',
  'user-agent': 'inventory-service/1.0',
  cookie: 'sid=abcdef; theme=dark',
};

function percentile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

function summary(samples: number[]) {
  const s = [...samples].sort((a, b) => a - b);
  return { p50: percentile(s, 0.5), p95: percentile(s, 0.95), p99: percentile(s, 0.99) };
}

const fmt = (ms: number) => `${(ms * 1000).toFixed(1)} µs`;

/** What a proxied request does around telemetry: mask, build the record, build the answer. */
function handle(emitter: TelemetryEmitter | undefined, i: number): string {
  const started = performance.now();
  const body = JSON.stringify({ items: [{ id: i, name: 'widget', stock: 12 }] });
  if (emitter) {
    const record: TelemetryRecord = {
      requestId: newRequestId(),
      processedAt: new Date().toISOString(),
      clientId: 'bench-client',
      proxyId: 'bench-proxy',
      proxyCredentialId: 'pc',
      targetCredentialId: 'tc',
      method: 'GET',
      path: `/v2/inventory/${i}`,
      query: maskQuery(`page=${i}&api_key=secret`),
      headers: maskHeaders(HEADERS),
      status: 200,
      proxyCode: 'proxy-access-granted',
      decision: 'allowed',
      durations: { gatewayMs: performance.now() - started, upstreamMs: 1 },
      bytes: { in: 0, out: body.length },
      sourceIp: '127.0.0.1',
      userAgent: HEADERS['user-agent'],
    };
    emitter.emit(record);
  }
  return body;
}

async function inProcess(emitter: TelemetryEmitter, rounds: number) {
  const off: number[] = [];
  const on: number[] = [];
  for (let warm = 0; warm < 2000; warm++) handle(emitter, warm);
  await emitter.flush();
  // Interleaved blocks, so drift (GC, JIT, CPU frequency) hits both sides alike.
  for (let block = 0; block < rounds / 500; block++) {
    for (const [list, e] of [
      [off, undefined],
      [on, emitter],
    ] as const) {
      for (let i = 0; i < 500; i++) {
        const t = performance.now();
        handle(e, i);
        list.push(performance.now() - t);
      }
      await emitter.flush(); // after the answers: not on their path
    }
  }
  return { off: summary(off), on: summary(on) };
}

type Mode = 'off' | 'flush-after-each-answer' | 'batched-flush';

/**
 * Loopback HTTP round trips of one handler, telemetry off and on. Kinesis runs in a child process
 * here (as it is remote in AWS), so the figure is the proxy process's own cost. Two ways to flush:
 * after each answer is written, and batched (autoFlushMs: one PutRecords per 50 ms of traffic).
 */
async function overHttp(kinesisEndpoint: string, rounds: number) {
  const kinesis = createKinesisClient({
    region: 'us-east-1',
    endpoint: kinesisEndpoint,
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
  });
  await ensureStream(kinesis, 'bench-telemetry');
  const emitters: Record<Exclude<Mode, 'off'>, TelemetryEmitter> = {
    'flush-after-each-answer': createTelemetryEmitter({ kinesis, streamName: 'bench-telemetry' }),
    'batched-flush': createTelemetryEmitter({ kinesis, streamName: 'bench-telemetry', autoFlushMs: 50 }),
  };
  let mode: Mode = 'off';
  const server = createServer((req, res) => {
    const emitter = mode === 'off' ? undefined : emitters[mode];
    const body = handle(emitter, 1);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(body);
    // The after-response flush: the answer is already written when it starts.
    if (mode === 'flush-after-each-answer') res.once('finish', () => void emitter!.flush());
    req.resume();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const call = () =>
    new Promise<number>((resolve, reject) => {
      const t = performance.now();
      const req = request({ host: '127.0.0.1', port, path: '/api/p/v2/inventory', agent }, (res) => {
        res.resume();
        res.on('end', () => resolve(performance.now() - t));
      });
      req.on('error', reject);
      req.end();
    });
  for (let i = 0; i < 300; i++) await call();
  const samples: Record<Mode, number[]> = { off: [], 'flush-after-each-answer': [], 'batched-flush': [] };
  for (let block = 0; block < rounds / 200; block++) {
    for (const m of Object.keys(samples) as Mode[]) {
      mode = m;
      for (let i = 0; i < 200; i++) samples[m].push(await call());
      await Promise.all(Object.values(emitters).map((e) => e.flush()));
    }
  }
  agent.destroy();
  server.close();
  kinesis.destroy();
  return {
    results: Object.fromEntries(Object.entries(samples).map(([m, v]) => [m, summary(v)])) as Record<
      Mode,
      ReturnType<typeof summary>
    >,
    stats: Object.fromEntries(Object.entries(emitters).map(([m, e]) => [m, e.stats()])),
  };
}

/** kinesalite in a child process: a Kinesis that does not share the proxy's event loop. */
async function remoteKinesis() {
  const child = spawn(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      "import k from 'kinesalite'; const s = k({ createStreamMs: 0 }); s.listen(0, '127.0.0.1', () => console.log(s.address().port));",
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const [chunk] = (await once(child.stdout!, 'data')) as [Buffer];
  return { endpoint: `http://127.0.0.1:${chunk.toString().trim()}`, stop: () => child.kill() };
}

function countingClient(endpoint: string, credentials: { accessKeyId: string; secretAccessKey: string }) {
  const ddb = createDocumentClient({ region: 'us-east-1', endpoint, credentials }) as DynamoDBDocumentClient;
  /** calls: requests into the store; writes: items written (inside a batch or transaction too). */
  const counts = { calls: 0, writes: 0, reads: 0 };
  ddb.middlewareStack.add(
    (next, context) => async (args) => {
      const input = args.input as { RequestItems?: Record<string, unknown[]>; TransactItems?: unknown[] };
      const op = context.commandName ?? '';
      counts.calls++;
      if (/^(Get|Query|Scan|BatchGet|TransactGet)/.test(op)) counts.reads++;
      else if (input.RequestItems)
        for (const list of Object.values(input.RequestItems)) counts.writes += list.length;
      else if (input.TransactItems) counts.writes += input.TransactItems.length;
      else counts.writes++;
      return next(args);
    },
    { step: 'initialize', name: 'countWrites' },
  );
  return { ddb, counts };
}

/**
 * The aggregator on records as the proxy emits them: each call's start record and, later in the
 * same shard, its completion (most calls complete within one batch). Batches of 100 records.
 */
async function aggregator(
  stack: Awaited<ReturnType<typeof startLocalStack>>,
  label: string,
  calls: number,
  proxies: number,
  options: AggregatorOptions,
) {
  const cell = Object.values(stack.deps.cells)[0]!;
  const { ddb, counts } = countingClient(stack.services.dynamodbEndpoint, stack.services.credentials);
  const deps = {
    ...stack.deps,
    cells: Object.fromEntries(Object.keys(stack.deps.cells).map((r) => [r, { ...cell, ddb }])),
  };
  const handler = createAggregatorHandler(deps, { sweep: false, ...options });
  const start = Date.now() - 10 * 60_000;
  const completions = Array.from({ length: calls }, (_, i): TelemetryRecord => {
    const at = new Date(start + Math.floor((i / calls) * 10 * 60_000));
    return {
      requestId: newRequestId(at),
      processedAt: at.toISOString(),
      clientId: `bench-${label}-client`,
      proxyId: `bench-${label}-proxy-${i % proxies}`,
      method: 'GET',
      path: `/v2/inventory/${i % 20}`,
      query: 'page=1',
      status: i % 50 === 0 ? 500 : 200,
      proxyCode: 'proxy-access-granted',
      decision: 'allowed',
      durations: { gatewayMs: 1 + (i % 7), upstreamMs: 20 + (i % 30) },
      bytes: { in: 100, out: 1000 },
    };
  });
  // Each start a few calls ahead of its completion, as concurrent calls interleave.
  const AHEAD = 3;
  const stream: TelemetryRecord[] = [];
  for (let i = 0; i < calls + AHEAD; i++) {
    const c = completions[i];
    if (c) stream.push({ ...c, phase: 'start', durations: { gatewayMs: c.durations.gatewayMs } });
    const done = completions[i - AHEAD];
    if (done) stream.push(done);
  }
  const records = stream.map((r, i) => ({
    SequenceNumber: `4960${String(i + 1).padStart(52, '0')}`,
    PartitionKey: r.requestId,
    Data: Buffer.from(JSON.stringify(r)),
    ApproximateArrivalTimestamp: new Date(start),
  }));
  const t = performance.now();
  for (let i = 0; i < records.length; i += 100) {
    const event = toKinesisEvent(records.slice(i, i + 100), 'shardId-000000000000', {
      streamName: 'keygate-telemetry',
      region: cell.region,
    });
    const out = await handler(event);
    if (out.batchItemFailures.length > 0) throw new Error('aggregator reported failures in the benchmark');
  }
  const seconds = (performance.now() - t) / 1000;
  ddb.destroy();
  return {
    callsPerSecond: Math.round(calls / seconds),
    storeCallsPerCall: counts.calls / calls,
    writesPerCall: counts.writes / calls,
  };
}

/**
 * The audit trail's start record (docs/audit-trail.md) on the request path in local mode: the
 * proxy's `onCallOut` hook (mask, build the start record, one synchronous append to the
 * write-ahead file) timed alone, against the same loop with nothing in it.
 */
async function startRecordCost(kinesis: TelemetryEmitterTarget, rounds: number) {
  const dir = mkdtempSync(join(tmpdir(), 'keygate-bench-wal-'));
  const wal = openTelemetryWal({ dir, ...kinesis });
  const { onCallOut } = telemetryHooks(wal);
  const outcome = (i: number): ProxyOutcome => ({
    requestId: newRequestId(),
    processedAt: new Date().toISOString(),
    clientId: 'bench-client',
    proxyId: 'bench-proxy',
    proxyCredentialId: 'pc',
    targetCredentialId: 'tc',
    targetId: 't',
    method: 'GET',
    path: `/v2/inventory/${i}`,
    query: `page=${i}&api_key=secret`,
    headers: { ...HEADERS },
    status: 0,
    proxyCode: '',
    decision: 'allowed',
    rule: { ruleId: 'r', scope: 'proxyCredential', effect: 'allow', priority: 10 },
    durations: { gatewayMs: 0.4 },
    bytes: { in: 0, out: 0 },
    sourceIp: '127.0.0.1',
    userAgent: HEADERS['user-agent'],
  });
  const off: number[] = [];
  const on: number[] = [];
  try {
    for (let i = 0; i < 2000; i++) onCallOut!(outcome(i));
    await wal.flush();
    for (let block = 0; block < rounds / 500; block++) {
      for (let i = 0; i < 500; i++) {
        outcome(i);
        const t = performance.now();
        off.push(performance.now() - t); // the timer alone
      }
      for (let i = 0; i < 500; i++) {
        const o = outcome(i);
        const t = performance.now();
        onCallOut!(o);
        on.push(performance.now() - t);
      }
      await wal.flush(); // shipping happens behind the answers, not on their path
    }
  } finally {
    await wal.close();
    rmSync(dir, { recursive: true, force: true });
  }
  return { off: summary(off), on: summary(on) };
}

type TelemetryEmitterTarget = { kinesis: ReturnType<typeof createKinesisClient>; streamName: string };

export async function main() {
  const stack = await startLocalStack({ telemetryPoller: false });
  try {
    const cell = Object.values(stack.deps.cells)[0]!;
    const emitter = createTelemetryEmitter({ kinesis: cell.kinesis, streamName: cell.streamName! });

    const inproc = await inProcess(emitter, 20_000);
    console.log(
      'Emitter cost on the request path (in process, per request; same handler, telemetry off vs on)',
    );
    console.log(`  off p50 ${fmt(inproc.off.p50)}  p95 ${fmt(inproc.off.p95)}  p99 ${fmt(inproc.off.p99)}`);
    console.log(`  on  p50 ${fmt(inproc.on.p50)}  p95 ${fmt(inproc.on.p95)}  p99 ${fmt(inproc.on.p99)}`);
    console.log(
      `  added at p50 ${fmt(inproc.on.p50 - inproc.off.p50)} (masking + record + emit), ratio ${(inproc.on.p50 / inproc.off.p50).toFixed(2)}`,
    );

    const start = await startRecordCost({ kinesis: cell.kinesis, streamName: cell.streamName! }, 20_000);
    console.log('Start record before the call out (local write-ahead file, per call; budget 200 µs at p50)');
    console.log(`  p50 ${fmt(start.on.p50)}  p95 ${fmt(start.on.p95)}  p99 ${fmt(start.on.p99)}`);
    console.log(`  added at p50 ${fmt(start.on.p50 - start.off.p50)} (mask + record + write(2))`);

    const remote = await remoteKinesis();
    try {
      const http = await overHttp(remote.endpoint, 4000);
      console.log('Loopback HTTP round trip, Kinesis in another process (µs; same handler)');
      const off = http.results.off;
      for (const [m, r] of Object.entries(http.results)) {
        console.log(
          `  ${m.padEnd(24)} p50 ${fmt(r.p50)}  p95 ${fmt(r.p95)}  p99 ${fmt(r.p99)}  Δp50 ${fmt(r.p50 - off.p50)}  ratio ${(r.p50 / off.p50).toFixed(2)}`,
        );
      }
      for (const [m, st] of Object.entries(http.stats))
        console.log(
          `  ${m}: emitted ${st.emitted}, delivered ${st.delivered}, retried ${st.retried}, dropped ${st.dropped}`,
        );
    } finally {
      remote.stop();
    }

    // Flush itself (what an after-response hook or a buffered Lambda would wait for).
    const flushTimes: number[] = [];
    for (let i = 0; i < 200; i++) {
      handle(emitter, i);
      const t = performance.now();
      await emitter.flush();
      flushTimes.push(performance.now() - t);
    }
    const f = summary(flushTimes);
    console.log(`One-record flush to the embedded Kinesis: p50 ${fmt(f.p50)}  p95 ${fmt(f.p95)}`);

    console.log('Aggregator (batches of 100 records: each call a start and a completion, embedded DynamoDB)');
    for (const [label, calls, proxies] of [
      ['one-proxy', 2500, 1],
      ['50-proxies', 2500, 50],
    ] as const) {
      for (const [mode, options] of [
        ['one write per item (AWS)', {}],
        ['transactions (local mode)', { transactions: true }],
      ] as const) {
        const a = await aggregator(
          stack,
          `${label}-${options.transactions ? 'tx' : 'single'}`,
          calls,
          proxies,
          options,
        );
        console.log(
          `  ${label}, ${mode}: ${a.callsPerSecond} calls/s, ${a.storeCallsPerCall.toFixed(3)} store calls and ${a.writesPerCall.toFixed(3)} item writes per call`,
        );
      }
    }
  } finally {
    await stack.close();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await main();
