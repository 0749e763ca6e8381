import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { startTestGateway, type TestGateway } from '../helpers/local.ts';

describe('identity, tokens and tenancy through the local HTTP front', () => {
  let gw: TestGateway;
  let alice: { userId: string; token: string };
  let bob: { userId: string; token: string };

  beforeAll(async () => {
    gw = await startTestGateway();
    const a = await gw.api('POST', '/users', { body: { userName: 'alice', userEmail: 'alice@example.com' } });
    const b = await gw.api('POST', '/users', { body: { userName: 'bob' } });
    alice = a.body;
    bob = b.body;
  });
  afterAll(() => gw.close());

  it('creates users with a first token, platform admins only', async () => {
    expect(alice.token).toMatch(/^kg_user_[0-9A-Za-z]{36}$/);
    const denied = await gw.api('POST', '/users', { token: alice.token, body: { userName: 'mallory' } });
    expect(denied.status).toBe(403);
    expect(denied.body).toMatchObject({ code: 'forbidden' });
  });

  it('answers /users/me for raw and Bearer tokens alike', async () => {
    const me = await gw.api('GET', '/users/me', { token: null, headers: { authorization: alice.token } });
    expect(me.status).toBe(200);
    expect(me.body).toMatchObject({
      userId: alice.userId,
      userName: 'alice',
      platformAdmin: false,
      clients: [],
    });
    expect(JSON.stringify(me.body)).not.toContain('kg_user_');
  });

  it('refuses missing, malformed and unknown tokens with one 401', async () => {
    for (const auth of [
      undefined,
      '',
      'Bearer ',
      'nope',
      'Bearer kg_user_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
    ]) {
      const res = await gw.api('GET', '/users/me', {
        token: null,
        headers: auth === undefined ? {} : { authorization: auth },
      });
      expect(res.status).toBe(401);
      expect(res.body).toEqual({
        message: 'Missing or invalid token',
        code: 'unauthorized',
        requestId: expect.any(String),
      });
    }
  });

  it('creates, lists, rotates and deletes tokens; dead tokens fail on the very next call', async () => {
    const created = await gw.api('POST', '/users/tokens', { token: alice.token, body: { tokenName: 'ci' } });
    expect(created.status).toBe(201);
    const { tokenId, token } = created.body;
    expect(token).toMatch(/^kg_user_/);

    const list = await gw.api('GET', '/users/tokens', { token: alice.token });
    expect(list.body.tokens.map((t: { tokenId: string }) => t.tokenId)).toContain(tokenId);
    expect(list.text).not.toContain(token);
    expect(list.text).not.toContain('tokenHash');

    const rotated = await gw.api('POST', `/users/tokens/${tokenId}`, { token: alice.token });
    expect(rotated.status).toBe(200);
    const { newToken } = rotated.body;
    expect(newToken).not.toBe(token);
    expect((await gw.api('GET', '/users/me', { token })).status).toBe(401);
    expect((await gw.api('GET', '/users/me', { token: newToken })).status).toBe(200);

    // Rotating your own token with the token itself works, and the old value dies.
    const self = await gw.api('POST', `/users/tokens/${tokenId}`, { token: newToken });
    expect(self.status).toBe(200);
    expect((await gw.api('GET', '/users/me', { token: newToken })).status).toBe(401);

    const deleted = await gw.api('DELETE', `/users/tokens/${tokenId}`, { token: alice.token });
    expect(deleted.status).toBe(204);
    expect((await gw.api('GET', '/users/me', { token: self.body.newToken })).status).toBe(401);
  });

  it("cannot rotate or delete someone else's token", async () => {
    const bobs = await gw.api('POST', '/users/tokens', { token: bob.token, body: {} });
    expect((await gw.api('POST', `/users/tokens/${bobs.body.tokenId}`, { token: alice.token })).status).toBe(
      404,
    );
    expect(
      (await gw.api('DELETE', `/users/tokens/${bobs.body.tokenId}`, { token: alice.token })).status,
    ).toBe(404);
    expect((await gw.api('GET', '/users/me', { token: bobs.body.token })).status).toBe(200);
  });

  it('refuses expired tokens', async () => {
    const past = await gw.api('POST', '/users/tokens', {
      token: alice.token,
      body: { expiresAt: '2001-01-01T00:00:00Z' },
    });
    expect(past.status).toBe(400);
    const soon = new Date(Date.now() + 1500).toISOString();
    const t = await gw.api('POST', '/users/tokens', { token: alice.token, body: { expiresAt: soon } });
    expect((await gw.api('GET', '/users/me', { token: t.body.token })).status).toBe(200);
    await new Promise((r) => setTimeout(r, 1600));
    expect((await gw.api('GET', '/users/me', { token: t.body.token })).status).toBe(401);
  });

  it('isolates clients: members see theirs, others get 404 on every route', async () => {
    const created = await gw.api('POST', '/clients', {
      token: alice.token,
      body: { clientName: 'alice-co' },
    });
    expect(created.status).toBe(201);
    const clientId = created.body.clientId;
    expect(created.body.clientMembers).toEqual([{ userId: alice.userId, roles: ['owner'] }]);

    const bobList = await gw.api('GET', '/clients', { token: bob.token });
    expect(bobList.body.clients.map((c: { clientId: string }) => c.clientId)).not.toContain(clientId);

    const probes: Array<[string, string, unknown?]> = [
      ['GET', `/clients/${clientId}`],
      ['PUT', `/clients/${clientId}`, { clientName: 'pwned' }],
      ['DELETE', `/clients/${clientId}`],
      ['PUT', `/clients/${clientId}/configuration`, { limits: { requestsPerMinute: 1 } }],
    ];
    for (const [method, path, body] of probes) {
      const res = await gw.api(method, path, { token: bob.token, body });
      expect(res.status).toBe(404);
      // Same answer as for a client that does not exist.
      const ghost = await gw.api(method, path.replace(clientId, '00000000-0000-4000-8000-000000000000'), {
        token: bob.token,
        body,
      });
      expect(ghost.status).toBe(404);
      expect(res.body.message).toBe(ghost.body.message);
    }
    expect((await gw.api('GET', `/clients/${clientId}`, { token: alice.token })).body.clientName).toBe(
      'alice-co',
    );
  });

  it('enforces roles: user reads, admin renames and configures, owner manages members and deletes', async () => {
    const c = await gw.api('POST', '/clients', { token: alice.token, body: { clientName: 'roles-co' } });
    const clientId = c.body.clientId;
    const asUser = await gw.api('PUT', `/clients/${clientId}`, {
      token: alice.token,
      body: {
        clientMembers: [
          { userId: alice.userId, roles: ['owner'] },
          { userId: bob.userId, roles: ['user'] },
        ],
      },
    });
    expect(asUser.status).toBe(200);
    expect((await gw.api('GET', `/clients/${clientId}`, { token: bob.token })).status).toBe(200);
    expect(
      (await gw.api('GET', '/clients', { token: bob.token })).body.clients.map(
        (x: { clientId: string }) => x.clientId,
      ),
    ).toContain(clientId);
    expect(
      (await gw.api('PUT', `/clients/${clientId}`, { token: bob.token, body: { clientName: 'x' } })).status,
    ).toBe(403);
    expect(
      (
        await gw.api('PUT', `/clients/${clientId}/configuration`, {
          token: bob.token,
          body: { limits: { requestsPerDay: 5 } },
        })
      ).status,
    ).toBe(403);

    await gw.api('PUT', `/clients/${clientId}`, {
      token: alice.token,
      body: {
        clientMembers: [
          { userId: alice.userId, roles: ['owner'] },
          { userId: bob.userId, roles: ['admin'] },
        ],
      },
    });
    const renamed = await gw.api('PUT', `/clients/${clientId}`, {
      token: bob.token,
      body: { clientName: 'renamed' },
    });
    expect(renamed.status).toBe(200);
    expect(renamed.body.clientName).toBe('renamed');
    const conf = await gw.api('PUT', `/clients/${clientId}/configuration`, {
      token: bob.token,
      body: { limits: { requestsPerMinute: 120 } },
    });
    expect(conf.body).toEqual({ limits: { requestsPerMinute: 120, requestsPerDay: 100000 } });
    const grab = await gw.api('PUT', `/clients/${clientId}`, {
      token: bob.token,
      body: { clientMembers: [{ userId: bob.userId, roles: ['owner'] }] },
    });
    expect(grab.status).toBe(403);
    expect((await gw.api('DELETE', `/clients/${clientId}`, { token: bob.token })).status).toBe(403);

    // Members must be real users and there must stay an owner.
    expect(
      (
        await gw.api('PUT', `/clients/${clientId}`, {
          token: alice.token,
          body: { clientMembers: [{ userId: bob.userId, roles: ['admin'] }] },
        })
      ).status,
    ).toBe(400);
    expect(
      (
        await gw.api('PUT', `/clients/${clientId}`, {
          token: alice.token,
          body: { clientMembers: [{ userId: 'ghost', roles: ['owner'] }] },
        })
      ).body.code,
    ).toBe('unknown_user');

    // Removing bob takes his access away at once.
    await gw.api('PUT', `/clients/${clientId}`, {
      token: alice.token,
      body: { clientMembers: [{ userId: alice.userId, roles: ['owner'] }] },
    });
    expect((await gw.api('GET', `/clients/${clientId}`, { token: bob.token })).status).toBe(404);

    expect((await gw.api('DELETE', `/clients/${clientId}`, { token: alice.token })).status).toBe(204);
    expect((await gw.api('GET', `/clients/${clientId}`, { token: alice.token })).status).toBe(404);
  });

  it('answers every kind of bad input with a clear 4xx JSON error', async () => {
    const cases: Array<[string, string, Parameters<TestGateway['api']>[2], number, string]> = [
      ['POST', '/clients', { rawBody: '{"clientName":' }, 400, 'invalid_json'],
      ['POST', '/clients', { rawBody: '[1,2' }, 400, 'invalid_json'],
      ['POST', '/clients', { body: {} }, 400, 'validation_failed'],
      ['POST', '/clients', { body: { clientName: 42 } }, 400, 'validation_failed'],
      ['POST', '/clients', { body: { clientName: 'x', surprise: true } }, 400, 'validation_failed'],
      ['POST', '/clients', { body: [] }, 400, 'validation_failed'],
      ['POST', '/clients', { body: { clientName: 'x'.repeat(300_000) } }, 413, 'payload_too_large'],
      // Membership is checked before the body: a client you are not in is a 404 whatever you send.
      [
        'PUT',
        '/clients/abc/configuration',
        { body: { limits: { requestsPerMinute: -1 } } },
        404,
        'not_found',
      ],
      ['POST', '/users/tokens', { body: { expiresAt: 'tomorrow' } }, 400, 'validation_failed'],
      ['GET', '/no/such/route', {}, 404, 'route_not_found'],
      ['PATCH', '/clients', {}, 404, 'route_not_found'],
    ];
    for (const [method, path, opts, status, code] of cases) {
      const res = await gw.api(method, path, opts);
      expect({ method, path, status: res.status, code: res.body?.code }).toEqual({
        method,
        path,
        status,
        code,
      });
      expect(res.headers.get('content-type')).toContain('application/json');
      expect(res.text).not.toMatch(/at .*\.ts:\d+/);
    }
    const fieldError = await gw.api('POST', '/clients', { body: { clientName: 42 } });
    expect(fieldError.body.message).toContain('body.clientName');
  });

  it('serves an OpenAPI 3.1 document generated from the routes', async () => {
    const res = await gw.api('GET', '/openapi.json', { token: null });
    expect(res.status).toBe(200);
    expect(res.body.openapi).toBe('3.1.0');
    expect(Object.keys(res.body.paths)).toEqual(
      expect.arrayContaining([
        '/users',
        '/users/me',
        '/users/tokens/{tokenId}',
        '/clients/{clientId}/configuration',
      ]),
    );
    expect(res.body.paths['/clients'].post.requestBody.content['application/json'].schema.required).toEqual([
      'clientName',
    ]);
  });
});
