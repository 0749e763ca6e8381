/**
 * Profiling aid (not part of `npm run bench`): the headline configuration of bench/proxy.ts (store
 * on disk, services process, telemetry on unless --telemetry 0, default limits) under c=16 load.
 *  --cpu 1: prints the CPU time per request of each process of the tree (proxy, services, upstream);
 *  otherwise: writes a CPU profile of this (the proxy's) process to --out.
 * Usage: node bench/profile-headline.ts [--seconds 10] [--cpu 1] [--telemetry 0] [--out file]
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { telemetryHook } from '../lambdas/data-plane/telemetry-hook.ts';
import { startLocalStack } from '../local/stack.ts';
import { INVENTORY_RULE, writeSnapshot } from '../test/helpers/proxy-fixtures.ts';
import { processTreeCpu } from './proc-cpu.ts';

const here = dirname(fileURLToPath(import.meta.url));
const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : fallback;
};
const up = spawn(process.execPath, [join(here, 'upstream-server.ts')], {
  stdio: ['ignore', 'pipe', 'inherit'],
});
const port = await new Promise<string>((r) => up.stdout!.once('data', (d) => r(String(d).split('\n')[0]!)));
const upstreamUrl = `http://127.0.0.1:${port}`;
const dataDir = mkdtempSync(join(tmpdir(), 'kg-prof-'));
let hook: ((o: never) => void) | undefined;
const stack = await startLocalStack({
  dataDir,
  targetAllowlist: [new URL(upstreamUrl).host],
  telemetryPoller: arg('telemetry', '1') === '1',
  servicesProcess: true,
  proxyOptions: { onOutcome: (o) => hook?.(o as never) },
});
if (arg('telemetry', '1') === '1') hook = telemetryHook(stack.telemetry!) as never;
const targets: Array<{ url: string; authorization: string }> = [];
for (let i = 0; i < 30; i++) {
  const p = await writeSnapshot(stack.deps, {
    targetBaseURL: upstreamUrl,
    rules: { targetCredential: [INVENTORY_RULE] },
    perMinute: 600,
    perDay: 100_000,
  });
  targets.push({
    url: `${stack.proxyUrl}/api/${p.proxyId}/v2/inventory/items?sku=A1`,
    authorization: p.proxyKey,
  });
}
const run = (seconds: string) =>
  new Promise<string>((resolve) => {
    const c = spawn(
      process.execPath,
      [join(here, 'throughput-client.ts'), JSON.stringify(targets), seconds],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    let out = '';
    c.stdout!.on('data', (d) => (out += d));
    c.on('exit', () => resolve(out.trim()));
  });
console.log('warm-up', await run('3'));
// CPU time of this process tree (this process, the services process, the clients) per request.
const tree = () => {
  const out = new Map<string, number>();
  for (const p of processTreeCpu()) {
    const label = `${p.pid === process.pid ? 'proxy' : p.script.replace(/.*\//, '')}#${p.pid}`;
    out.set(label, p.ms);
    // Its threads: the main one, and the others (a worker thread, libuv's pool, LevelDB's) by name.
    for (const t of p.threads) {
      const key = `${label} thread ${t.tid === p.pid ? 'main' : `${t.name} nice ${t.nice}`}`;
      out.set(key, (out.get(key) ?? 0) + t.ms);
    }
  }
  return out;
};
if (arg('cpu', '0') === '1') {
  const before = tree();
  const r = JSON.parse(await run(arg('seconds', '10')));
  const after = tree();
  const n = r.rps * Number(arg('seconds', '10'));
  console.log('c=16', r.rps, 'req/s');
  for (const [k, v] of after)
    console.log(`  ${k}: ${((v - (before.get(k) ?? 0)) / n).toFixed(3)} CPU-ms/request`);
  await stack.close();
  up.kill();
  process.exit(0);
}
const session = new Session();
session.connect();
await session.post('Profiler.enable');
await session.post('Profiler.setSamplingInterval', { interval: 200 });
await session.post('Profiler.start');
console.log('profiled', await run(arg('seconds', '10')));
const { profile } = await session.post('Profiler.stop');
writeFileSync(arg('out', '/tmp/proxy.cpuprofile'), JSON.stringify(profile));
await stack.close();
up.kill();
rmSync(dataDir, { recursive: true, force: true });
