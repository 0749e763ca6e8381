/**
 * The data plane's benchmark (not a test: it measures, it does not assert).
 *
 * On loopback only, in one run, so that the figures that matter are ratios within it:
 *  - a local upstream (own process) alone, and behind nginx when nginx is installed;
 *  - HEADLINE: keygate as `npm start` runs it — store on disk (dynalite/LevelDB in a temp data dir),
 *    the telemetry pipeline on (emitter → embedded Kinesis → poller → aggregator), the stand-ins and
 *    the telemetry consumer in their own process (local/services-process.ts), proxies with the
 *    default limits every new proxy gets (600/min, 100,000/day) and the README walk-through's rule;
 *  - the same with everything in the proxy's process (how `npm start` ran before), the same with
 *    records written and shipped but not consumed (what the poller and aggregator cost), the same
 *    with the telemetry pipeline off (what telemetry costs), and keygate in memory without limits
 *    or telemetry in one process (the old headline), labelled;
 *  - the floor: a bare GetItem loop against the same embedded store (on disk) at c=1 and c=16;
 *  - the lower bound: a bare Node server that does the proxy's GetItem against the same kind of
 *    store (services process, disk) and relays the upstream's answer, nothing else — what any
 *    gateway that reads its state once per request adds on this machine.
 * For each path: c=1 latency p50/p99 (own client process, high-resolution clock) and c=16
 * throughput (autocannon, own process). Requests go to several proxies in turn, so the default
 * per-proxy limit (600/min) never refuses the benchmark's own traffic (429s would show as errors).
 * Counted, for keygate: snapshot reads, rate-limit claims (store writes) and KMS calls per request,
 * and the store round trips a request waits for (snapshot read + claims made inline).
 *
 * Usage: node bench/proxy.ts [--requests 2000] [--seconds 3] [--max-c1-seconds 6] [--headline-only] [--repeat N]
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { GetCommand } from '@aws-sdk/lib-dynamodb';
import type { OutcomeHook, ProxyOutcome } from '../lambdas/data-plane/outcome.ts';
import { RateLimiter } from '../lambdas/data-plane/rate-limit.ts';
import { telemetryHook } from '../lambdas/data-plane/telemetry-hook.ts';
import type { TableRef } from '../lambdas/shared/deps.ts';
import { keys } from '../lambdas/storage/keys.ts';
import { type LocalStack, startLocalStack } from '../local/stack.ts';
import { INVENTORY_RULE, writeSnapshot } from '../test/helpers/proxy-fixtures.ts';
import { processTreeCpu } from './proc-cpu.ts';

const here = dirname(fileURLToPath(import.meta.url));
const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
};
const REQUESTS = arg('requests', 2000);
const SECONDS = arg('seconds', 3);
/** A c=1 run stops after this long even if it has not sent --requests (slow paths keep the run short). */
const MAX_C1_SECONDS = arg('max-c1-seconds', 6);
/** Only the headline row and the floor (for quick iterations; the full run is what docs quote). */
const HEADLINE_ONLY = process.argv.includes('--headline-only');
/** Measure the headline (with its floor) this many times and print the medians too. */
const REPEAT = arg('repeat', 1);
const REGION = 'us-east-1';
const PATH = '/v2/inventory/items?sku=A1';
/** The limits every new proxy gets (control-plane DEFAULT_LIMITS, copied in from the client). */
const DEFAULT_LIMITS = { perMinute: 600, perDay: 100_000 };

type Latency = { p50: number; p90: number; p99: number; mean: number; count: number; failures: number };
type Throughput = { rps: number; p50: number; p99: number; errors: number; non2xx: number };
type Target = { url: string; authorization?: string };

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

async function latency(targets: Target[], count = REQUESTS): Promise<Latency> {
  const args = [JSON.stringify(targets), String(count), String(MAX_C1_SECONDS)];
  return JSON.parse(await firstLine(node('latency-client.ts', args)));
}

