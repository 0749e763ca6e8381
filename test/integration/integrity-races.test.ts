import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { queueConcurrentWriters } from '../../lambdas/storage/transact.ts';
import { createProxyFixture, probe } from '../helpers/integrity.ts';
import { startTestGateway, type TestGateway } from '../helpers/local.ts';
import { type RecordingUpstream, startRecordingUpstream } from '../helpers/proxy-fixtures.ts';

/**
 * SPEC "Consistency" under races: two writers released together (a barrier), many runs, and an
 * invariant checked after each: 0 violations. The in-process writer queue is off, so the writers
 * collide in the store as two Lambda instances would and only the transactions' conditions decide.
 */
const RUNS = 30;

describe('revocation races', () => {
  let gw: TestGateway;
  let upstream: RecordingUpstream;
  const c = () => `/clients/${gw.admin.clientId}`;

  beforeAll(async () => {
    queueConcurrentWriters(false);
    upstream = await startRecordingUpstream();
    gw = await startTestGateway({ targetAllowlist: ['127.0.0.1', `127.0.0.1:${upstream.port}`] });
  });
  afterAll(async () => {
    queueConcurrentWriters(true);
    await gw.close();
    await upstream.close();
  });

  /** Starts both calls in the same tick, after both are ready. */
  async function together<A, B>(a: () => Promise<A>, b: () => Promise<B>): Promise<[A, B]> {
    let release!: () => void;
    const barrier = new Promise<void>((r) => {
      release = r;
    });
    const both = Promise.all([barrier.then(a), barrier.then(b)]);
    release();
    return both;
  }

  const tokenWorks = async (token: string) => (await gw.api('GET', '/users/me', { token })).status === 200;

  it('token rotation racing its revocation: once the revoke answered, no token of that id works', async () => {
    const violations: string[] = [];
    for (let run = 0; run < RUNS; run++) {
      const created = await gw.api('POST', '/users/tokens', { body: { tokenName: `race-${run}` } });
      const id = created.body.tokenId;
      const [rotated, revoked] = await together(
        () => gw.api('POST', `/users/tokens/${id}`),
        () => gw.api('DELETE', `/users/tokens/${id}`),
      );
      if (revoked.status !== 204) violations.push(`run ${run}: revoke answered ${revoked.status}`);
      const listed = (await gw.api('GET', '/users/tokens?limit=1000')).body.tokens.some(
        (t: { tokenId: string }) => t.tokenId === id,
      );
      if (listed) violations.push(`run ${run}: revoked token still listed`);
      if (await tokenWorks(created.body.token)) violations.push(`run ${run}: old token works`);
      if (rotated.status === 200 && (await tokenWorks(rotated.body.newToken)))
        violations.push(`run ${run}: rotated token works after the revoke answered`);
    }
    expect(violations).toEqual([]);
  }, 300_000);

  it('removing a member racing that member renaming the client: the removal holds', async () => {
    const violations: string[] = [];
    const user = await gw.api('POST', '/users', { body: { userName: 'racer' } });
    for (let run = 0; run < RUNS; run++) {
      const client = await gw.api('POST', '/clients', {
        body: { clientName: `race-${run}`, clientMembers: [{ userId: user.body.userId, roles: ['admin'] }] },
      });
      const path = `/clients/${client.body.clientId}`;
      const [removed] = await together(
        () =>
          gw.api('PUT', path, { body: { clientMembers: [{ userId: gw.admin.userId, roles: ['owner'] }] } }),
        () => gw.api('PUT', path, { token: user.body.token, body: { clientName: `renamed-${run}` } }),
      );
      if (removed.status !== 200) violations.push(`run ${run}: removal answered ${removed.status}`);
      const shown = (await gw.api('GET', path)).body;
      if (shown.clientMembers.some((m: { userId: string }) => m.userId === user.body.userId))
        violations.push(`run ${run}: removed member is back`);
      if ((await gw.api('GET', path, { token: user.body.token })).status !== 404)
        violations.push(`run ${run}: removed member still gets in`);
      const mine = (await gw.api('GET', '/clients?limit=1000', { token: user.body.token })).body.clients;
      if (mine.some((x: { clientId: string }) => x.clientId === client.body.clientId))
        violations.push(`run ${run}: removed member still lists the client`);
    }
    expect(violations).toEqual([]);
  }, 300_000);

  it('repointing a proxy racing the deletion of the new credential: a deleted secret is never injected', async () => {
    const violations: string[] = [];
    for (let run = 0; run < RUNS; run++) {
      const f = await createProxyFixture(gw, upstream);
      const secret = `fresh-${run}-${Math.random().toString(36).slice(2)}`;
      const tc2 = await gw.api('POST', `${c()}/credentials`, {
        body: {
          credentialType: 'target',
          credentialAuthType: 'apiKey',
          credentialName: 'fresh',
          credentialRegion: 'us-east-1',
          credentialSecret: { key: secret, headerName: 'X-Vendor-Key' },
        },
      });
      const [, deleted] = await together(
        () =>
          gw.api('PUT', `${c()}/proxies/${f.proxyId}`, {
            body: { proxyTargetCredentialId: tc2.body.credentialId },
          }),
        () => gw.api('DELETE', `${c()}/credentials/${tc2.body.credentialId}`),
      );
      if (deleted.status !== 204) violations.push(`run ${run}: delete answered ${deleted.status}`);
      const p = await probe(gw.stack.proxyUrl, upstream, f.proxyId, f.key);
      if (p.reached && p.vendorKey === secret) violations.push(`run ${run}: the deleted secret was injected`);
    }
    expect(violations).toEqual([]);
  }, 300_000);

  it('deactivating a proxy racing a rename: the deactivation is never overwritten', async () => {
    const violations: string[] = [];
    for (let run = 0; run < RUNS; run++) {
      const f = await createProxyFixture(gw, upstream);
      const path = `${c()}/proxies/${f.proxyId}`;
      const [off] = await together(
        () => gw.api('PUT', path, { body: { proxyActive: false } }),
        () => gw.api('PUT', path, { body: { proxyName: `renamed-${run}` } }),
      );
      if (off.status !== 200) violations.push(`run ${run}: deactivation answered ${off.status}`);
      if ((await gw.api('GET', path)).body.proxyActive !== false)
        violations.push(`run ${run}: shown active again`);
      if ((await probe(gw.stack.proxyUrl, upstream, f.proxyId, f.key)).reached)
        violations.push(`run ${run}: a deactivated proxy forwarded`);
    }
    expect(violations).toEqual([]);
  }, 300_000);
});
