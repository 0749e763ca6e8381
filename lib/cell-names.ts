import type { IConstruct } from 'constructs';

/**
 * Physical names of a regional cell's resources. They are deterministic (derived from the region
 * alone) so that the Core API in the home region can name every cell's table, KMS key and stream
 * without a cross-region CloudFormation reference: the home stack never imports anything from the
 * other cells, and each cell deploys on its own.
 *
 * Several installations can share an account and region: each has its own `stage` (context
 * `-c stage=prod`), which goes into every name (`keygate-prod-…`). Without a stage the names are
 * the plain `keygate-…` ones.
 */
export interface CellNames {
  region: string;
  /** The cell's single table (in the home cell it also holds users, tokens and clients). */
  tableName: string;
  /** Alias of the cell's customer-managed KMS key; the functions address the key by it. */
  keyAlias: string;
  /** The cell's telemetry stream. */
  streamName: string;
}

/** Region names as AWS spells them (`us-east-1`, `ap-southeast-2`, `us-gov-west-1`). */
const REGION = /^[a-z]{2}(-[a-z]+)+-\d$/;

/** A stage name: lower-case letters and digits, starting with a letter, at most 12 characters. */
const STAGE = /^[a-z][a-z0-9]{0,11}$/;

/**
 * The name prefix of an installation: `keygate`, or `keygate-<stage>`. Checked here, where every
 * name is built, so a stage that would make an invalid or too long AWS name fails the synth.
 */
export function installPrefix(stage?: string): string {
  if (stage === undefined) return 'keygate';
  if (!STAGE.test(stage))
    throw new Error(`Not a stage name: "${stage}" (a-z and 0-9, starting with a letter, at most 12)`);
  return `keygate-${stage}`;
}

/** The installation's stage from the context (`-c stage=prod`); undefined when none is set. */
export function stageOf(scope: IConstruct): string | undefined {
  const value = scope.node.tryGetContext('stage');
  return value === undefined || value === null || value === '' ? undefined : String(value);
}

/** Names of the cell in `region` of the installation `stage`. */
export function cellNames(region: string, stage?: string): CellNames {
  const prefix = installPrefix(stage);
  return {
    region,
    tableName: `${prefix}-${region}`,
    keyAlias: `alias/${prefix}-${region}`,
    streamName: `${prefix}-telemetry-${region}`,
  };
}

/** Name of the Core API's execution role; cells in other regions name it in their key policies. */
export function coreApiRoleName(homeRegion: string, stage?: string): string {
  return `${installPrefix(stage)}-core-api-${homeRegion}`;
}

/**
 * Reads the served regions from the `regions` context value (`-c regions=us-east-1,eu-west-1`).
 * The first region is the home region: it hosts the Core API and the users, tokens and clients.
 */
export function parseRegions(raw: unknown): string[] {
  const text = typeof raw === 'string' ? raw : Array.isArray(raw) ? raw.join(',') : '';
  const regions = text
    .split(',')
    .map((r) => r.trim())
    .filter((r) => r.length > 0);
  if (regions.length === 0)
    throw new Error('No regions: give a comma-separated list, e.g. us-east-1,eu-west-1 (cdk: -c regions=…)');
  for (const region of regions) {
    if (!REGION.test(region)) throw new Error(`Not a region name: "${region}"`);
  }
  if (new Set(regions).size !== regions.length) throw new Error(`A region is listed twice: ${text}`);
  return regions;
}

/**
 * The `KEYGATE_CELLS` value for a function (see `lambdas/shared/config.ts`): the names of the
 * cells it may reach. Names only — no secret ever goes into an environment variable.
 */
export function cellsEnvironment(regions: Iterable<string>, stage?: string): string {
  const cells: Record<string, { tableName: string; kmsKeyId: string; streamName: string }> = {};
  for (const region of [...regions].sort()) {
    const names = cellNames(region, stage);
    cells[region] = { tableName: names.tableName, kmsKeyId: names.keyAlias, streamName: names.streamName };
  }
  return JSON.stringify(cells);
}
