import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { ProxyItem } from '../../lambdas/storage/items.ts';
import { type Key, keys } from '../../lambdas/storage/keys.ts';
import { commitChange, readSnapshot } from '../../lambdas/storage/snapshot.ts';
import { getItem, type Item, putItem } from '../../lambdas/storage/table.ts';
import { TxConflict, txCreate, txDelete, txReplace } from '../../lambdas/storage/transact.ts';
import { startTestGateway, type TestGateway } from '../helpers/local.ts';

/** The snapshot commit's guarantees, against the embedded DynamoDB (with its transactions). */
describe('proxy snapshot commits', () => {
  let gw: TestGateway;
  const cell = () => gw.stack.deps.cells['us-east-1']!;
  const clientId = 'c-snap';
  const proxy = (proxyId: string): ProxyItem & Key & Item => ({
    ...keys.proxy(clientId, proxyId),
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
  const create = (p: ProxyItem & Key & Item) =>
    commitChange(
      cell(),
      clientId,
      { writes: [txCreate(cell(), p)], after: [[p, p]], proxyIds: [p.proxyId], createdProxyId: p.proxyId },
      now,
    );

  beforeAll(async () => {
    gw = await startTestGateway();
  });
  afterAll(() => gw.close());

  it('creates the proxy and its snapshot together, and raises the version on every change', async () => {
    const p = proxy('p1');
    await create(p);
    expect((await readSnapshot(cell(), p.proxyId))?.version).toBe(1);
    // The target does not exist: the snapshot serves nothing.
    expect((await readSnapshot(cell(), p.proxyId))?.proxyActive).toBe(false);
    const renamed = { ...p, proxyName: 'renamed', proxyActive: false };
    await commitChange(
      cell(),
      clientId,
      { writes: [txReplace(cell(), renamed, 1)], after: [[p, renamed]], proxyIds: [p.proxyId] },
      now,
    );
    expect((await readSnapshot(cell(), p.proxyId))?.version).toBe(2);
    expect((await getItem<Item>(cell(), keys.proxy(clientId, p.proxyId)))?.proxyName).toBe('renamed');
  });

  it('is cancelled, writing nothing, when the snapshot changed after it was read', async () => {
    const p = proxy('p2');
    await create(p);
    const send = cell().ddb.send.bind(cell().ddb);
    // Between this commit's snapshot read and its transaction, another writer moves the snapshot on.
    const spy = cell().ddb as unknown as { send: (c: unknown) => Promise<unknown> };
    spy.send = async (command: unknown) => {
      if ((command as object).constructor.name === 'TransactWriteCommand') {
        spy.send = send as never;
        await send(
          new UpdateCommand({
            TableName: cell().tableName,
            Key: keys.proxySnapshot(p.proxyId),
            UpdateExpression: 'SET #v = :v',
            ExpressionAttributeNames: { '#v': 'version' },
            ExpressionAttributeValues: { ':v': 7 },
          }),
        );
      }
      return send(command as never);
    };
    const renamed = { ...p, proxyName: 'lost' };
    await expect(
      commitChange(
        cell(),
        clientId,
        { writes: [txReplace(cell(), renamed, 1)], after: [[p, renamed]], proxyIds: [p.proxyId] },
        now,
      ),
    ).rejects.toBeInstanceOf(TxConflict);
    spy.send = send as never;
    expect((await getItem<Item>(cell(), keys.proxy(clientId, p.proxyId)))?.proxyName).toBe('p');
    expect((await readSnapshot(cell(), p.proxyId))?.version).toBe(7);
  });

  it('never brings back the snapshot of a deleted proxy', async () => {
    const p = proxy('p3');
    await create(p);
    await commitChange(
      cell(),
      clientId,
      { writes: [txDelete(cell(), p, 1)], after: [[p, null]], proxyIds: [], deletedProxyId: p.proxyId },
      now,
    );
    expect(await readSnapshot(cell(), p.proxyId)).toBeUndefined();
    // A change that still believes the proxy uses it (it read the proxy list before the delete).
    await putItem(cell(), { ...keys.credential(clientId, 'pc'), credentialId: 'pc', version: 1 });
    await commitChange(cell(), clientId, { writes: [], after: [], proxyIds: [p.proxyId] }, now);
    expect(await readSnapshot(cell(), p.proxyId)).toBeUndefined();
  });

  it('refuses every snapshot write once the client is being deleted', async () => {
    const p = proxy('p4');
    await putItem(cell(), { ...keys.clientCell('c-gone'), deleting: true });
    const gone = { ...p, ...keys.proxy('c-gone', 'p4'), clientId: 'c-gone' };
    await expect(
      commitChange(
        cell(),
        'c-gone',
        { writes: [txCreate(cell(), gone)], after: [[gone, gone]], proxyIds: ['p4'], createdProxyId: 'p4' },
        now,
      ),
    ).rejects.toMatchObject({ statusCode: 404 });
    expect(await readSnapshot(cell(), 'p4')).toBeUndefined();
    expect(await getItem(cell(), keys.proxy('c-gone', 'p4'))).toBeUndefined();
  });
});
