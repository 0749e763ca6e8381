import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { ProxyItem } from '../../lambdas/storage/items.ts';
import { keys } from '../../lambdas/storage/keys.ts';
import { deleteSnapshot, readSnapshot, rebuildSnapshot } from '../../lambdas/storage/snapshot.ts';
import { putItem } from '../../lambdas/storage/table.ts';
import { startTestGateway, type TestGateway } from '../helpers/local.ts';

/** The snapshot's versioning invariants, against the embedded DynamoDB (no transactions). */
describe('proxy snapshot versioning', () => {
  let gw: TestGateway;
  const cell = () => gw.stack.deps.cells['us-east-1']!;
  const clientId = 'c-snap';
  const proxy = (proxyId: string): ProxyItem => ({
    proxyId,
    clientId,
    proxyName: 'p',
    proxyRegion: 'us-east-1',
    proxyProxyCredentialId: 'pc',
    proxyTargetId: 't',
    proxyTargetCredentialId: 'tc',
    proxyDefaultRuleEffect: 'deny',
    proxyActive: true,
    proxyMaxRequestsPerMinute: 1,
    proxyMaxRequestsPerDay: 1,
    createdAt: '2026-01-01T00:00:00Z',
    updatedAt: '2026-01-01T00:00:00Z',
  });
  const now = new Date('2026-01-01T00:00:00Z');

  beforeAll(async () => {
    gw = await startTestGateway();
  });
  afterAll(() => gw.close());

  it('only the first build creates the item; later builds need it and raise the version', async () => {
    const p = proxy('p1');
    // A rebuild for a proxy whose snapshot does not exist yet writes nothing.
    await putItem(cell(), { ...keys.proxy(clientId, p.proxyId), ...p });
    expect(await rebuildSnapshot(cell(), clientId, p.proxyId, now)).toBeUndefined();
    expect(await readSnapshot(cell(), p.proxyId)).toBeUndefined();
    const v1 = await rebuildSnapshot(cell(), clientId, p.proxyId, now, p);
    expect(v1).toBeGreaterThan(0);
    // A second "first build" cannot overwrite.
    expect(await rebuildSnapshot(cell(), clientId, p.proxyId, now, p)).toBeUndefined();
    const v2 = await rebuildSnapshot(cell(), clientId, p.proxyId, now);
    expect(v2).toBeGreaterThan(v1!);
    expect((await readSnapshot(cell(), p.proxyId))!.version).toBe(v2);
    // The snapshot of a proxy whose target is gone serves nothing.
    expect((await readSnapshot(cell(), p.proxyId))!.proxyActive).toBe(false);
  });

  it('a stale rebuild never overwrites a newer snapshot', async () => {
    const p = proxy('p2');
    await putItem(cell(), { ...keys.proxy(clientId, p.proxyId), ...p });
    await rebuildSnapshot(cell(), clientId, p.proxyId, now, p);
    // A rebuild that drew a later ticket has already written version 1000.
    await cell().ddb.send(
      new UpdateCommand({
        TableName: cell().tableName,
        Key: keys.proxySnapshot(p.proxyId),
        UpdateExpression: 'SET #v = :v, proxyName = :n',
        ExpressionAttributeNames: { '#v': 'version' },
        ExpressionAttributeValues: { ':v': 1000, ':n': 'newer' },
      }),
    );
    expect(await rebuildSnapshot(cell(), clientId, p.proxyId, now)).toBeUndefined();
    expect((await readSnapshot(cell(), p.proxyId)) as unknown).toMatchObject({
      version: 1000,
      proxyName: 'newer',
    });
  });

  it('a late rebuild cannot bring back a deleted snapshot', async () => {
    const p = proxy('p3');
    await putItem(cell(), { ...keys.proxy(clientId, p.proxyId), ...p });
    await rebuildSnapshot(cell(), clientId, p.proxyId, now, p);
    await deleteSnapshot(cell(), p.proxyId);
    // The proxy item is still there (a rebuild that read it before the delete), yet nothing is written.
    expect(await rebuildSnapshot(cell(), clientId, p.proxyId, now)).toBeUndefined();
    expect(await readSnapshot(cell(), p.proxyId)).toBeUndefined();
  });
});
