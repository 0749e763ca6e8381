import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { bootstrapFirstAdmin, type FirstAdmin } from '../lambdas/control-plane/bootstrap.ts';
import { type Config, configFromEnv } from '../lambdas/shared/config.ts';
import { createDeps, type Endpoints } from '../lambdas/shared/deps.ts';
import { cellNames, cellsEnvironment, parseRegions } from '../lib/cell-names.ts';

/**
 * `npm run admin:create -- --regions us-east-1,eu-west-1`: creates the first platform admin, a
 * first client and the admin's token in a deployed keygate, with the deployer's own AWS
 * credentials (the SDK's default chain: env, profile, SSO…). It writes straight to the home table,
 * so it needs no default password and nothing in stack outputs; the token is printed once, here.
 * A second run finds the bootstrap marker and changes nothing.
 */
export interface CreateAdminOptions {
  /** Served regions as deployed (`-c regions=…`); the first is home. */
  regions: string[];
  /** The installation's stage (`-c stage=…` at deploy); absent for an install without one. */
  stage?: string;
  userName?: string;
  userEmail?: string;
  clientName?: string;
}

/** The same configuration the deployed Core API reads, built from the deterministic cell names. */
export function adminConfig(regions: string[], stage?: string): Config {
  const home = regions[0]!;
  return configFromEnv({
    AWS_REGION: home,
    KEYGATE_TABLE_NAME: cellNames(home, stage).tableName,
    KEYGATE_CELLS: cellsEnvironment(regions, stage),
  });
}

/** Creates the first admin once; undefined when the table was bootstrapped before. */
export async function createFirstAdmin(
  options: CreateAdminOptions,
  endpoints: Endpoints = {},
): Promise<FirstAdmin | undefined> {
  const deps = createDeps(adminConfig(options.regions, options.stage), endpoints);
  return bootstrapFirstAdmin(deps, {
    userName: options.userName,
    userEmail: options.userEmail,
    clientName: options.clientName,
  });
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      regions: { type: 'string' },
      stage: { type: 'string' },
      'user-name': { type: 'string' },
      email: { type: 'string' },
      'client-name': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(
      'usage: npm run admin:create -- [--regions us-east-1,eu-west-1] [--stage prod] [--user-name admin] [--email a@b] [--client-name default]\n' +
        'regions default to $KEYGATE_REGIONS, else $AWS_REGION; stage to $KEYGATE_STAGE; use the values you deployed with.',
    );
    return 0;
  }
  const regions = parseRegions(values.regions ?? process.env.KEYGATE_REGIONS ?? process.env.AWS_REGION ?? '');
  const admin = await createFirstAdmin({
    regions,
    stage: values.stage ?? process.env.KEYGATE_STAGE,
    userName: values['user-name'],
    userEmail: values.email,
    clientName: values['client-name'],
  });
  if (!admin) {
    console.error(
      `keygate in ${regions[0]} already has its first admin; nothing was changed. ` +
        'Create further users and tokens through the Core API (POST /users, POST /users/tokens).',
    );
    return 1;
  }
  console.log(`userId   ${admin.userId}`);
  console.log(`clientId ${admin.clientId}`);
  console.log(`tokenId  ${admin.tokenId}`);
  console.log(`token    ${admin.token}`);
  console.error('The token is shown only now: store it in your secret manager.');
  return 0;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().then(
    (code) => process.exit(code),
    (error: Error) => {
      // The SDK's message names the missing permission or credential; no stack trace for a CLI.
      console.error(`admin:create failed: ${error.name}: ${error.message}`);
      process.exit(2);
    },
  );
}
