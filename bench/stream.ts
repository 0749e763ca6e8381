import { request } from 'node:http';
import { performance } from 'node:perf_hooks';
import { startLocalStack } from '../local/stack.ts';
import { completionChunk, startFakeVendor, startSse } from '../test/helpers/fake-vendors.ts';
import { writeSnapshot } from '../test/helpers/proxy-fixtures.ts';

/**
 * Streaming figures of the data plane, against the vendor alone in the same run: time to first
 * byte of an SSE completion (median of 15, the vendor answering at once) and throughput of a large
 * streamed answer (MB/s, best of 3). Loopback only, the fake vendor in this process, the whole
 * `npm start` stack in memory. A few seconds in all. Nothing here is a test: figures are
 * differences and ratios against the baseline, never absolute promises.
 */
const STREAM_MB = 64;
const TTFB_RUNS = 15;

const vendor = await startFakeVendor();
const block = Buffer.alloc(64 * 1024, 'x');
vendor.handle = async (req, res) => {
  if (req.url?.endsWith('/bulk')) {
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    for (let sent = 0; sent < STREAM_MB * 1024 * 1024; sent += block.length)
      if (!res.write(block)) await new Promise((r) => res.once('drain', r));
    res.end();
    return;
  }
  startSse(res);
  res.write(completionChunk(0, 'first'));
  res.end('data: [DONE]\n\n');
};
const stack = await startLocalStack({ targetAllowlist: ['127.0.0.1'], telemetryPoller: false });

/** Time to the first body byte, and the bytes, of one GET. */
function fetchTimed(url: string, headers: Record<string, string>) {
  return new Promise<{ ttfb: number; total: number; bytes: number }>((resolve, reject) => {
    const started = performance.now();
    let ttfb = 0;
    let bytes = 0;
    const req = request(url, { headers }, (res) => {
      res.on('data', (c: Buffer) => {
        if (!ttfb) ttfb = performance.now() - started;
        bytes += c.length;
      });
      res.on('end', () => resolve({ ttfb, total: performance.now() - started, bytes }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

try {
  const p = await writeSnapshot(stack.deps, {
    targetBaseURL: vendor.url,
    target: { type: 'bearer', secret: { token: 'sk-bench', prefix: 'Bearer ' } },
    proxyDefaultRuleEffect: 'allow',
    targetDefaultRuleEffect: 'allow',
  });
  const through = `${stack.proxyUrl}/api/${p.proxyId}`;
  const auth = { authorization: p.proxyKey };
  await fetchTimed(`${through}/v1/chat/completions`, auth); // warm: data key, sockets

  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const d: number[] = [];
  const k: number[] = [];
  for (let i = 0; i < TTFB_RUNS; i++) {
    d.push((await fetchTimed(`${vendor.url}/v1/chat/completions`, {})).ttfb);
    k.push((await fetchTimed(`${through}/v1/chat/completions`, auth)).ttfb);
  }
  const mbps = async (url: string, headers: Record<string, string>) => {
    let best = 0;
    for (let i = 0; i < 3; i++) {
      const r = await fetchTimed(url, headers);
      best = Math.max(best, r.bytes / (1024 * 1024) / (r.total / 1000));
    }
    return best;
  };
  const directMbps = await mbps(`${vendor.url}/bulk`, {});
  const keygateMbps = await mbps(`${through}/bulk`, auth);
  const f = (n: number, digits = 1) => n.toFixed(digits);
  console.log(`node ${process.version}, ${(await import('node:os')).cpus().length} cores\n`);
  console.log('| streamed call | vendor alone | through keygate | difference |');
  console.log('|---|---|---|---|');
  console.log(
    `| time to first byte, SSE (median of ${TTFB_RUNS}) | ${f(median(d), 2)} ms | ${f(median(k), 2)} ms | ` +
      `+${f(median(k) - median(d), 2)} ms |`,
  );
  console.log(
    `| throughput, ${STREAM_MB} MB answer (best of 3) | ${f(directMbps, 0)} MB/s | ${f(keygateMbps, 0)} MB/s | ` +
      `${f((keygateMbps / directMbps) * 100, 0)} % of direct |`,
  );
} finally {
  await stack.close();
  await vendor.close();
}
