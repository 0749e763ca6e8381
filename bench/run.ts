import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

/**
 * `npm run bench`: every benchmark in turn, each its own process so none warms the next. Figures
 * are ratios or differences against a baseline measured in the same script, never absolute
 * promises; nothing here is a test.
 */
const benches = [
  ['proxy', 'data-plane latency and throughput vs the upstream alone (and nginx when installed)'],
  ['stream', 'streamed answers: time to first byte and throughput vs the vendor alone'],
  ['telemetry', 'telemetry emission cost on the request path; aggregator throughput'],
  ['bundle-size', 'the proxy and Core API bundles against their size budget, and their cold imports'],
] as const;

const only = process.argv.slice(2);
let failed = 0;
for (const [name, what] of benches) {
  if (only.length > 0 && !only.includes(name)) continue;
  const file = join(import.meta.dirname, `${name}.ts`);
  if (!existsSync(file)) continue;
  console.log(`\n=== ${name}: ${what}\n`);
  const run = spawnSync(process.execPath, [file], { stdio: 'inherit' });
  if (run.status !== 0) {
    failed++;
    console.error(`${name} failed (exit ${run.status})`);
  }
}
process.exit(failed > 0 ? 1 : 0);
