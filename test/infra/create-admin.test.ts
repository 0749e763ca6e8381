import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { authenticate } from '../../lambdas/control-plane/identity.ts';
import { createDeps } from '../../lambdas/shared/deps.ts';
import { type EmbeddedServices, startEmbeddedServices } from '../../local/embedded.ts';
import { ensureTable } from '../../local/provision.ts';
import { adminConfig, createFirstAdmin } from '../../scripts/create-admin.ts';

// `npm run admin:create` against the embedded DynamoDB: the same code path as against AWS, with
// the deployed table's deterministic name.
let services: EmbeddedServices;
let endpoints: {
  dynamodb: string;
  kms: string;
  kinesis: string;
  credentials: EmbeddedServices['credentials'];
};

beforeAll(async () => {
  services = await startEmbeddedServices();
  endpoints = {
    dynamodb: services.dynamodbEndpoint,
    kms: services.kms.endpoint,
    kinesis: services.kinesisEndpoint,
    credentials: services.credentials,
  };
  const deps = createDeps(adminConfig(['us-east-1', 'eu-west-1']), endpoints);
  await ensureTable(deps.home.ddb, 'keygate-us-east-1');
});
afterAll(() => services.close());

describe('admin:create', () => {
  it('targets the home table of the deployed app', () => {
    const config = adminConfig(['us-east-1', 'eu-west-1']);
    expect(config.homeRegion).toBe('us-east-1');
    expect(config.homeTableName).toBe('keygate-us-east-1');
    expect(Object.keys(config.cells).sort()).toEqual(['eu-west-1', 'us-east-1']);
  });

  it('targets the staged install when given its stage, the names the stack deployed', () => {
    const config = adminConfig(['us-east-1', 'eu-west-1'], 'prod');
    expect(config.homeTableName).toBe('keygate-prod-us-east-1');
    expect(config.cells['eu-west-1']!.kmsKeyId).toBe('alias/keygate-prod-eu-west-1');
  });

  it('creates the first admin once, with a working token, and never twice', async () => {
    const admin = await createFirstAdmin({ regions: ['us-east-1', 'eu-west-1'], userName: 'ops' }, endpoints);
    expect(admin?.token).toMatch(/^kg_user_[0-9A-Za-z]{36}$/);
    const deps = createDeps(adminConfig(['us-east-1', 'eu-west-1']), endpoints);
    const caller = await authenticate(deps, `Bearer ${admin!.token}`);
    expect(caller).toMatchObject({ userId: admin!.userId, platformAdmin: true });

    const again = await createFirstAdmin({ regions: ['us-east-1'] }, endpoints);
    expect(again).toBeUndefined();
  });
});
