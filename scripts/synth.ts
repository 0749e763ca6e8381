import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * `npm run synth [-- cdk options]`: `cdk synth --quiet` (the templates are written to cdk.out, not
 * printed), then a short summary read from the cloud assembly: the stacks, their resources counted
 * by type, the result of each compliance plugin (cdk-nag packs, cfn-guard) and where the templates
 * are. A compliance finding nobody acknowledged fails the synth itself, with CDK's own report.
 */

interface Manifest {
  artifacts: Record<string, { type: string; properties?: { templateFile?: string } }>;
}

interface ValidationReport {
  pluginReports: Array<{
    pluginName: string;
    conclusion: string;
    violations: unknown[];
    suppressedViolations?: unknown[];
  }>;
}

const readJson = <T>(file: string): T => JSON.parse(readFileSync(file, 'utf8')) as T;

/** The summary of the cloud assembly in `dir` (cdk.out), as printed lines. */
export function summarizeAssembly(dir: string): string[] {
  const manifest = readJson<Manifest>(join(dir, 'manifest.json'));
  const lines: string[] = [];
  for (const [name, artifact] of Object.entries(manifest.artifacts)) {
    if (artifact.type !== 'aws:cloudformation:stack' || !artifact.properties?.templateFile) continue;
    const templatePath = join(dir, artifact.properties.templateFile);
    const template = readJson<{ Resources?: Record<string, { Type: string }> }>(templatePath);
    const counts = new Map<string, number>();
    for (const resource of Object.values(template.Resources ?? {}))
      counts.set(resource.Type, (counts.get(resource.Type) ?? 0) + 1);
    const total = [...counts.values()].reduce((a, b) => a + b, 0);
    lines.push(`Stack ${name}: ${total} resources → ${relative(process.cwd(), templatePath)}`);
    const sorted = [...counts].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
    for (const [type, count] of sorted) lines.push(`  ${String(count).padStart(4)}  ${type}`);
  }
  // Reached only when synth succeeded: every finding was acknowledged, or it would have failed.
  lines.push('Compliance checks (cdk-nag packs and cfn-guard rules, lib/compliance.ts): passed');
  const reportFile = join(dir, 'validation-report.json');
  if (existsSync(reportFile)) {
    for (const plugin of readJson<ValidationReport>(reportFile).pluginReports) {
      const acknowledged = plugin.suppressedViolations?.length ?? 0;
      lines.push(
        `  ${plugin.pluginName}: ${plugin.conclusion}, ${plugin.violations.length} open findings, ` +
          `${acknowledged} acknowledged in the code with a reason (${relative(process.cwd(), reportFile)})`,
      );
    }
  }
  return lines;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const cdk = spawnSync('cdk', ['synth', '--quiet', ...args], { stdio: 'inherit' });
  if (cdk.status !== 0) process.exit(cdk.status ?? 1);
  const outAt = args.findIndex((a) => a === '-o' || a === '--output');
  const dir = outAt >= 0 && args[outAt + 1] ? args[outAt + 1]! : 'cdk.out';
  console.log(summarizeAssembly(dir).join('\n'));
}
