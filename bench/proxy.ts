/**
 * The data plane's benchmark (not a test: it measures, it does not assert).
 *
 * On loopback only: a local upstream (own process) measured alone, then behind keygate's proxy in
 * local mode (the HTTP front, the handler, the embedded DynamoDB and the KMS stand-in in this
 * process, as `npm start` runs them), then behind nginx when nginx is installed. For each:
 * c=1 latency p50/p99 (own client process, high-resolution clock) and c=16 throughput (autocannon,
 * own process). For keygate also: DynamoDB calls and sequential round trips per request and KMS
 * calls per request, counted, and where the added time goes (per-request timings the handler
 * reports in its outcomes).
 *
 * Usage: node bench/proxy.ts [--requests 3000] [--seconds 5]
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ProxyOutcome } from '../lambdas/data-plane/outcome.ts';
import type { Rule } from '../lambdas/rules/types.ts';
import { startLocalStack } from '../local/stack.ts';
import { writeSnapshot } from '../test/helpers/proxy-fixtures.ts';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');
const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
};
const REQUESTS = arg('requests', 3000);
const SECONDS = arg('seconds', 5);
const REGION = 'us-east-1';

type Latency = { p50: number; p90: number; p99: number; mean: number; count: number; failures: number };
type Throughput = { rps: number; p50: number; p99: number; errors: number; non2xx: number };

function node(script: string, args: string[]): ChildProcess {
  return spawn(process.execPath, [join(here, script), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
}

async function firstLine(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      if (out.includes('\n')) resolve(out.split('\n')[0]!);
    });
    child.once('exit', (code) => reject(new Error(`child exited (${code}) before answering`)));
  });
}

async function latency(url: string, authorization?: string): Promise<Latency> {
  const child = node('latency-client.ts', [url, String(REQUESTS), ...(authorization ? [authorization] : [])]);
  return JSON.parse(await firstLine(child)) as Latency;
}

async function throughput(url: string, authorization?: string): Promise<Throughput> {
  const bin = join(root, 'node_modules', '.bin', 'autocannon');
  const args = [
    '-c',
    '16',
    '-d',
    String(SECONDS),
    '-j',
    ...(authorization ? ['-H', `authorization=${authorization}`] : []),
    url,
  ];
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  child.stdout.on('data', (d) => {
    out += d;
  });
  await new Promise((r) => child.once('exit', r));
  const r = JSON.parse(out) as {
    requests: { average: number };
    latency: { p50: number; p99: number };
    errors: number;
    non2xx: number;
  };
  return {
    rps: r.requests.average,
    p50: r.latency.p50,
    p99: r.latency.p99,
    errors: r.errors,
    non2xx: r.non2xx,
  };
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

function which(cmd: string): string | undefined {
  for (const dir of [
    '/usr/sbin',
    '/usr/bin',
    '/usr/local/sbin',
    '/usr/local/bin',
    ...(process.env.PATH ?? '').split(':'),
  ])
    if (existsSync(join(dir, cmd))) return join(dir, cmd);
  return undefined;
}

/** nginx as a reverse proxy in front of the upstream (keep-alive both sides), or undefined when absent. */
async function startNginx(upstreamPort: number): Promise<{ url: string; stop(): void } | undefined> {
  const bin = which('nginx');
  if (!bin) return undefined;
  const dir = mkdtempSync(join(tmpdir(), 'kg-bench-nginx-'));
  const port = await freePort();
  writeFileSync(
    join(dir, 'nginx.conf'),
    `worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_timeout 120s;
  client_body_temp_path ${dir}; proxy_temp_path ${dir}; fastcgi_temp_path ${dir}; uwsgi_temp_path ${dir}; scgi_temp_path ${dir};
  upstream vendor { server 127.0.0.1:${upstreamPort}; keepalive 32; }
  server {
    listen 127.0.0.1:${port};
    keepalive_requests 10000000;
    location / { proxy_pass http://vendor; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
`,
  );
  const child = spawn(bin, ['-p', dir, '-c', join(dir, 'nginx.conf'), '-g', 'daemon off;'], {
    stdio: 'ignore',
  });
  for (let i = 0; i < 50; i++) {
    try {
      execFileSync('bash', ['-c', `exec 3<>/dev/tcp/127.0.0.1/${port}`], { stdio: 'ignore' });
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return { url: `http://127.0.0.1:${port}`, stop: () => child.kill('SIGTERM') };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1] ?? Number.NaN;
};
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? Number.NaN;
};
const f = (n: number, digits = 3) => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');