async function throughput(targets: Target[]): Promise<Throughput> {
  return JSON.parse(
    await firstLine(node('throughput-client.ts', [JSON.stringify(targets), String(SECONDS)])),
  );
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

interface Setup {
  name: string;
  /** A column heading for the breakdown table. */
  label: string;
  disk: boolean;
  telemetry: boolean;
  limits: boolean;
  /** The stand-ins and the telemetry consumer in their own process, as `npm start` runs them. */
  servicesProcess: boolean;
  /** Records written and shipped to the stream but not consumed (no poller, no aggregator). */
  noConsumer?: boolean;
}

interface Measured {
  setup: Setup;
  l: Latency;
  t: Throughput;
  /** Per request of the measured c=1 run (after a warm-up that made the first claims and KMS calls). */
  snapshotReads: number;
  limitWrites: number;
  otherWrites: number;
  roundTrips: number;
  kms: number;
  /** The telemetry consumer's store calls (aggregator, poller checkpoints) per request, by operation. */
  consumer: Record<string, number>;
  outcomes: ProxyOutcome[];
  floor?: { c1: Latency; c16: number };
  /** CPU ms per request during the c=16 run, by process (Linux only; undefined elsewhere). */
  cpu?: Record<string, number>;
}

/** CPU ms used so far by this process and, on Linux, by its services process (split by thread priority). */
function cpuNow(): Record<string, number> {
  const own = process.cpuUsage();
  const out: Record<string, number> = { 'proxy process': (own.user + own.system) / 1000 };
  for (const p of processTreeCpu()) {
    if (!p.script.includes('services-process')) continue;
    for (const t of p.threads) {
      const key = t.nice > 0 ? 'services process, telemetry worker' : 'services process, the rest';
      out[key] = (out[key] ?? 0) + t.ms;
    }
  }
  return out;
}

const WRITES = new Set([
  'PutCommand',
  'UpdateCommand',
  'DeleteCommand',
  'BatchWriteCommand',
  'TransactWriteCommand',
]);

/** Proxies on the stack, each as a new proxy gets them (default limits), with the walk-through rule. */
async function proxies(
  stack: LocalStack,
  setup: Pick<Setup, 'limits'>,
  upstreamUrl: string,
  n: number,
  base = stack.proxyUrl,
): Promise<Target[]> {
  const out: Target[] = [];
  for (let i = 0; i < n; i++) {
    const p = await writeSnapshot(stack.deps, {
      targetBaseURL: upstreamUrl,
      rules: { targetCredential: [INVENTORY_RULE] },
      ...(setup.limits ? DEFAULT_LIMITS : {}),
    });
    out.push({ url: `${base}/api/${p.proxyId}${PATH}`, authorization: p.proxyKey });
  }
  return out;
}

/**
 * The least a gateway of this shape adds on this machine: a bare HTTP server in this process that
 * reads the proxy's snapshot with the proxy's own GetItem (same client settings, the same store on
 * disk in a services process) and then relays the upstream's answer through a keep-alive agent —
 * no key check, rules, limits, secret, telemetry or Lambda adapter; a failure is a bare 502/503.
 * What it adds over the upstream alone is the cost of one store round trip and one more HTTP hop
 * here; what keygate adds over it is keygate's own.
 */
async function lowerBound(upstreamUrl: string): Promise<{ l: Latency; t: Throughput }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'kg-bench-bound-'));
  const stack = await startLocalStack({
    dataDir,
    targetAllowlist: [new URL(upstreamUrl).host],
    telemetryPoller: false,
    servicesProcess: true,
  });
  const cell = stack.deps.cells[REGION]!;
  const up = new URL(upstreamUrl);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
  const server = http.createServer(async (req, res) => {
    const [, , proxyId = ''] = (req.url ?? '').split('/');
    const out = await cell.ddb
      .send(
        new GetCommand({ TableName: cell.tableName, Key: keys.proxySnapshot(proxyId), ConsistentRead: true }),
      )
      .catch(() => undefined);
    if (!out) return void res.writeHead(503).end();
    if (!out.Item) return void res.writeHead(404).end();
    const call = http.request(
      { host: up.hostname, port: up.port, path: req.url!.slice(`/api/${proxyId}`.length), agent },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      },
    );
    call.on('error', () => res.writeHead(502).end());
    call.end();
  });
  try {
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    // The headline's proxies (the relay reads their snapshots and ignores the key they send).
    const targets = await proxies(stack, { limits: true }, upstreamUrl, 6, base);
    return { l: await latency(targets), t: await throughput(targets) };
  } finally {
    server.close();
    agent.destroy();
    await stack.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** The store alone: strongly consistent GetItem of a snapshot item, c=1 then c=16, in this process. */
async function getItemFloor(
  stack: LocalStack,
  send: LocalStack['deps']['home']['ddb']['send'],
  proxyId: string,
) {
  const cell = stack.deps.cells[REGION]!;
  const get = () =>
    send(
      new GetCommand({ TableName: cell.tableName, Key: keys.proxySnapshot(proxyId), ConsistentRead: true }),
    );
  for (let i = 0; i < 200; i++) await get();
  const samples: number[] = [];
  for (let i = 0; i < REQUESTS; i++) {
    const t0 = performance.now();
    await get();
    samples.push(performance.now() - t0);
  }
  const c1: Latency = {
    p50: median(samples),
    p90: pct(samples, 0.9),
    p99: pct(samples, 0.99),
    mean: 0,
    count: samples.length,
    failures: 0,
  };
  let ops = 0;
  const end = performance.now() + SECONDS * 1000;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (performance.now() < end) {
        await get();
        ops++;
      }
    }),
  );
  return { c1, c16: ops / SECONDS };
}

