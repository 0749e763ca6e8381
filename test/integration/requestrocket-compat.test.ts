import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createProxyFixture } from '../helpers/integrity.ts';
import { startTestGateway, type TestGateway } from '../helpers/local.ts';
import { type RecordingUpstream, send, startRecordingUpstream } from '../helpers/proxy-fixtures.ts';

/**
 * "Moving over is a change of host name": request bodies shaped as RequestRocket documents them are
 * accepted and mean exactly what keygate's own form means.
 */
describe('RequestRocket-shaped requests', () => {
  let gw: TestGateway;
  let upstream: RecordingUpstream;
  const c = () => `/clients/${gw.admin.clientId}`;
  const strip = (rule: Record<string, unknown>) => {
    const { ruleId: _r, createdAt: _c, updatedAt: _u, parentId: _p, ...rest } = rule;
    return rest;
  };

  beforeAll(async () => {
    upstream = await startRecordingUpstream();
    gw = await startTestGateway({ targetAllowlist: [`127.0.0.1:${upstream.port}`] });
  });
  afterAll(async () => {
    await gw.close();
    await upstream.close();
  });

  it('answers the Core API under /api/… as under /…', async () => {
    const plain = await gw.api('GET', '/users/me');
    const prefixed = await gw.api('GET', '/api/users/me');
    expect(prefixed.status).toBe(200);
    expect(prefixed.body).toEqual(plain.body);
    expect((await gw.api('GET', `/api${c()}/credentials`)).status).toBe(200);
    expect((await gw.api('GET', '/apiary/users/me')).status).toBe(404);
  });

  it('takes {configuration: {limits}} as {limits}', async () => {
    const rr = await gw.api('PUT', `${c()}/configuration`, {
      body: { configuration: { limits: { requestsPerMinute: 321, requestsPerDay: 4321 } } },
    });
    expect(rr.status).toBe(200);
    expect(rr.body.limits).toEqual({ requestsPerMinute: 321, requestsPerDay: 4321 });
    const own = await gw.api('PUT', `${c()}/configuration`, { body: { limits: { requestsPerMinute: 600 } } });
    expect(own.body.limits).toEqual({ requestsPerMinute: 600, requestsPerDay: 4321 });
    // Anything else around `configuration` is still an unknown field.
    expect(
      (await gw.api('PUT', `${c()}/configuration`, { body: { configuration: { limits: {} }, extra: 1 } }))
        .status,
    ).toBe(400);
  });

  it('takes member roles in any case (Owner, Admin, User) and stores them lower case', async () => {
    const user = await gw.api('POST', '/users', { body: { userName: 'rr-user' } });
    const client = await gw.api('POST', '/clients', {
      body: { clientName: 'rr', clientMembers: [{ userId: user.body.userId, roles: ['Admin'] }] },
    });
    expect(client.status).toBe(201);
    expect(client.body.clientMembers).toContainEqual({ userId: user.body.userId, roles: ['admin'] });
    // The role means what `admin` means: the user may create a target, not change members.
    const path = `/clients/${client.body.clientId}`;
    expect(
      (
        await gw.api('PUT', path, {
          token: user.body.token,
          body: { clientMembers: [{ userId: user.body.userId, roles: ['Owner'] }] },
        })
      ).status,
    ).toBe(403);
    const updated = await gw.api('PUT', path, {
      body: {
        clientMembers: [
          { userId: gw.admin.userId, roles: ['Owner'] },
          { userId: user.body.userId, roles: ['User'] },
        ],
      },
    });
    expect(updated.body.clientMembers).toEqual([
      { userId: gw.admin.userId, roles: ['owner'] },
      { userId: user.body.userId, roles: ['user'] },
    ]);
    expect(
      (await gw.api('PUT', path, { body: { clientMembers: [{ userId: 'x', roles: ['Boss'] }] } })).status,
    ).toBe(400);
  });

  it('lists credentials with ?includeTemporary=, and list answers carry a message', async () => {
    for (const v of ['true', 'false']) {
      const res = await gw.api('GET', `${c()}/credentials?includeTemporary=${v}`);
      expect(res.status).toBe(200);
      expect(typeof res.body.message).toBe('string');
      expect(Array.isArray(res.body.credentials)).toBe(true);
    }
    expect((await gw.api('GET', `${c()}/credentials?includeTemporary=maybe`)).status).toBe(400);
    for (const list of ['/clients', '/users/tokens', `${c()}/targets`, `${c()}/proxies`])
      expect(typeof (await gw.api('GET', list)).body.message).toBe('string');
  });

  it('takes every RequestRocket rule shape and stores the same rule as keygate’s own form', async () => {
    const cred = await gw.api('POST', `${c()}/credentials`, {
      body: {
        credentialType: 'proxy',
        credentialAuthType: 'key',
        credentialName: 'rr-rules',
        credentialRegion: 'us-east-1',
        credentialSecret: {},
      },
    });
    const rules = `${c()}/credentials/${cred.body.credentialId}/rules`;
    const same = async (rr: object, own: object) => {
      const a = await gw.api('POST', rules, { body: rr });
      const b = await gw.api('POST', rules, { body: own });
      expect({ rr: a.status, own: b.status }).toEqual({ rr: 201, own: 201 });
      expect(strip(a.body)).toEqual(strip(b.body));
    };
    const base = { effect: 'allow', methods: ['GET'], priority: 10 };
    await same(
      { ...base, path: { pattern: '^/v2/inventory/.*', presence: 'must_exist' } },
      { ...base, path: { path: { pattern: '^/v2/inventory/.*' }, presence: 'must_exist' } },
    );
    await same(
      { ...base, pathPattern: '^/v2/orders/.*', pathPresence: 'absent' },
      { ...base, path: { path: { pattern: '^/v2/orders/.*' }, presence: 'must_not_exist' } },
    );
    await same(
      {
        ...base,
        body: [{ jsonPath: { pattern: '$.amount' }, matchValue: { pattern: '^[0-9]+$', flags: '' } }],
      },
      { ...base, body: [{ jsonPath: '$.amount', matchValue: { pattern: '^[0-9]+$' } }] },
    );
    await same(
      { ...base, body: [{ jsonPath: '$.mode', matchValue: { pattern: '^test$', flags: 'i' } }] },
      { ...base, body: [{ jsonPath: '$.mode', matchValue: { pattern: '(?i)^test$' } }] },
    );
    // Flags that are not RE2 inline flags are refused, not dropped.
    expect(
      (
        await gw.api('POST', rules, {
          body: { ...base, body: [{ jsonPath: '$.x', matchValue: { pattern: 'a', flags: 'g' } }] },
        })
      ).status,
    ).toBe(400);
  });

  it('takes the proxy key in an Authorization query parameter when the credential lists it, and never forwards it', async () => {
    const f = await createProxyFixture(gw, upstream);
    const call = (query: string) => send(gw.stack.proxyUrl, { path: `/api/${f.proxyId}/v2/items?${query}` });
    const key = encodeURIComponent(f.key);
    // Off by default: a key in a URL ends up in logs upstream of keygate.
    expect((await call(`Authorization=${key}&page=2`)).status).toBe(401);
    const listed = await gw.api('PUT', `${c()}/credentials/${f.proxyCredentialId}`, {
      body: { credentialKeyLocations: ['authorization', 'query:Authorization'] },
    });
    expect(listed.status).toBe(200);
    const before = upstream.received.length;
    expect((await call(`Authorization=${key}&page=2`)).status).toBe(200);
    const got = upstream.received.slice(before);
    expect(got.map((r) => r.url)).toEqual(['/v2/items?page=2']);
    expect(JSON.stringify(got)).not.toContain(f.key);
  });
});
