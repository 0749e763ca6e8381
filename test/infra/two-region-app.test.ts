import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from '@jest/globals';
import {
  CORE_API_BUDGET_BYTES,
  CORE_API_ENTRY,
  CORE_API_LAZY_PACKAGES,
  measureBundle,
  PROXY_BUDGET_BYTES,
  PROXY_ENTRY,
} from '../../bench/bundle-size.ts';
import { configFromEnv } from '../../lambdas/shared/config.ts';
import { resourcesOf, statementsOfRole, synthKeygate } from './synth.ts';

// The whole app as `npx cdk synth -c regions=us-east-1,eu-west-1` builds it: two cells, every
// function bundled for real with the local esbuild (no Docker), all three compliance packs on.
const { app, stacks, templates } = synthKeygate({ regions: 'us-east-1,eu-west-1' }, { bundle: true });
const assembly = app.synth();
afterAll(() => rmSync(assembly.directory, { recursive: true, force: true }));

const [home, eu] = stacks as [(typeof stacks)[0], (typeof stacks)[0]];
const [homeTemplate, euTemplate] = templates as [(typeof templates)[0], (typeof templates)[0]];

function functionOf(template: typeof homeTemplate, description: string) {
  const [, fn] = resourcesOf(template, 'AWS::Lambda::Function').find(
    ([, f]) => f.Properties.Description === description,
  )!;
  return fn;
}

function envOf(template: typeof homeTemplate, description: string) {
  return functionOf(template, description).Properties.Environment.Variables as Record<string, unknown>;
}

/** The asset directory (in the cloud assembly) of the function with this description. */
function assetOf(template: typeof homeTemplate, description: string): string {
  const hash = String(functionOf(template, description).Properties.Code.S3Key).replace(/\.zip$/, '');
  return join(assembly.directory, `asset.${hash}`);
}