async function measure(setup: Setup, upstreamUrl: string, withFloor: boolean): Promise<Measured> {
  const dataDir = setup.disk ? mkdtempSync(join(tmpdir(), 'kg-bench-data-')) : undefined;
  const outcomes: ProxyOutcome[] = [];
  let recording = false;
  let hook: OutcomeHook | undefined;
  let stack: LocalStack | undefined;
  // The limiter is the handler's own; made here so that its stats (claims a request waited for) show.
  const limiterTable = {
    tableName: 'keygate',
    ddb: {
      send: (...a: unknown[]) => (stack!.deps.cells[REGION]!.ddb.send as (...x: unknown[]) => unknown)(...a),
    },
  } as unknown as TableRef;
  const limiter = new RateLimiter(limiterTable);
  stack = await startLocalStack({
    dataDir,
    targetAllowlist: [new URL(upstreamUrl).host],
    telemetryPoller: setup.telemetry && !setup.noConsumer,
    servicesProcess: setup.servicesProcess,
    proxyOptions: {
      onOutcome: (o) => {
        hook?.(o);
        if (recording) outcomes.push(o);
      },
      rateLimiter: limiter,
    },
  });
  try {
    if (setup.telemetry) hook = telemetryHook(stack.telemetry!);
    const cell = stack.deps.cells[REGION]!;
    const realSend = cell.ddb.send.bind(cell.ddb);
    const counts = { snapshotReads: 0, limitWrites: 0, otherWrites: 0 };
    cell.ddb.send = ((
      command: { constructor: { name: string }; input?: { Key?: { pk?: string } } },
      ...rest: unknown[]
    ) => {
      const name = command.constructor.name;
      const pk = command.input?.Key?.pk ?? '';
      if (name === 'GetCommand' && pk.startsWith('PROXY#')) counts.snapshotReads++;
      else if (name === 'UpdateCommand' && pk.startsWith('LIMIT#')) counts.limitWrites++;
      else if (WRITES.has(name)) counts.otherWrites++;
      return (realSend as (...a: unknown[]) => Promise<unknown>)(command, ...rest);
    }) as typeof cell.ddb.send;

    const c1Targets = await proxies(stack, setup, upstreamUrl, 6);
    const c16Targets = await proxies(stack, setup, upstreamUrl, 30);
    await latency(c1Targets, 300); // warm-up: JIT, data keys (KMS), first claims
    for (const k of Object.keys(counts) as Array<keyof typeof counts>) counts[k] = 0;
    const inlineBefore = limiter.stats.inlineClaims;
    const kms = stack.services.kms.counts;
    const kmsBefore = kms.Decrypt ?? 0;
    const consumerCalls = async () => {
      if (!stack!.telemetryPoller) return {};
      await stack!.telemetryPoller.drain(60_000);
      // In a services process the counts arrive as a message (at most every 100 ms): let it come.
      if (setup.servicesProcess) await new Promise((r) => setTimeout(r, 300));
      return stack!.telemetryPoller.stats().storeCalls ?? {};
    };
    const consumerBefore = await consumerCalls();
    recording = true;
    const l = await latency(c1Targets);
    recording = false;
    const consumerAfter = await consumerCalls();
    if (setup.servicesProcess) await new Promise((r) => setTimeout(r, 300));
    // Every request handled reads its snapshot once: that is the denominator.
    const perReq = Math.max(1, counts.snapshotReads);
    const measured = {
      snapshotReads: counts.snapshotReads / perReq,
      limitWrites: counts.limitWrites / perReq,
      otherWrites: counts.otherWrites / perReq,
      roundTrips: (counts.snapshotReads + limiter.stats.inlineClaims - inlineBefore) / perReq,
      kms: ((kms.Decrypt ?? 0) - kmsBefore) / perReq,
      consumer: Object.fromEntries(
        Object.entries(consumerAfter).map(([k, v]) => [k, (v - (consumerBefore[k] ?? 0)) / perReq]),
      ),
    };
    const cpuBefore = cpuNow();
    const t = await throughput(c16Targets);
    const cpuAfter = cpuNow();
    const handled = Math.max(1, t.rps * SECONDS);
    const cpu = Object.fromEntries(
      Object.entries(cpuAfter).map(([k, v]) => [k, (v - (cpuBefore[k] ?? 0)) / handled]),
    );
    // Let requests autocannon left in flight finish before the store closes under them.
    let seen = -1;
    while (seen !== counts.snapshotReads) {
      seen = counts.snapshotReads;
      await new Promise((r) => setTimeout(r, 300));
    }
    const floor = withFloor
      ? await getItemFloor(stack, realSend as never, new URL(c1Targets[0]!.url).pathname.split('/')[2]!)
      : undefined;
    return { setup, l, t, ...measured, outcomes, floor, cpu };
  } finally {
    await stack.close();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  }
}