async function main() {
  const upstreamProc = node('upstream-server.ts', []);
  const upstreamPort = Number(await firstLine(upstreamProc));
  const upstreamUrl = `http://127.0.0.1:${upstreamPort}`;
  const outcomes: ProxyOutcome[] = [];
  let recording = false;
  const stack = await startLocalStack({
    targetAllowlist: [`127.0.0.1:${upstreamPort}`],
    proxyOptions: { onOutcome: (o) => recording && outcomes.push(o) },
  });
  const nginx = await startNginx(upstreamPort);
  try {
    // Count every DynamoDB call, and the sequential round trips (a call that starts while none is
    // in flight opens a new round trip; at c=1 that is per request).
    const cell = stack.deps.cells[REGION]!;
    const realSend = cell.ddb.send.bind(cell.ddb);
    let ddbCalls = 0;
    let roundTrips = 0;
    let inFlight = 0;
    cell.ddb.send = ((command: never, ...rest: never[]) => {
      ddbCalls++;
      if (inFlight === 0) roundTrips++;
      inFlight++;
      return (realSend as (...a: unknown[]) => Promise<unknown>)(command, ...rest).finally(() => {
        inFlight--;
      });
    }) as typeof cell.ddb.send;

    const allow: Rule = {
      ruleId: 'inventory',
      effect: 'allow',
      priority: 10,
      methods: ['GET'],
      path: { path: { pattern: '^/v2/inventory/.*' }, presence: 'must_exist' },
    };
    const plain = await writeSnapshot(stack.deps, {
      targetBaseURL: upstreamUrl,
      rules: { proxyCredential: [allow] },
    });
    const limited = await writeSnapshot(stack.deps, {
      targetBaseURL: upstreamUrl,
      rules: { proxyCredential: [allow] },
      perMinute: 10_000_000,
      perDay: 100_000_000,
    });
    const path = '/v2/inventory/items?sku=A1';
    const viaKeygate = (id: string) => `${stack.proxyUrl}/api/${id}${path}`;

    console.log(
      `keygate data-plane benchmark — ${REQUESTS} sequential requests (c=1), ${SECONDS} s at c=16, loopback`,
    );
    console.log(`node ${process.version}, ${(await import('node:os')).cpus().length} cores\n`);

    const base1 = await latency(`${upstreamUrl}${path}`);
    const base16 = await throughput(`${upstreamUrl}${path}`);

    const kms = stack.services.kms.counts;
    // keygate, no limits: counted and timed.
    const kmsBefore = kms.Decrypt ?? 0;
    await latency(viaKeygate(plain.proxyId), plain.proxyKey).catch(() => undefined); // warm-up: data key, JIT
    const kmsWarm = (kms.Decrypt ?? 0) - kmsBefore;
    ddbCalls = 0;
    roundTrips = 0;
    const kmsStart = kms.Decrypt ?? 0;
    recording = true;
    const kg1 = await latency(viaKeygate(plain.proxyId), plain.proxyKey);
    recording = false;
    const perReq = REQUESTS + Math.min(200, REQUESTS);
    const ddbPerReq = ddbCalls / perReq;
    const rtPerReq = roundTrips / perReq;
    const kmsPerReq = ((kms.Decrypt ?? 0) - kmsStart) / perReq;
    const timed = [...outcomes];
    outcomes.length = 0;

    // keygate with limits: counters in parallel with the snapshot read.
    await latency(viaKeygate(limited.proxyId), limited.proxyKey);
    ddbCalls = 0;
    roundTrips = 0;
    const kgLimited = await latency(viaKeygate(limited.proxyId), limited.proxyKey);
    const ddbPerReqLimited = ddbCalls / perReq;
    const rtPerReqLimited = roundTrips / perReq;

    const kg16 = await throughput(viaKeygate(plain.proxyId), plain.proxyKey);
    const ng1 = nginx ? await latency(`${nginx.url}${path}`) : undefined;
    const ng16 = nginx ? await throughput(`${nginx.url}${path}`) : undefined;

    // Where the time goes (per request, then the median).
    const store = timed.map((o) => o.durations.storeMs ?? 0);
    const rules = timed.map((o) => o.durations.rulesMs ?? 0);
    const crypto = timed.map((o) => o.durations.cryptoMs ?? 0);
    const up = timed.map((o) => o.durations.upstreamMs ?? 0);
    const handler = timed.map((o) => o.durations.gatewayMs + (o.durations.upstreamMs ?? 0));
    const own = timed.map((o) => o.durations.gatewayMs - (o.durations.storeMs ?? 0));
    const front = kg1.p50 - median(handler);

    const row = (name: string, l: Latency, t: Throughput | undefined) =>
      `| ${name} | ${f(l.p50)} | ${f(l.p99)} | ${f(l.p50 - base1.p50)} | ${f(l.p99 - base1.p99)} | ${t ? Math.round(t.rps) : 'n/a'} | ${t ? `${t.errors + t.non2xx}` : 'n/a'} |`;
    console.log(
      '| path | c=1 p50 ms | c=1 p99 ms | added p50 ms | added p99 ms | c=16 req/s | c=16 errors |',
    );
    console.log('|---|---|---|---|---|---|---|');
    console.log(row('upstream alone', base1, base16));
    if (ng1) console.log(row('nginx → upstream', ng1, ng16));
    else console.log('| nginx → upstream | skipped: nginx not installed | | | | | |');
    console.log(row('keygate → upstream', kg1, kg16));
    console.log(row('keygate, limits on → upstream', kgLimited, undefined));

    console.log('\nPer proxied request (keygate, counted):');
    console.log(`| DynamoDB calls | ${f(ddbPerReq, 2)} (limits on: ${f(ddbPerReqLimited, 2)}) |`);
    console.log(
      `| DynamoDB sequential round trips | ${f(rtPerReq, 2)} (limits on: ${f(rtPerReqLimited, 2)}) |`,
    );
    console.log(`| KMS Decrypt calls | ${f(kmsPerReq, 4)} after warm-up (${kmsWarm} during warm-up) |`);

    console.log('\nWhere the added time goes (c=1, medians of per-request timings, ms):');
    console.log('| part | p50 ms | p99 ms |');
    console.log('|---|---|---|');
    console.log(`| HTTP front + loopback hop (client p50 − handler p50) | ${f(front)} | |`);
    console.log(`| store read (GetItem, embedded DynamoDB) | ${f(median(store))} | ${f(pct(store, 0.99))} |`);
    console.log(
      `| crypto (open target secret; data key cached) | ${f(median(crypto))} | ${f(pct(crypto, 0.99))} |`,
    );
    console.log(`| rules | ${f(median(rules))} | ${f(pct(rules, 0.99))} |`);
    console.log(`| upstream call (inside the handler) | ${f(median(up))} | ${f(pct(up, 0.99))} |`);
    console.log(
      `| gateway's own work (handler − store − upstream) | ${f(median(own))} | ${f(pct(own, 0.99))} |`,
    );

    const added50 = kg1.p50 - base1.p50;
    const added99 = kg1.p99 - base1.p99;
    console.log('\nTargets:');
    console.log(`  added p50 ≤ 2 ms: ${f(added50)} ms ${added50 <= 2 ? 'OK' : 'MISSED'}`);
    console.log(`  added p99 ≤ 5 ms: ${f(added99)} ms ${added99 <= 5 ? 'OK' : 'MISSED'}`);
    console.log(`  own work ≤ 0.25 ms p50: ${f(median(own))} ms ${median(own) <= 0.25 ? 'OK' : 'MISSED'}`);
    console.log(`  round trips = 1: ${f(rtPerReq, 2)} ${Math.abs(rtPerReq - 1) < 0.01 ? 'OK' : 'MISSED'}`);
    console.log(`  KMS calls per request → 0: ${f(kmsPerReq, 4)} ${kmsPerReq === 0 ? 'OK' : 'MISSED'}`);
    if (kg1.failures || base1.failures)
      console.log(`\nnote: failures keygate=${kg1.failures} upstream=${base1.failures}`);
  } finally {
    nginx?.stop();
    upstreamProc.kill('SIGTERM');
    await stack.close();
  }
}

await main();
