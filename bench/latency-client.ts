import http from 'node:http';

/**
 * c=1 latency client, in its own process: one keep-alive connection, requests one after another,
 * each timed with the high-resolution clock. Usage: latency-client.ts <targets JSON> <count> [max s]
 * (stops at whichever comes first; a slow path is not allowed to stretch the run), where
 * the targets are [{ url, authorization? }, …] on one host, used in turn (several proxies, so that
 * default per-proxy limits are not exhausted by the benchmark itself).
 * Prints JSON { p50, p90, p99, mean, count, failures } in milliseconds.
 */
const [targetsArg, countArg] = process.argv.slice(2);
const { performance } = await import('node:perf_hooks');
const targets = (JSON.parse(targetsArg!) as Array<{ url: string; authorization?: string }>).map((t) => ({
  url: new URL(t.url),
  headers: t.authorization ? { authorization: t.authorization } : {},
}));
const count = Number(countArg ?? 2000);
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
let next = 0;

function once(): Promise<number> {
  const target = targets[next++ % targets.length]!;
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const req = http.request(
      {
        host: target.url.hostname,
        port: target.url.port,
        path: target.url.pathname + target.url.search,
        agent,
        headers: target.headers,
      },
      (res) => {
        res.resume();
        res.on('end', () =>
          resolve(res.statusCode === 200 ? Number(process.hrtime.bigint() - start) / 1e6 : -1),
        );
      },
    );
    req.on('error', reject);
    req.end();
  });
}

const samples: number[] = [];
let failures = 0;
for (let i = 0; i < Math.min(200, count); i++) await once(); // warm-up
// The time cap counts from here: a slow path still gets measured samples after its warm-up.
const deadline = performance.now() + 1000 * Number(process.argv[4] ?? 1e6);
for (let i = 0; i < count && performance.now() < deadline; i++) {
  const ms = await once();
  if (ms < 0) failures++;
  else samples.push(ms);
}
samples.sort((a, b) => a - b);
const q = (p: number) => samples[Math.min(samples.length - 1, Math.floor(p * samples.length))] ?? Number.NaN;
const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
process.stdout.write(
  `${JSON.stringify({ p50: q(0.5), p90: q(0.9), p99: q(0.99), mean, count: samples.length, failures })}\n`,
);
agent.destroy();
