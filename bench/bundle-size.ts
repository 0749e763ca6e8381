import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';
import { CORE_API_ENTRY, CORE_API_LAZY_PACKAGES } from '../lib/core-api.ts';
import { bundlingDefaults, projectRoot } from '../lib/keygate-function.ts';

/**
 * Bundle-size budget of the proxy function and the Core API's. Bundles each entry with esbuild
 * exactly as the CDK construct does (`bundlingDefaults` in lib/keygate-function.ts: ESM, minified,
 * AWS SDK inside, node22) and fails when the bundle outgrows the budget. Cold-start init time grows
 * with the code Node has to parse, and the proxy's cold starts are on a consumer's request path.
 *
 * Run: `node bench/bundle-size.ts` (exit code 1 over budget). Prints the size and the largest inputs,
 * then the bundle's cold import: a fresh Node process loading and initialising the handler module
 * (what Lambda's init phase does with it), against a fresh process importing an empty module, in the
 * same script, alternating, so the ratio holds whatever else the machine is doing.
 */
export const PROXY_ENTRY = 'lambdas/data-plane/handler.ts';
/** Minified bytes. Today's proxy is well under it; the data plane's own code must fit beside the SDK. */
export const PROXY_BUDGET_BYTES = 800 * 1024;
/**
 * The Core API function, measured the same way against the same budget (issue #12), without the
 * packages the construct ships beside its bundle (`CORE_API_LAZY_PACKAGES`: loaded on first use).
 */
export { CORE_API_ENTRY, CORE_API_LAZY_PACKAGES };
export const CORE_API_BUDGET_BYTES = 800 * 1024;

export interface BundleReport {
  bytes: number;
  gzipBytes: number;
  budgetBytes: number;
  largestInputs: { path: string; bytes: number }[];
  code: Uint8Array;
}

/**
 * Bundles `entry` the way the construct does and measures it; `lazyPackages` are left out, as the
 * construct leaves them out (shipped beside the bundle, see lib/shipped-packages.ts).
 */
export async function measureBundle(
  entry: string,
  budgetBytes: number,
  lazyPackages: readonly string[] = [],
): Promise<BundleReport> {
  const result = await build({
    entryPoints: [`${projectRoot}${entry}`],
    bundle: true,
    platform: 'node',
    target: bundlingDefaults.target,
    format: bundlingDefaults.format,
    minify: bundlingDefaults.minify,
    sourcemap: bundlingDefaults.sourceMap,
    mainFields: [...bundlingDefaults.mainFields],
    external: [...bundlingDefaults.externalModules, ...lazyPackages],
    banner: { js: bundlingDefaults.banner },
    write: false,
    metafile: true,
    logLevel: 'silent',
  });
  const code = result.outputFiles[0]!.contents;
  const output = Object.values(result.metafile.outputs)[0]!;
  // Group by package so the report says which dependency costs what.
  const byPackage = new Map<string, number>();
  for (const [path, input] of Object.entries(output.inputs)) {
    const match = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(path);
    const name = match ? match[1]! : path.split('/').slice(0, 2).join('/');
    byPackage.set(name, (byPackage.get(name) ?? 0) + input.bytesInOutput);
  }
  const largestInputs = [...byPackage.entries()]
    .map(([path, bytes]) => ({ path, bytes }))
    .sort((a, b) => b.bytes - a.bytes)
    .slice(0, 8);
  return { bytes: code.byteLength, gzipBytes: gzipSync(code).byteLength, budgetBytes, largestInputs, code };
}

/** The environment the proxy function gets from the CDK app (no AWS call is made at init). */
const PROXY_ENV = {
  AWS_REGION: 'us-east-1',
  AWS_ACCESS_KEY_ID: 'bench',
  AWS_SECRET_ACCESS_KEY: 'bench',
  KEYGATE_TABLE_NAME: 'keygate-us-east-1',
  KEYGATE_CELLS: JSON.stringify({
    'us-east-1': {
      tableName: 'keygate-us-east-1',
      kmsKeyId: 'alias/keygate',
      streamName: 'keygate-telemetry',
    },
  }),
  KEYGATE_TELEMETRY_SINK: 'log',
};