async function main() {
  const upstreamProc = node('upstream-server.ts', []);
  const upstreamPort = Number(await firstLine(upstreamProc));
  const upstreamUrl = `http://127.0.0.1:${upstreamPort}`;
  const nginx = await startNginx(upstreamPort);
  try {
    console.log(
      `keygate data-plane benchmark — ${REQUESTS} sequential requests (c=1), ${SECONDS} s at c=16, loopback`,
    );
    console.log(`node ${process.version}, ${(await import('node:os')).cpus().length} cores\n`);
    const upstream = [{ url: `${upstreamUrl}${PATH}` }];
    const base1 = await latency(upstream);
    const base16 = await throughput(upstream);
    const ng1 = nginx ? await latency([{ url: `${nginx.url}${PATH}` }]) : undefined;
    const ng16 = nginx ? await throughput([{ url: `${nginx.url}${PATH}` }]) : undefined;

    const headlineSetup: Setup = {
      name: '**keygate as `npm start` runs it** (disk, telemetry on, default limits, services process)',
      label: 'headline',
      disk: true,
      telemetry: true,
      limits: true,
      servicesProcess: true,
    };
    const headline = await measure(headlineSetup, upstreamUrl, true);
    const bound = await lowerBound(upstreamUrl);
    const oneProcess = HEADLINE_ONLY
      ? undefined
      : await measure(
          {
            name: 'keygate, the same with the services in the proxy process (npm start before)',
            label: 'one process',
            disk: true,
            telemetry: true,
            limits: true,
            servicesProcess: false,
          },
          upstreamUrl,
          false,
        );
    const noConsumer = HEADLINE_ONLY
      ? undefined
      : await measure(
          {
            name: 'keygate, the headline with records shipped to the stream but not consumed (no poller, no aggregator)',
            label: 'not consumed',
            disk: true,
            telemetry: true,
            limits: true,
            servicesProcess: true,
            noConsumer: true,
          },
          upstreamUrl,
          false,
        );
    const noTelemetry = HEADLINE_ONLY
      ? undefined
      : await measure(
          {
            name: 'keygate, the headline with the telemetry pipeline OFF (no records at all)',
            label: 'telemetry off',
            disk: true,
            telemetry: false,
            limits: true,
            servicesProcess: true,
          },
          upstreamUrl,
          false,
        );
    const memory = HEADLINE_ONLY
      ? undefined
      : await measure(
          {
            name: 'keygate, in memory, no limits, telemetry OFF, one process (the old headline)',
            label: 'memory, no limits',
            disk: false,
            telemetry: false,
            limits: false,
            servicesProcess: false,
          },
          upstreamUrl,
          false,
        );
    const all = [headline, oneProcess, noConsumer, noTelemetry, memory].filter((m) => m !== undefined);
    const floor = headline.floor!;

    const row = (name: string, l: Latency, t: Throughput | undefined) =>
      `| ${name} | ${f(l.p50)} | ${f(l.p99)} | ${f(l.p50 - base1.p50)} | ${f(l.p99 - base1.p99)} | ${t ? Math.round(t.rps) : 'n/a'} | ${t ? `${t.errors + t.non2xx}` : 'n/a'} |`;
    console.log(
      '| path | c=1 p50 ms | c=1 p99 ms | added p50 ms | added p99 ms | c=16 req/s | c=16 errors |',
    );
    console.log('|---|---|---|---|---|---|---|');
    console.log(row('upstream alone', base1, base16));
    if (ng1) console.log(row('nginx → upstream', ng1, ng16));
    else console.log('| nginx → upstream | skipped: nginx not installed | | | | | |');
    for (const m of all) console.log(row(m.setup.name, m.l, m.t));
    console.log(
      `| floor: bare GetItem, same embedded store on disk, no gateway | ${f(floor.c1.p50)} | ${f(floor.c1.p99)} | | | ${Math.round(floor.c16)} ops/s | |`,
    );
    console.log(
      row(
        'lower bound: a bare Node server doing the same GetItem (same store, services process) and the upstream call, nothing else',
        bound.l,
        bound.t,
      ),
    );

    console.log('\nPer proxied request (counted over the c=1 run, after warm-up):');
    console.log(
      '| path | snapshot reads | rate-limit writes | round trips waited for | KMS Decrypt | telemetry store writes (made in the proxy process) |',
    );
    console.log('|---|---|---|---|---|---|');
    for (const m of all)
      console.log(
        `| ${m.setup.name} | ${f(m.snapshotReads, 3)} | ${f(m.limitWrites, 4)} | ${f(m.roundTrips, 3)} | ${f(m.kms, 4)} | ${m.setup.servicesProcess ? 'n/a: made in the services process' : f(m.otherWrites, 3)} |`,
      );

    console.log(
      "\nThe telemetry consumer's store calls per proxied request (c=1 run, counted after the aggregator caught up):",
    );
    for (const m of all.filter((x) => x.setup.telemetry && !x.setup.noConsumer)) {
      const parts = Object.entries(m.consumer)
        .filter(([, v]) => v > 0)
        .sort((a, b) => b[1] - a[1])
        .map(([k, v]) => `${k.replace(/Command$/, '')} ${f(v, 3)}`);
      const total = Object.values(m.consumer).reduce((a, b) => a + b, 0);
      console.log(`  ${m.setup.name}: ${f(total, 3)} (${parts.join(', ')})`);
    }

    console.log(
      '\nCPU per request during the c=16 run (ms; the machine has 2 cores for everything, load client included):',
    );
    for (const m of all)
      console.log(
        `  ${m.setup.name}: ${Object.entries(m.cpu ?? {})
          .map(([k, v]) => `${k} ${f(v, 2)}`)
          .join(', ')}`,
      );

    // Per configuration: where the time of a c=1 request goes, from the handler's own timings.
    const parts = (m: Measured) => {
      const timed = m.outcomes;
      const of = (pick: (o: ProxyOutcome) => number) => timed.map(pick);
      const handler = of((o) => o.durations.gatewayMs + (o.durations.upstreamMs ?? 0));
      return {
        front: { p50: m.l.p50 - median(handler) },
        store: of((o) => o.durations.storeMs ?? 0),
        crypto: of((o) => o.durations.cryptoMs ?? 0),
        rules: of((o) => o.durations.rulesMs ?? 0),
        up: of((o) => o.durations.upstreamMs ?? 0),
        ttfb: of((o) => o.durations.ttfbMs ?? 0),
        after: of((o) => (o.durations.upstreamMs ?? 0) - (o.durations.ttfbMs ?? 0)),
        own: of((o) => o.durations.gatewayMs - (o.durations.storeMs ?? 0)),
      };
    };
    const split = all.map(parts);
    const cells = (key: Exclude<keyof ReturnType<typeof parts>, 'front'>) =>
      `${split.map((p) => f(median(p[key]))).join(' | ')} | ${f(pct(split[0]![key], 0.99))}`;
    console.log(
      '\nWhere the added time goes (c=1, per-request timings, p50 ms per configuration; p99 of the headline):',
    );
    console.log(`| part | ${all.map((m) => m.setup.label).join(' | ')} | headline p99 |`);
    console.log(`|---|${all.map(() => '---|').join('')}---|`);
    console.log(
      `| HTTP front + loopback hop (client p50 − handler p50) | ${split.map((p) => f(p.front.p50)).join(' | ')} | |`,
    );
    console.log(`| store read (GetItem, embedded DynamoDB) | ${cells('store')} |`);
    console.log(`| crypto (open target secret; data key cached) | ${cells('crypto')} |`);
    console.log(`| rules | ${cells('rules')} |`);
    console.log(`| upstream call (inside the handler) | ${cells('up')} |`);
    console.log(`|  of which: to the upstream's first byte | ${cells('ttfb')} |`);
    console.log(`|  of which: the answer streamed on to the client | ${cells('after')} |`);
    console.log(`| gateway's own work (handler − store − upstream; limits included) | ${cells('own')} |`);

    const added50 = headline.l.p50 - base1.p50;
    const added99 = headline.l.p99 - base1.p99;
    const vsFloor = headline.t.rps / floor.c16;
    const telemetryCost = noTelemetry?.t.rps ? headline.t.rps / noTelemetry.t.rps : Number.NaN;
    const ok = (b: boolean) => (b ? 'OK' : 'MISSED');
    console.log('\nTargets (headline row, ratios from this run):');
    console.log(`  added p50 ≤ 2 ms: ${f(added50)} ms ${ok(added50 <= 2)}`);
    console.log(`  added p99 ≤ 5 ms: ${f(added99)} ms ${ok(added99 <= 5)}`);
    console.log(
      `  c=16 throughput ≥ 50 % of the GetItem floor: ${f(100 * vsFloor, 0)} % ${ok(vsFloor >= 0.5)}`,
    );
    console.log(`  round trips = 1: ${f(headline.roundTrips, 3)} ${ok(headline.roundTrips < 1.01)}`);
    console.log(`  KMS calls per request → 0: ${f(headline.kms, 4)} ${ok(headline.kms === 0)}`);
    console.log(
      `  store writes per request ≤ 0.05: ${f(headline.limitWrites, 4)} ${ok(headline.limitWrites <= 0.05)}`,
    );
    console.log(
      `What the lower bound (one GetItem and the upstream call, nothing else) reaches in the same run: added p50 ${f(bound.l.p50 - base1.p50)} ms, added p99 ${f(bound.l.p99 - base1.p99)} ms, ${f((100 * bound.t.rps) / floor.c16, 0)} % of the floor`,
    );
    console.log(
      `keygate over the lower bound: +${f(headline.l.p50 - bound.l.p50)} ms p50, +${f(headline.l.p99 - bound.l.p99)} ms p99, c=16 ×${f(headline.t.rps / bound.t.rps, 2)}`,
    );
    if (oneProcess && noConsumer && noTelemetry) {
      console.log(
        `\nTelemetry pipeline on (headline) vs off (same run, same processes): c=16 throughput ×${f(telemetryCost, 2)}, added p50 ${f(headline.l.p50 - noTelemetry.l.p50)} ms`,
      );
      console.log(
        `Telemetry consumer (poller + aggregator) on vs off, records still written and shipped (same run): c=16 throughput ×${f(headline.t.rps / noConsumer.t.rps, 2)}, added p50 ${f(headline.l.p50 - noConsumer.l.p50)} ms`,
      );
      console.log(
        `keygate with telemetry off vs the lower bound (same run; the proxy's own work — Lambda adapter, key check, limits, rules, secret): c=16 throughput ×${f(noTelemetry.t.rps / bound.t.rps, 2)}, added p50 ${f(noTelemetry.l.p50 - bound.l.p50)} ms, added p99 ${f(noTelemetry.l.p99 - bound.l.p99)} ms`,
      );
      console.log(
        `Services process vs one process (same run): c=16 throughput ×${f(headline.t.rps / oneProcess.t.rps, 2)}, added p50 ${f(headline.l.p50 - oneProcess.l.p50)} ms, added p99 ${f(headline.l.p99 - oneProcess.l.p99)} ms`,
      );
    }
    if (REPEAT > 1) {
      // One run swings by a quarter on a shared 2-core machine: the headline and its floor again,
      // each time against the upstream alone measured just before, and the medians.
      const runs = [{ base: base1, m: headline, bound }];
      for (let i = 1; i < REPEAT; i++) {
        const base = await latency(upstream);
        const m = await measure(headlineSetup, upstreamUrl, true);
        runs.push({ base, m, bound: await lowerBound(upstreamUrl) });
      }
      console.log(`\nThe headline ${REPEAT} times (each with its own floor):`);
      console.log(
        '| run | added p50 ms | added p99 ms | c=16 req/s | floor ops/s | share of the floor | lower bound: added p50 ms | added p99 ms | share of the floor |',
      );
      console.log('|---|---|---|---|---|---|---|---|---|');
      const rows = runs.map(({ base, m, bound: b }, i) => {
        const r = {
          p50: m.l.p50 - base.p50,
          p99: m.l.p99 - base.p99,
          rps: m.t.rps,
          floor: m.floor!.c16,
          share: m.t.rps / m.floor!.c16,
          boundP50: b.l.p50 - base.p50,
          boundP99: b.l.p99 - base.p99,
          boundShare: b.t.rps / m.floor!.c16,
        };
        console.log(
          `| ${i + 1} | ${f(r.p50)} | ${f(r.p99)} | ${Math.round(r.rps)} | ${Math.round(r.floor)} | ${f(100 * r.share, 0)} % | ${f(r.boundP50)} | ${f(r.boundP99)} | ${f(100 * r.boundShare, 0)} % |`,
        );
        return r;
      });
      const mid = (pick: (r: (typeof rows)[number]) => number) => median(rows.map(pick));
      console.log(
        `| **median** | ${f(mid((r) => r.p50))} | ${f(mid((r) => r.p99))} | ${Math.round(mid((r) => r.rps))} | ${Math.round(mid((r) => r.floor))} | ${f(100 * mid((r) => r.share), 0)} % | ${f(mid((r) => r.boundP50))} | ${f(mid((r) => r.boundP99))} | ${f(100 * mid((r) => r.boundShare), 0)} % |`,
      );
    }
    const failures = all.filter((m) => m.l.failures > 0 || m.t.non2xx + m.t.errors > 0);
    for (const m of failures)
      console.log(
        `note: ${m.setup.name}: c=1 failures ${m.l.failures}, c=16 errors ${m.t.errors} non-2xx ${m.t.non2xx}`,
      );
  } finally {
    nginx?.stop();
    upstreamProc.kill('SIGTERM');
  }
}

await main();
