import autocannon from 'autocannon';

/**
 * c=16 throughput client (autocannon, in its own process). Usage: throughput-client.ts <targets
 * JSON> <seconds>, the targets as for latency-client.ts, used in turn. Prints JSON
 * { rps, p50, p99, errors, non2xx }.
 */
const [targetsArg, secondsArg] = process.argv.slice(2);
const targets = JSON.parse(targetsArg!) as Array<{ url: string; authorization?: string }>;
const paths = targets.map((t) => {
  const u = new URL(t.url);
  return { path: u.pathname + u.search, headers: t.authorization ? { authorization: t.authorization } : {} };
});
let next = 0;
const result = await autocannon({
  url: new URL(targets[0]!.url).origin,
  connections: 16,
  duration: Number(secondsArg ?? 3),
  requests: [
    {
      setupRequest: (req: Record<string, unknown>) => {
        const t = paths[next++ % paths.length]!;
        return { ...req, method: 'GET', path: t.path, headers: t.headers };
      },
    },
  ],
});
process.stdout.write(
  `${JSON.stringify({
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.errors,
    non2xx: result.non2xx,
  })}\n`,
);
