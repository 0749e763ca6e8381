import { pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';
import { bundlingDefaults, projectRoot } from '../lib/keygate-function.ts';

/**
 * Bundle-size budget of the proxy function. Bundles `lambdas/data-plane/handler.ts` with esbuild
 * exactly as the CDK construct does (`bundlingDefaults` in lib/keygate-function.ts: ESM, minified,
 * AWS SDK inside, node22) and fails when the bundle outgrows the budget. Cold-start init time grows
 * with the code Node has to parse, and the proxy's cold starts are on a consumer's request path.
 *
 * Run: `node bench/bundle-size.ts` (exit code 1 over budget). Prints the size and the largest inputs.
 */
export const PROXY_ENTRY = 'lambdas/data-plane/handler.ts';
/** Minified bytes. Today's proxy is well under it; the data plane's own code must fit beside the SDK. */
export const PROXY_BUDGET_BYTES = 1536 * 1024;

export interface BundleReport {
  bytes: number;
  gzipBytes: number;
  budgetBytes: number;
  largestInputs: { path: string; bytes: number }[];
}

/** Bundles `entry` the way the construct does and measures it. */
export async function measureBundle(entry: string, budgetBytes: number): Promise<BundleReport> {
  const result = await build({
    entryPoints: [`${projectRoot}${entry}`],
    bundle: true,
    platform: 'node',
    target: bundlingDefaults.target,
    format: bundlingDefaults.format,
    minify: bundlingDefaults.minify,
    sourcemap: bundlingDefaults.sourceMap,
    mainFields: [...bundlingDefaults.mainFields],
    external: [...bundlingDefaults.externalModules],
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
  return { bytes: code.byteLength, gzipBytes: gzipSync(code).byteLength, budgetBytes, largestInputs };
}

const kib = (n: number) => `${(n / 1024).toFixed(1)} KiB`;

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const report = await measureBundle(PROXY_ENTRY, PROXY_BUDGET_BYTES);
  const ok = report.bytes <= report.budgetBytes;
  console.log(
    `proxy bundle (${PROXY_ENTRY}): ${kib(report.bytes)} minified, ${kib(report.gzipBytes)} gzipped; ` +
      `budget ${kib(report.budgetBytes)} — ${ok ? 'within budget' : 'OVER BUDGET'}`,
  );
  for (const input of report.largestInputs) console.log(`  ${kib(input.bytes).padStart(10)}  ${input.path}`);
  process.exitCode = ok ? 0 : 1;
}
