import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { hashSecret } from '../../lambdas/crypto/secrets.ts';
import { keys } from '../../lambdas/storage/keys.ts';
import { putItem } from '../../lambdas/storage/table.ts';
import { createProxyFixture, failNthStoreCall, type ProxyFixture, probe } from '../helpers/integrity.ts';
import { startTestGateway, type TestGateway } from '../helpers/local.ts';
import { captureLogs } from '../helpers/logs.ts';
import { type RecordingUpstream, startRecordingUpstream } from '../helpers/proxy-fixtures.ts';

// Faults are provoked on purpose here: their WARN/ERROR lines go to a capture, not the test output.
const logs = captureLogs();
afterAll(() => logs.restore());

/**
 * SPEC "Consistency": at no instant — after any failed step — may what the data plane (or the
 * Core API's own authentication) accepts be more permissive than what the Core API shows, and a
 * failed operation can be retried to completion.
 *
 * Every revoking operation is run once for each of its DynamoDB calls with that call failing
 * (before it is sent, and after it was applied but before the answer came back). After the failed
 * attempt: if the API shows the revocation, the revoked thing must not work. Then the operation is
 * retried without faults: it must complete, and the revoked thing must not work.
 */
describe('revocation under injected store faults', () => {
  let gw: TestGateway;
  let upstream: RecordingUpstream;
  const c = () => `/clients/${gw.admin.clientId}`;

  beforeAll(async () => {
    upstream = await startRecordingUpstream();
    gw = await startTestGateway({ targetAllowlist: ['127.0.0.1', `127.0.0.1:${upstream.port}`] });
  });
  afterAll(async () => {
    await gw.close();
    await upstream.close();
  });

  const reaches = async (f: ProxyFixture, key = f.key) =>
    (await probe(gw.stack.proxyUrl, upstream, f.proxyId, key)).reached;
  const tokenWorks = async (token: string) => (await gw.api('GET', '/users/me', { token })).status === 200;

  interface Op {
    name: string;
    /** Builds what the operation acts on; answers the operation and the two views. */
    setup(): Promise<{
      run(): Promise<{ status: number }>;
      /** The Core API shows the revocation. */
      shown(): Promise<boolean>;
      /** The revoked thing still works somewhere. */
      works(): Promise<boolean>;
    }>;
  }

  const ops: Op[] = [
    {
      name: 'DELETE proxy',
      async setup() {
        const f = await createProxyFixture(gw, upstream);
        return {
          run: () => gw.api('DELETE', `${c()}/proxies/${f.proxyId}`),
          shown: async () => (await gw.api('GET', `${c()}/proxies/${f.proxyId}`)).status === 404,
          works: () => reaches(f),
        };
      },
    },
    {
      name: 'DELETE proxy credential',
      async setup() {
        const f = await createProxyFixture(gw, upstream);
        return {
          run: () => gw.api('DELETE', `${c()}/credentials/${f.proxyCredentialId}`),
          shown: async () =>
            (await gw.api('GET', `${c()}/credentials/${f.proxyCredentialId}`)).status === 404,
          works: () => reaches(f),
        };
      },
    },
    {
      name: 'DELETE target credential',
      async setup() {
        const f = await createProxyFixture(gw, upstream);
        return {
          run: () => gw.api('DELETE', `${c()}/credentials/${f.targetCredentialId}`),
          shown: async () =>
            (await gw.api('GET', `${c()}/credentials/${f.targetCredentialId}`)).status === 404,
          works: async () => {
            const p = await probe(gw.stack.proxyUrl, upstream, f.proxyId, f.key);
            return p.reached && p.vendorKey === f.vendorSecret;
          },
        };
      },
    },
    {
      name: 'PUT proxy proxyActive:false',
      async setup() {
        const f = await createProxyFixture(gw, upstream);
        return {
          run: () => gw.api('PUT', `${c()}/proxies/${f.proxyId}`, { body: { proxyActive: false } }),
          shown: async () => (await gw.api('GET', `${c()}/proxies/${f.proxyId}`)).body.proxyActive === false,
          works: () => reaches(f),
        };
      },
    },
    {
      name: 'POST deny rule',
      async setup() {
        const f = await createProxyFixture(gw, upstream);
        const rules = `${c()}/proxies/${f.proxyId}/rules`;
        return {
          run: () =>
            gw.api('POST', rules, {
              body: {
                effect: 'deny',
                priority: 1,
                path: { path: { pattern: '^/probe' }, presence: 'must_exist' },
              },
            }),
          shown: async () =>
            (await gw.api('GET', rules)).body.rules.some((r: { effect: string }) => r.effect === 'deny'),
          works: () => reaches(f),
        };
      },
    },
    {
      name: 'DELETE allow rule',
      async setup() {
        const f = await createProxyFixture(gw, upstream, { defaults: 'deny' });
        const rules = `${c()}/proxies/${f.proxyId}/rules`;
        const rule = await gw.api('POST', rules, {
          body: {
            effect: 'allow',
            priority: 1,
            path: { path: { pattern: '^/probe' }, presence: 'must_exist' },
          },
        });
        expect(rule.status).toBe(201);
        return {
          run: () => gw.api('DELETE', `${rules}/${rule.body.ruleId}`),
          shown: async () => (await gw.api('GET', `${rules}/${rule.body.ruleId}`)).status === 404,
          works: () => reaches(f),
        };
      },
    },
    {
      name: 'PUT proxy credential secret (key rotation)',
      async setup() {
        const f = await createProxyFixture(gw, upstream);
        const path = `${c()}/credentials/${f.proxyCredentialId}`;
        const before = (await gw.api('GET', path)).body.secretUpdatedAt;
        await new Promise((r) => setTimeout(r, 2)); // a distinct timestamp for the new secret
        return {
          run: () => gw.api('PUT', path, { body: { credentialSecret: {} } }),
          shown: async () => (await gw.api('GET', path)).body.secretUpdatedAt !== before,
          works: () => reaches(f),
        };
      },
    },
    {
      name: 'DELETE user token',
      async setup() {
        const created = await gw.api('POST', '/users/tokens', { body: { tokenName: 'doomed' } });
        expect(created.status).toBe(201);
        return {
          run: () => gw.api('DELETE', `/users/tokens/${created.body.tokenId}`),
          shown: async () =>
            !(await gw.api('GET', '/users/tokens?limit=1000')).body.tokens.some(
              (t: { tokenId: string }) => t.tokenId === created.body.tokenId,
            ),
          works: () => tokenWorks(created.body.token),
        };
      },
    },
    {
      name: 'POST user token rotation',
      async setup() {
        const created = await gw.api('POST', '/users/tokens', { body: { tokenName: 'rotated' } });
        expect(created.status).toBe(201);
        return {
          run: () => gw.api('POST', `/users/tokens/${created.body.tokenId}`),
          shown: async () =>
            (await gw.api('GET', '/users/tokens?limit=1000')).body.tokens.some(
              (t: { tokenId: string; rotatedAt?: string }) =>
                t.tokenId === created.body.tokenId && t.rotatedAt,
            ),
          works: () => tokenWorks(created.body.token),
        };
      },
    },
    {
      name: 'PUT client members (remove an admin)',
      async setup() {
        const user = await gw.api('POST', '/users', { body: { userName: `u${Math.random()}` } });
        const client = await gw.api('POST', '/clients', {
          body: {
            clientName: 'members',
            clientMembers: [{ userId: user.body.userId, roles: ['admin'] }],
          },
        });
        expect(client.status).toBe(201);
        const path = `/clients/${client.body.clientId}`;
        return {
          run: () =>
            gw.api('PUT', path, { body: { clientMembers: [{ userId: gw.admin.userId, roles: ['owner'] }] } }),
          shown: async () =>
            !(await gw.api('GET', path)).body.clientMembers.some(
              (m: { userId: string }) => m.userId === user.body.userId,
            ),
          works: async () => (await gw.api('GET', path, { token: user.body.token })).status === 200,
        };
      },
    },
    {
      name: 'DELETE client',
      async setup() {
        const client = await gw.api('POST', '/clients', { body: { clientName: 'doomed' } });
        const f = await createProxyFixture(gw, upstream, { clientId: client.body.clientId });
        const path = `/clients/${client.body.clientId}`;
        return {
          run: () => gw.api('DELETE', path),
          shown: async () => (await gw.api('GET', path)).status === 404,
          works: () => reaches(f),
        };
      },
    },
  ];

  for (const op of ops) {
    it(`${op.name}: every failed step leaves nothing more permissive than the API shows, and a retry completes`, async () => {
      const violations: string[] = [];
      for (const mode of ['before', 'after'] as const) {
        for (let n = 1; ; n++) {
          const target = await op.setup();
          // The thing works before it is revoked (else the checks below would prove nothing).
          if (!(await target.works())) throw new Error(`${op.name}: the fixture does not work to begin with`);
          const fault = failNthStoreCall(gw.stack.deps, n, mode);
          let first: { status: number };
          try {
            first = await target.run();
          } finally {
            fault.disarm();
          }
          const reachedFault = fault.calls() >= n;
          if ((await target.shown()) && (await target.works()))
            violations.push(`${mode} #${n}: shown revoked (answered ${first.status}) but still works`);
          if (!reachedFault) {
            expect(first.status).toBeLessThan(300);
            break;
          }
          const retry = await target.run();
          if (retry.status >= 300 && retry.status !== 404)
            violations.push(`${mode} #${n}: retry answered ${retry.status}`);
          if (!(await target.shown())) violations.push(`${mode} #${n}: retry did not complete`);
          if (await target.works()) violations.push(`${mode} #${n}: still works after the retry`);
          if (n > 60) throw new Error('runaway');
        }
      }
      expect(violations).toEqual([]);
    }, 300_000);
  }
});

