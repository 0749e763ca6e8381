import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';

/**
 * Packages shipped beside a function's bundle instead of inside it. A NodejsFunction bundles one
 * `index.mjs` (no code splitting), so a large dependency that only a rare request needs (zxcvbn's
 * dictionaries, 1.6 MB) would otherwise be parsed on every cold start. Such a package is marked
 * external, imported dynamically by the code that needs it, and copied after bundling — with the
 * packages it depends on — into `node_modules/` of the asset, where Node's resolution finds it from
 * `index.mjs`. The copy is made from the checkout's `node_modules` (what the tests ran against): no
 * network, no install, nothing beyond a few `cp` in the bundling step.
 */

/** A package directory to copy, relative to the project root, with its files (relative to it). */
export interface ShippedPackage {
  name: string;
  dir: string;
  files: string[];
}

/**
 * The packages `names` and everything they depend on (their `dependencies`, found the way Node
 * finds them: the nearest `node_modules` upwards), as directories under `root`.
 */
export function shippedPackages(root: string, names: readonly string[]): ShippedPackage[] {
  const found = new Map<string, ShippedPackage>();
  const visit = (name: string, from: string) => {
    const dir = locate(root, name, from);
    const key = relative(root, dir);
    if (found.has(key)) return;
    const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
    found.set(key, { name, dir: key, files: runtimeFiles(dir) });
    for (const dependency of Object.keys(manifest.dependencies ?? {})) visit(dependency, dir);
  };
  for (const name of names) visit(name, root);
  return [...found.values()].sort((a, b) => a.dir.localeCompare(b.dir));
}

/**
 * Shell commands (for `bundling.commandHooks.afterBundling`) that copy `packages` from `inputDir`
 * (the project root, or its mount in a bundling container) into `outputDir` (the asset).
 */
export function copyCommands(packages: ShippedPackage[], inputDir: string, outputDir: string): string[] {
  const byDir = new Map<string, string[]>();
  for (const pkg of packages)
    for (const file of pkg.files) {
      const target = dirname(join(pkg.dir, file));
      byDir.set(target, [...(byDir.get(target) ?? []), join(pkg.dir, file)]);
    }
  const posix = (p: string) => p.split(sep).join('/');
  return [...byDir].map(
    ([target, files]) =>
      `mkdir -p "${outputDir}/${posix(target)}" && cp ${files.map((f) => `"${inputDir}/${posix(f)}"`).join(' ')} "${outputDir}/${posix(target)}/"`,
  );
}

function locate(root: string, name: string, from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    const candidate = join(dir, 'node_modules', name);
    if (existsSync(join(candidate, 'package.json'))) return candidate;
    if (relative(root, dir) === '' || dirname(dir) === dir)
      throw new Error(`${name}: not installed under ${root} (run npm ci)`);
  }
}

/**
 * What a package needs at run time: everything except its sources (`src/`), nested packages
 * (shipped on their own), source maps, type declarations and docs. License and notice files stay.
 */
function runtimeFiles(dir: string, sub = ''): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(join(dir, sub)).sort()) {
    const path = sub ? `${sub}/${entry}` : entry;
    if (statSync(join(dir, path)).isDirectory()) {
      if (entry === 'node_modules' || (!sub && entry === 'src')) continue;
      out.push(...runtimeFiles(dir, path));
    } else if (!/\.map$|\.d\.[cm]?ts$|^(readme|changelog)(\.md)?$/i.test(entry)) out.push(path);
  }
  return out;
}