/**
 * Median wall time (ms) of a fresh Node process that imports each bundle, and of one that imports
 * an empty module, `runs` times each, alternating (so all see the same machine).
 */
export function measureColdImport(
  codes: Record<string, Uint8Array>,
  runs = 15,
): { bundleMs: Record<string, number>; emptyMs: number } {
  const dir = mkdtempSync(join(tmpdir(), 'keygate-cold-'));
  try {
    const files = Object.entries(codes).map(([name, code], i) => {
      const file = join(dir, `bundle-${i}.mjs`);
      writeFileSync(file, code);
      return [name, file] as const;
    });
    const empty = join(dir, 'empty.mjs');
    writeFileSync(empty, 'export const handler = () => undefined;\n');
    const time = (file: string) => {
      const started = performance.now();
      const out = spawnSync(
        process.execPath,
        [
          '--input-type=module',
          '-e',
          `${LAMBDA_RUNTIME_GLOBAL} await import(${JSON.stringify(pathToFileURL(file).href)})`,
        ],
        {
          env: { ...process.env, ...PROXY_ENV },
          stdio: ['ignore', 'ignore', 'pipe'],
        },
      );
      if (out.status !== 0) throw new Error(`cold import failed: ${out.stderr.toString().slice(0, 500)}`);
      return performance.now() - started;
    };
    for (const [, file] of files) time(file); // warm the file cache
    const samples = new Map<string, number[]>(files.map(([name]) => [name, []]));
    const e: number[] = [];
    for (let i = 0; i < runs; i++) {
      e.push(time(empty));
      for (const [name, file] of files) samples.get(name)!.push(time(file));
    }
    const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
    return {
      bundleMs: Object.fromEntries([...samples].map(([name, xs]) => [name, median(xs)])),
      emptyMs: median(e),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * What Lambda's Node.js runtime defines before it imports a handler: the proxy is a
 * response-streaming function, wrapped with `awslambda.streamifyResponse` at import.
 */
const LAMBDA_RUNTIME_GLOBAL =
  'globalThis.awslambda = { streamifyResponse: (h) => h, HttpResponseStream: { from: (s) => s } };';

const kib = (n: number) => `${(n / 1024).toFixed(1)} KiB`;

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const functions = [
    { name: 'proxy', entry: PROXY_ENTRY, budget: PROXY_BUDGET_BYTES, lazy: [] },
    { name: 'Core API', entry: CORE_API_ENTRY, budget: CORE_API_BUDGET_BYTES, lazy: CORE_API_LAZY_PACKAGES },
  ];
  const reports = new Map<string, BundleReport>();
  let ok = true;
  for (const fn of functions) {
    const report = await measureBundle(fn.entry, fn.budget, fn.lazy);
    reports.set(fn.name, report);
    const within = report.bytes <= report.budgetBytes;
    if (!within) ok = false;
    console.log(
      `${fn.name} bundle (${fn.entry}): ${kib(report.bytes)} minified, ${kib(report.gzipBytes)} gzipped; ` +
        `budget ${kib(report.budgetBytes)} — ${within ? 'within budget' : `OVER BUDGET by ${kib(report.bytes - report.budgetBytes)}`}` +
        (fn.lazy.length ? `; shipped beside, loaded on first use: ${fn.lazy.join(', ')}` : ''),
    );
    for (const input of report.largestInputs)
      console.log(`  ${kib(input.bytes).padStart(10)}  ${input.path}`);
  }
  const cold = measureColdImport(Object.fromEntries([...reports].map(([name, r]) => [name, r.code])));
  console.log(
    `\ncold import (fresh node, median of 15, alternating): empty module ${cold.emptyMs.toFixed(1)} ms`,
  );
  for (const [name, ms] of Object.entries(cold.bundleMs))
    console.log(
      `  ${name}: ${ms.toFixed(1)} ms — adds ${(ms - cold.emptyMs).toFixed(1)} ms (ratio ${(ms / cold.emptyMs).toFixed(2)})`,
    );
  process.exitCode = ok ? 0 : 1;
}