describe('two-region app', () => {
  it('makes one stack per region, in its region, the other cells deployed after home', () => {
    expect(stacks.map((s) => [s.stackName, s.region])).toEqual([
      ['keygate-us-east-1', 'us-east-1'],
      ['keygate-eu-west-1', 'eu-west-1'],
    ]);
    expect(eu.dependencies).toContain(home);
    expect(assembly.getStackByName('keygate-eu-west-1').dependencies.map((d) => d.id)).toContain(
      'keygate-us-east-1',
    );
  });

  it('each cell is self-contained: its own table, key, stream, proxy, aggregator and dashboard', () => {
    for (const [template, region] of [
      [homeTemplate, 'us-east-1'],
      [euTemplate, 'eu-west-1'],
    ] as const) {
      template.resourceCountIs('AWS::DynamoDB::Table', 1);
      template.resourceCountIs('AWS::KMS::Key', 1);
      template.resourceCountIs('AWS::Kinesis::Stream', 1);
      template.resourceCountIs('AWS::Lambda::EventSourceMapping', 1);
      template.hasResourceProperties('AWS::DynamoDB::Table', { TableName: `keygate-${region}` });
      template.hasResourceProperties('AWS::CloudWatch::Dashboard', { DashboardName: `keygate-${region}` });
      // No cross-region reference: nothing is imported from another stack.
      expect(JSON.stringify(template.toJSON())).not.toContain('Fn::ImportValue');
    }
    expect(resourcesOf(homeTemplate, 'AWS::Lambda::Function')).toHaveLength(3);
    expect(resourcesOf(euTemplate, 'AWS::Lambda::Function')).toHaveLength(2); // no Core API
  });

  it('the Core API is told every cell, in the shape the handlers read at cold start', () => {
    const env = envOf(homeTemplate, 'Core API (control plane)');
    const config = configFromEnv({
      AWS_REGION: 'us-east-1',
      KEYGATE_TABLE_NAME: 'keygate-us-east-1', // a Ref to the home table in the template
      KEYGATE_CELLS: env.KEYGATE_CELLS as string,
    });
    expect(Object.keys(config.cells).sort()).toEqual(['eu-west-1', 'us-east-1']);
    expect(config.cells['eu-west-1']).toEqual({
      region: 'eu-west-1',
      tableName: 'keygate-eu-west-1',
      kmsKeyId: 'alias/keygate-eu-west-1',
      streamName: 'keygate-telemetry-eu-west-1',
    });
  });

  it("each cell's proxy knows only its own cell", () => {
    const env = envOf(euTemplate, 'regional proxy (data plane)');
    expect(Object.keys(JSON.parse(env.KEYGATE_CELLS as string))).toEqual(['eu-west-1']);
  });

  it('the Core API reaches the other cell by name: table ARN, and key narrowed by its alias', () => {
    const core = statementsOfRole(homeTemplate, 'CoreApiFunctionRole');
    const text = JSON.stringify(core);
    expect(text).toContain(':dynamodb:eu-west-1:');
    expect(text).toContain(':table/keygate-eu-west-1');
    const euKey = core.filter((s) => JSON.stringify(s.Resource).includes(':kms:eu-west-1:'));
    expect(euKey.length).toBe(3); // via DynamoDB, sealing secrets, and opening consent blobs
    for (const s of euKey) {
      expect(s.Condition['ForAnyValue:StringEquals']['kms:ResourceAliases']).toBe('alias/keygate-eu-west-1');
    }
  });

  it("the other cell's key lets the home Core API seal secrets and open consent blobs there, under the context only", () => {
    const [, key] = resourcesOf(euTemplate, 'AWS::KMS::Key')[0]!;
    const seal = key.Properties.KeyPolicy.Statement.find((s: any) => s.Sid === 'CoreApiSealsTargetSecrets');
    expect(JSON.stringify(seal.Condition.ArnEquals)).toContain(':role/keygate-core-api-us-east-1');
    expect(seal.Condition.Null).toEqual({
      'kms:EncryptionContext:clientId': 'false',
      'kms:EncryptionContext:credentialId': 'false',
    });
    const open = key.Properties.KeyPolicy.Statement.find((s: any) => s.Sid === 'CoreApiOpensConsentSecrets');
    expect(JSON.stringify(open.Condition.ArnEquals)).toContain(':role/keygate-core-api-us-east-1');
    expect(open.Condition.StringLike).toEqual({
      'kms:EncryptionContext:credentialId': ['*#consent', '*#pkce', '*#grant'],
    });
  });

  it('bundles every function as one minified ESM file with the AWS SDK inside', () => {
    const assets = readdirSync(assembly.directory).filter((d) => d.startsWith('asset.'));
    // Three entries; identical bundles are shared by both regions.
    expect(assets).toHaveLength(3);
    for (const asset of assets) {
      const file = join(assembly.directory, asset, 'index.mjs');
      expect(existsSync(file)).toBe(true);
      const code = readFileSync(file, 'utf8');
      // Minified (names mangled, long lines), and no import of the SDK left for the runtime to supply.
      expect(code).not.toContain('export const handler');
      expect(code).toMatch(/export\s*\{\s*[\w$]+ as handler\s*\}/);
      expect(code.length / code.split('\n').length).toBeGreaterThan(150);
      expect(code).not.toMatch(/from\s*["']@aws-sdk\//);
      // signature-v4-crt / signature-v4a are the SDK's optional SigV4a signers, required inside a
      // try (and named in its error text); keygate signs with SigV4 only.
      expect(code).not.toMatch(/require\(["']@aws-sdk\/(?!signature-v4(-crt|a)["'])/);
    }
    const sizes = assets.map((a) => readFileSync(join(assembly.directory, a, 'index.mjs')).length);
    // Every function carries the SDK clients it uses: hundreds of KB, not a thin wrapper.
    expect(Math.min(...sizes)).toBeGreaterThan(200_000);
  });

  it('the bundle-size benchmark measures exactly what the construct deploys, within budget', async () => {
    const deployed = readFileSync(
      join(assetOf(euTemplate, 'regional proxy (data plane)'), 'index.mjs'),
    ).length;
    const report = await measureBundle(PROXY_ENTRY, PROXY_BUDGET_BYTES);
    expect(report.bytes).toBe(deployed);
    expect(report.bytes).toBeLessThanOrEqual(PROXY_BUDGET_BYTES);
  });

  it('the Core API bundle is measured as deployed and fits the same budget', async () => {
    const deployed = readFileSync(
      join(assetOf(homeTemplate, 'Core API (control plane)'), 'index.mjs'),
    ).length;
    const report = await measureBundle(CORE_API_ENTRY, CORE_API_BUDGET_BYTES, CORE_API_LAZY_PACKAGES);
    expect(report.bytes).toBe(deployed);
    expect(report.bytes).toBeLessThanOrEqual(CORE_API_BUDGET_BYTES);
    // zxcvbn is not in it (loaded on first use), and zod is the tree-shaken mini build (the full
    // build is ~446 KiB).
    const inputs = new Map(report.largestInputs.map((i) => [i.path, i.bytes]));
    for (const name of CORE_API_LAZY_PACKAGES) expect(inputs.has(name)).toBe(false);
    expect(inputs.get('zod') ?? 0).toBeLessThan(100 * 1024);
  });

  it("ships zxcvbn beside the Core API's bundle, where its dynamic imports find it", () => {
    const asset = assetOf(homeTemplate, 'Core API (control plane)');
    const code = readFileSync(join(asset, 'index.mjs'), 'utf8');
    for (const name of CORE_API_LAZY_PACKAGES) {
      // Imported on first use, not bundled…
      expect(code).toContain(`import("${name}")`);
      // …and present in the asset, with the packages they depend on.
      expect(existsSync(join(asset, 'node_modules', name, 'package.json'))).toBe(true);
    }
    for (const dependency of ['@zxcvbn-ts/dictionary-compression', 'fastest-levenshtein'])
      expect(existsSync(join(asset, 'node_modules', dependency, 'package.json'))).toBe(true);
    // Node, started in the asset directory (as Lambda starts in /var/task), resolves them there and
    // judges a human-made key with them as key-strength.ts does: the word lists decompress, the
    // matchers run.
    const probe = spawnSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `const names = ${JSON.stringify(CORE_API_LAZY_PACKAGES)};
         const [{ ZxcvbnFactory }, common, en] = await Promise.all(names.map((n) => import(n)));
         const zxcvbn = new ZxcvbnFactory({ l33tTable: {}, dictionary: { ...common.dictionary, ...en.dictionary },
           graphs: common.adjacencyGraphs, translations: en.translations });
         const result = zxcvbn.check('Password1Password1Password1');
         console.log(JSON.stringify({ where: names.map((n) => import.meta.resolve(n)),
           words: en.dictionary['commonWords-en'].length, passwords: common.dictionary['passwords-common'].length,
           guessesLog10: result.guessesLog10, patterns: result.sequence.map((m) => m.pattern) }));`,
      ],
      { cwd: asset, env: { PATH: process.env.PATH }, encoding: 'utf8' },
    );
    expect(probe.stderr).toBe('');
    const judged = JSON.parse(probe.stdout);
    for (const where of judged.where) expect(where.startsWith(`file://${asset}/node_modules/`)).toBe(true);
    expect(judged.words).toBeGreaterThan(10_000);
    expect(judged.passwords).toBeGreaterThan(10_000);
    expect(judged.patterns).toContain('repeat');
    expect(judged.guessesLog10).toBeLessThan(0.75 * 'Password1Password1Password1'.length);
    // Only what runs is shipped: no sources, maps or type declarations.
    const en = readdirSync(join(asset, 'node_modules/@zxcvbn-ts/language-en'), { recursive: true }).map(
      String,
    );
    expect(en.some((f) => /\.map$|\.d\.ts$|^src/.test(f))).toBe(false);
  });
});