describe('supplied-key claims left by a crash', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway();
  });
  afterAll(() => gw.close());

  const key = () => `sk_${randomBytes(24).toString('base64url')}`;
  const create = (secret: string) =>
    gw.api('POST', `/clients/${gw.admin.clientId}/credentials`, {
      body: {
        credentialType: 'proxy',
        credentialAuthType: 'apiKey',
        credentialName: 'supplied',
        credentialRegion: 'us-east-1',
        credentialSecret: { key: secret },
      },
    });
  /** A claim as a crash between the claim and the credential's write leaves it. */
  const orphan = (secret: string, ageMs: number) =>
    putItem(gw.stack.deps.home, {
      ...keys.proxyKeyHash(gw.admin.clientId, hashSecret(secret)),
      type: 'ProxyKeyHash',
      clientId: gw.admin.clientId,
      credentialId: 'never-written',
      claimedAt: new Date(Date.now() - ageMs).toISOString(),
    });

  it('an orphaned claim past its grace is taken over; a fresh one (a creation in flight) still refuses', async () => {
    const stale = key();
    await orphan(stale, 10 * 60_000);
    expect((await create(stale)).status).toBe(201);
    const fresh = key();
    await orphan(fresh, 0);
    expect(await create(fresh)).toMatchObject({ status: 409, body: { code: 'duplicate_key' } });
  });

  it('a claim held by a live credential always refuses', async () => {
    const secret = key();
    expect((await create(secret)).status).toBe(201);
    expect(await create(secret)).toMatchObject({ status: 409, body: { code: 'duplicate_key' } });
  });
});
