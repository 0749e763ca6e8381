import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { coreRoutes } from '../../lambdas/control-plane/api.ts';
import { openSecret } from '../../lambdas/crypto/envelope.ts';
import { hashSecret } from '../../lambdas/crypto/secrets.ts';
import { keys } from '../../lambdas/storage/keys.ts';
import { readSnapshot } from '../../lambdas/storage/snapshot.ts';
import { getItem } from '../../lambdas/storage/table.ts';
import { startTestGateway, type TestGateway } from '../helpers/local.ts';

/** Validation of every resource, references, immutability, snapshots on every write, tenancy. */
describe('credentials, targets, proxies and rules', () => {
  let gw: TestGateway;
  let c: string;
  const strong = () => `sk_${randomBytes(16).toString('hex')}`;
  const cell = () => gw.stack.deps.cells['us-east-1']!;

  beforeAll(async () => {
    gw = await startTestGateway({ regions: ['us-east-1', 'eu-west-1'] });
    c = gw.admin.clientId;
  });
  afterAll(() => gw.close());

  const post = (path: string, body: unknown) => gw.api('POST', `/clients/${c}${path}`, { body });
  const credential = async (body: Record<string, unknown>) => {
    const res = await post('/credentials', { credentialName: 'x', credentialRegion: 'us-east-1', ...body });
    expect(res.status).toBe(201);
    return res.body;
  };
  const proxyCred = (region = 'us-east-1') =>
    credential({ credentialType: 'proxy', credentialAuthType: 'apiKey', credentialRegion: region });
  const targetCred = (region = 'us-east-1') =>
    credential({
      credentialType: 'target',
      credentialAuthType: 'bearer',
      credentialRegion: region,
      credentialSecret: { token: strong() },
    });
  const target = async (region = 'us-east-1', extra: Record<string, unknown> = {}) => {
    const res = await post('/targets', {
      targetName: 't',
      targetBaseURL: 'https://api.example.com/v1',
      targetRegion: region,
      ...extra,
    });
    expect(res.status).toBe(201);
    return res.body;
  };
  const proxy = async (extra: Record<string, unknown> = {}) => {
    const [pc, t, tc] = await Promise.all([proxyCred(), target(), targetCred()]);
    const res = await post('/proxies', {
      proxyName: 'p',
      proxyRegion: 'us-east-1',
      proxyProxyCredentialId: pc.credentialId,
      proxyTargetId: t.targetId,
      proxyTargetCredentialId: tc.credentialId,
      ...extra,
    });
    expect(res.status).toBe(201);
    return { proxy: res.body, pc, t, tc };
  };

  describe('credential validation', () => {
    const base = { credentialName: 'n', credentialRegion: 'us-east-1' };
    const P = { ...base, credentialType: 'proxy' };
    const T = { ...base, credentialType: 'target' };
    const cases: Array<[string, Record<string, unknown>, string, string]> = [
      ['missing type', { ...base, credentialAuthType: 'apiKey' }, 'validation_failed', 'body.credentialType'],
      [
        'unknown auth type',
        { ...P, credentialAuthType: 'magic' },
        'validation_failed',
        'body.credentialAuthType',
      ],
      [
        'unknown region',
        { ...P, credentialAuthType: 'apiKey', credentialRegion: 'mars-1' },
        'unknown_region',
        'body.credentialRegion',
      ],
      [
        'jwtVerify on a target',
        {
          ...T,
          credentialAuthType: 'jwtVerify',
          credentialSecret: { jwksUrl: 'https://idp.example.com/jwks' },
        },
        'validation_failed',
        'body.credentialAuthType',
      ],
      [
        'custom on a proxy',
        { ...P, credentialAuthType: 'custom', credentialSecret: { headers: { 'x-a': 'b' } } },
        'validation_failed',
        'body.credentialAuthType',
      ],
      [
        'oauth2 on a proxy',
        {
          ...P,
          credentialAuthType: 'oauth2',
          credentialSecret: { tokenUrl: 'https://a.example.com/t', clientId: 'a', clientSecret: 'b' },
        },
        'validation_failed',
        'body.credentialAuthType',
      ],
      [
        'none on a proxy',
        { ...P, credentialAuthType: 'none' },
        'validation_failed',
        'body.credentialAuthType',
      ],
      [
        'placeholder key',
        { ...P, credentialAuthType: 'key', credentialSecret: { key: 'rr_live_xxxxxxxxxxxxxx' } },
        'weak_key',
        'body.credentialSecret.key',
      ],
      [
        'short key',
        { ...P, credentialAuthType: 'key', credentialSecret: { key: randomBytes(12).toString('hex') } },
        'weak_key',
        'body.credentialSecret.key',
      ],
      [
        'key with a space',
        { ...P, credentialAuthType: 'key', credentialSecret: { key: `${strong()} x` } },
        'weak_key',
        'body.credentialSecret.key',
      ],
      [
        'weak bearer token',
        { ...P, credentialAuthType: 'bearer', credentialSecret: { token: 'password123' } },
        'weak_key',
        'body.credentialSecret.token',
      ],
      [
        'weak basicAuth password',
        { ...P, credentialAuthType: 'basicAuth', credentialSecret: { username: 'u', password: 'hunter2' } },
        'weak_key',
        'body.credentialSecret.password',
      ],
      [
        'headerName on a proxy key',
        { ...P, credentialAuthType: 'apiKey', credentialSecret: { headerName: 'X-Key' } },
        'validation_failed',
        'body.credentialSecret.headerName',
      ],
      [
        'keyEnvironment with a supplied key',
        { ...P, credentialAuthType: 'apiKey', credentialSecret: { key: strong(), keyEnvironment: 'test' } },
        'validation_failed',
        'body.credentialSecret.keyEnvironment',
      ],
      [
        'unknown keyEnvironment',
        { ...P, credentialAuthType: 'apiKey', credentialSecret: { keyEnvironment: 'prod' } },
        'validation_failed',
        'body.credentialSecret.keyEnvironment',
      ],
      [
        'unknown secret field',
        { ...P, credentialAuthType: 'apiKey', credentialSecret: { kye: strong() } },
        'validation_failed',
        'body.credentialSecret',
      ],
      [
        'target key missing',
        { ...T, credentialAuthType: 'apiKey', credentialSecret: { headerName: 'X-Key' } },
        'validation_failed',
        'body.credentialSecret.key',
      ],
      [
        'target headerName and queryParam',
        {
          ...T,
          credentialAuthType: 'apiKey',
          credentialSecret: { key: 'k', headerName: 'a', queryParam: 'b' },
        },
        'validation_failed',
        'body.credentialSecret.queryParam',
      ],
      [
        'bad header name',
        { ...T, credentialAuthType: 'apiKey', credentialSecret: { key: 'k', headerName: 'X Key' } },
        'validation_failed',
        'body.credentialSecret.headerName',
      ],
      [
        'keyEnvironment on a target',
        { ...T, credentialAuthType: 'apiKey', credentialSecret: { key: 'k', keyEnvironment: 'live' } },
        'validation_failed',
        'body.credentialSecret.keyEnvironment',
      ],
      [
        'target token missing',
        { ...T, credentialAuthType: 'bearer', credentialSecret: {} },
        'validation_failed',
        'body.credentialSecret.token',
      ],
      [
        'basicAuth without username',
        { ...T, credentialAuthType: 'basicAuth', credentialSecret: { password: 'p' } },
        'validation_failed',
        'body.credentialSecret.username',
      ],
      [
        'basicAuth username with colon',
        { ...T, credentialAuthType: 'basicAuth', credentialSecret: { username: 'a:b', password: 'p' } },
        'validation_failed',
        'body.credentialSecret.username',
      ],
      [
        // A target may omit it (Stripe-style: the key as user name); a proxy key may not be empty.
        'proxy basicAuth with an empty password',
        {
          ...T,
          credentialType: 'proxy',
          credentialAuthType: 'basicAuth',
          credentialSecret: { username: 'u', password: '' },
        },
        'validation_failed',
        'body.credentialSecret.password',
      ],
      [
        'custom without headers',
        { ...T, credentialAuthType: 'custom', credentialSecret: { headers: {} } },
        'validation_failed',
        'body.credentialSecret.headers',
      ],
      [
        'custom sets Host',
        { ...T, credentialAuthType: 'custom', credentialSecret: { headers: { Host: 'evil.example' } } },
        'validation_failed',
        'body.credentialSecret.headers.Host',
      ],
      [
        'custom header value with CRLF',
        { ...T, credentialAuthType: 'custom', credentialSecret: { headers: { 'x-a': 'b\r\nx-b: c' } } },
        'validation_failed',
        'body.credentialSecret.headers',
      ],
      [
        'oauth2 without clientSecret',
        {
          ...T,
          credentialAuthType: 'oauth2',
          credentialSecret: { tokenUrl: 'https://a.example.com/t', clientId: 'a' },
        },
        'validation_failed',
        'body.credentialSecret.clientSecret',
      ],
      [
        'oauth2 token URL to metadata',
        {
          ...T,
          credentialAuthType: 'oauth2',
          credentialSecret: { tokenUrl: 'https://169.254.169.254/token', clientId: 'a', clientSecret: 'b' },
        },
        'unsafe_url',
        'body.credentialSecret.tokenUrl',
      ],
      [
        'jwtVerify with nothing to verify',
        { ...P, credentialAuthType: 'jwtVerify', credentialSecret: { issuer: 'me' } },
        'validation_failed',
        'body.credentialSecret',
      ],
      [
        'jwtVerify JWKS on localhost',
        { ...P, credentialAuthType: 'jwtVerify', credentialSecret: { jwksUrl: 'https://localhost/jwks' } },
        'unsafe_url',
        'body.credentialSecret.jwksUrl',
      ],
      [
        'jwtVerify weak secret',
        { ...P, credentialAuthType: 'jwtVerify', credentialSecret: { secret: 'secret' } },
        'weak_key',
        'body.credentialSecret.secret',
      ],
      [
        'expiresAt in the past',
        { ...P, credentialAuthType: 'apiKey', expiresAt: '2001-01-01T00:00:00Z' },
        'validation_failed',
        'body.expiresAt',
      ],
      [
        'expiresAt not a timestamp',
        { ...P, credentialAuthType: 'apiKey', expiresAt: 'tomorrow' },
        'validation_failed',
        'body.expiresAt',
      ],
      [
        'unknown field',
        { ...P, credentialAuthType: 'apiKey', credentialScope: 'all' },
        'validation_failed',
        'credentialScope',
      ],
      [
        'target basicAuth missing secret',
        { ...T, credentialAuthType: 'basicAuth' },
        'validation_failed',
        'body.credentialSecret',
      ],
    ];
    it.each(cases)('refuses %s', async (_name, body, code, field) => {
      const res = await post('/credentials', body);
      expect({ status: res.status, code: res.body.code }).toEqual({ status: 400, code });
      expect(res.body.message).toContain(field);
    });

    it('accepts every auth type with its secret shape; sealed and hashed as the data plane expects', async () => {
      const pw = strong();
      const basic = await credential({
        credentialType: 'proxy',
        credentialAuthType: 'basicAuth',
        credentialSecret: { username: 'svc', password: pw },
      });
      const stored = await getItem<Record<string, unknown>>(cell(), keys.credential(c, basic.credentialId));
      expect(stored?.secretHash).toBe(hashSecret(`svc:${pw}`));
      expect(basic.credentialSettings).toEqual({ username: 'svc' });

      const generated = await credential({
        credentialType: 'proxy',
        credentialAuthType: 'basicAuth',
        credentialSecret: { username: 'svc2' },
      });
      expect(generated.credentialSecret.password).toMatch(/^kg_live_/);

      const bearer = await credential({
        credentialType: 'proxy',
        credentialAuthType: 'bearer',
        credentialSecret: { token: strong(), prefix: 'Token ' },
      });
      expect(bearer.credentialSettings).toEqual({ prefix: 'Token ' });

      const jwt = await credential({
        credentialType: 'proxy',
        credentialAuthType: 'jwtVerify',
        credentialSecret: {
          jwksUrl: 'https://idp.example.com/.well-known/jwks.json',
          issuer: 'idp',
          secret: strong(),
        },
      });
      expect(jwt.credentialSettings).toMatchObject({
        jwksUrl: 'https://idp.example.com/.well-known/jwks.json',
      });
      expect(jwt.credentialSecret).toBeUndefined();

      const headers = { 'X-Tenant': 't1', 'X-Secret': strong() };
      const custom = await credential({
        credentialType: 'target',
        credentialAuthType: 'custom',
        credentialSecret: { headers },
      });
      expect(custom.credentialSettings).toEqual({ headerNames: ['X-Tenant', 'X-Secret'] });
      const sealed = (await getItem<Record<string, any>>(cell(), keys.credential(c, custom.credentialId)))!;
      const opened = await openSecret(cell().kms, sealed.sealedSecret, {
        clientId: c,
        credentialId: custom.credentialId,
        secretRevision: '1',
      });
      expect(JSON.parse(opened)).toEqual({ headers });

      const oauth = await credential({
        credentialType: 'target',
        credentialAuthType: 'oauth2',
        credentialSecret: {
          tokenUrl: 'https://auth.example.com/oauth/token',
          clientId: 'app',
          clientSecret: strong(),
          scope: 'read',
        },
      });
      expect(oauth.credentialSettings).toMatchObject({
        tokenUrl: 'https://auth.example.com/oauth/token',
        clientId: 'app',
      });
      expect(JSON.stringify(oauth)).not.toContain('clientSecret');

      for (const body of [
        { credentialType: 'target', credentialAuthType: 'none' },
        {
          credentialType: 'target',
          credentialAuthType: 'basicAuth',
          credentialSecret: { username: 'u', password: 'p' },
        },
        {
          credentialType: 'target',
          credentialAuthType: 'key',
          credentialSecret: { key: 'k', queryParam: 'api_key' },
        },
      ])
        await credential(body);
    });

    it('keeps one key per identity: a key another credential of the client uses is a 409 until freed', async () => {
      const key = strong();
      const body = { credentialType: 'proxy', credentialAuthType: 'apiKey', credentialSecret: { key } };
      const first = await credential(body);
      const dup = await post('/credentials', {
        ...body,
        credentialName: 'again',
        credentialRegion: 'us-east-1',
      });
      expect({ status: dup.status, code: dup.body.code }).toEqual({ status: 409, code: 'duplicate_key' });
      expect(dup.text).not.toContain(key);
      const other = await credential({ credentialType: 'proxy', credentialAuthType: 'apiKey' });
      const steal = await gw.api('PUT', `/clients/${c}/credentials/${other.credentialId}`, {
        body: { credentialSecret: { key } },
      });
      expect(steal.status).toBe(409);
      // Replacing the first credential's key frees the old one.
      await gw.api('PUT', `/clients/${c}/credentials/${first.credentialId}`, {
        body: { credentialSecret: {} },
      });
      expect(
        (
          await gw.api('PUT', `/clients/${c}/credentials/${other.credentialId}`, {
            body: { credentialSecret: { key } },
          })
        ).status,
      ).toBe(200);
      expect((await gw.api('DELETE', `/clients/${c}/credentials/${other.credentialId}`)).status).toBe(204);
      await credential(body);
      // Another client may hold the same bytes (no cross-tenant oracle).
      const elsewhere = (await gw.api('POST', '/clients', { body: { clientName: 'elsewhere' } })).body
        .clientId;
      const there = await gw.api('POST', `/clients/${elsewhere}/credentials`, {
        body: { ...body, credentialName: 'x', credentialRegion: 'us-east-1' },
      });
      expect(there.status).toBe(201);
    });

    it('updates in place: rename, expiry, secret replacement; immutable fields refused', async () => {
      const { proxy: p, pc } = await proxy();
      const got = await gw.api('GET', `/clients/${c}/credentials/${pc.credentialId}`);
      const echo = await gw.api('PUT', `/clients/${c}/credentials/${pc.credentialId}`, { body: got.body });
      expect(echo.status).toBe(200);
      expect(echo.body.credentialSecret).toBeUndefined();

      const expiresAt = new Date(Date.now() + 3_600_000).toISOString();
      const renamed = await gw.api('PUT', `/clients/${c}/credentials/${pc.credentialId}`, {
        body: { credentialName: 'renamed', expiresAt },
      });
      expect(renamed.body).toMatchObject({ credentialName: 'renamed', expiresAt });
      expect((await readSnapshot(cell(), p.proxyId))!.proxyCredential?.expiresAt).toBe(expiresAt);
      const cleared = await gw.api('PUT', `/clients/${c}/credentials/${pc.credentialId}`, {
        body: { expiresAt: null },
      });
      expect(cleared.body.expiresAt).toBeUndefined();
      expect((await readSnapshot(cell(), p.proxyId))!.proxyCredential?.expiresAt).toBeUndefined();

      const rotated = await gw.api('PUT', `/clients/${c}/credentials/${pc.credentialId}`, {
        body: { credentialSecret: {} },
      });
      const newKey = rotated.body.credentialSecret.key;
      expect(newKey).not.toBe(pc.credentialSecret.key);
      expect((await readSnapshot(cell(), p.proxyId))!.proxyCredential?.secretHash).toBe(hashSecret(newKey));

      for (const [field, value] of [
        ['credentialRegion', 'eu-west-1'],
        ['credentialType', 'target'],
        ['credentialAuthType', 'bearer'],
      ]) {
        const res = await gw.api('PUT', `/clients/${c}/credentials/${pc.credentialId}`, {
          body: { [field!]: value },
        });
        expect({ status: res.status, code: res.body.code }).toEqual({ status: 400, code: 'immutable_field' });
      }
      const badSecret = await gw.api('PUT', `/clients/${c}/credentials/${pc.credentialId}`, {
        body: { credentialSecret: { key: 'short' } },
      });
      expect(badSecret.body.code).toBe('weak_key');
    });
  });

  describe('targets', () => {
    it.each([
      'http://api.example.com',
      'https://2130706433/',
      'https://0x7f.1/',
      'https://0177.0.0.1/',
      'https://127.1/',
      'https://[::ffff:127.0.0.1]/',
      'https://[fe80::1%25eth0]/',
      'https://127.0.0.1./',
      'https://localhost/',
      'https://metadata.google.internal/',
      'https://db.internal/',
      'https://nas.local/',
      'https://intranet/',
      'https://user:pw@api.example.com/',
      'https://api.example.com/#x',
      'https://api.example.com/ x',
      'https://api.example.com/?a=b',
    ])('refuses the base URL %j with a 400 naming the field', async (url) => {
      const res = await post('/targets', { targetName: 't', targetBaseURL: url, targetRegion: 'us-east-1' });
      expect(res.status).toBe(400);
      expect(res.body.message).toContain('body.targetBaseURL');
    });

    it('validates test path and region; targetRegion is immutable; updates reach the snapshot', async () => {
      expect(
        (
          await post('/targets', {
            targetName: 't',
            targetBaseURL: 'https://a.example.com',
            targetRegion: 'mars-1',
          })
        ).body.code,
      ).toBe('unknown_region');
      for (const targetTestPath of ['health', '/a/%2F', '/../x'])
        expect(
          (
            await post('/targets', {
              targetName: 't',
              targetBaseURL: 'https://a.example.com',
              targetRegion: 'us-east-1',
              targetTestPath,
            })
          ).body.message,
        ).toContain('body.targetTestPath');
      const { proxy: p, t } = await proxy();
      const move = await gw.api('PUT', `/clients/${c}/targets/${t.targetId}`, {
        body: { targetRegion: 'eu-west-1' },
      });
      expect({ status: move.status, code: move.body.code }).toEqual({ status: 400, code: 'immutable_field' });
      const got = await gw.api('GET', `/clients/${c}/targets/${t.targetId}`);
      const put = await gw.api('PUT', `/clients/${c}/targets/${t.targetId}`, {
        body: {
          ...got.body,
          targetBaseURL: 'https://api2.example.com/v2/',
          targetDefaultRuleEffect: 'allow',
          targetTestPath: '/health',
        },
      });
      expect(put.status).toBe(200);
      expect((await readSnapshot(cell(), p.proxyId))!.target).toEqual({
        targetId: t.targetId,
        targetBaseURL: 'https://api2.example.com/v2',
        targetDefaultRuleEffect: 'allow',
      });
      const bad = await gw.api('PUT', `/clients/${c}/targets/${t.targetId}`, {
        body: { targetBaseURL: 'https://10.0.0.1' },
      });
      expect(bad.body.code).toBe('unsafe_url');
    });

    it('refuses to delete a target in use (409), deletes it once unused', async () => {
      const { proxy: p, t } = await proxy();
      const res = await gw.api('DELETE', `/clients/${c}/targets/${t.targetId}`);
      expect({ status: res.status, code: res.body.code }).toEqual({ status: 409, code: 'target_in_use' });
      expect(res.body.message).toContain(p.proxyId);
      expect((await gw.api('DELETE', `/clients/${c}/proxies/${p.proxyId}`)).status).toBe(204);
      expect((await gw.api('DELETE', `/clients/${c}/targets/${t.targetId}`)).status).toBe(204);
      expect((await gw.api('GET', `/clients/${c}/targets/${t.targetId}`)).status).toBe(404);
    });
  });

  describe('proxies', () => {
    it('checks references: existence, kind and region', async () => {
      const [pc, tc, t, euTarget, euPc] = await Promise.all([
        proxyCred(),
        targetCred(),
        target(),
        target('eu-west-1'),
        proxyCred('eu-west-1'),
      ]);
      const good = {
        proxyName: 'p',
        proxyRegion: 'us-east-1',
        proxyProxyCredentialId: pc.credentialId,
        proxyTargetId: t.targetId,
        proxyTargetCredentialId: tc.credentialId,
      };
      const cases: Array<[Record<string, unknown>, string, string]> = [
        [{ proxyProxyCredentialId: 'nope' }, 'unknown_reference', 'body.proxyProxyCredentialId'],
        [{ proxyTargetId: 'nope' }, 'unknown_reference', 'body.proxyTargetId'],
        [{ proxyTargetCredentialId: 'nope' }, 'unknown_reference', 'body.proxyTargetCredentialId'],
        [{ proxyProxyCredentialId: tc.credentialId }, 'wrong_credential_type', 'body.proxyProxyCredentialId'],
        [
          { proxyTargetCredentialId: pc.credentialId },
          'wrong_credential_type',
          'body.proxyTargetCredentialId',
        ],
        [{ proxyTargetId: euTarget.targetId }, 'region_mismatch', 'body.proxyTargetId'],
        [{ proxyProxyCredentialId: euPc.credentialId }, 'region_mismatch', 'body.proxyProxyCredentialId'],
        [{ proxyRegion: 'mars-1' }, 'unknown_region', 'body.proxyRegion'],
        [{ proxyName: undefined }, 'validation_failed', 'body.proxyName'],
        [{ proxyAlias: 'Not An Alias' }, 'validation_failed', 'body.proxyAlias'],
        [{ proxyDefaultRuleEffect: 'maybe' }, 'validation_failed', 'body.proxyDefaultRuleEffect'],
        [{ proxyMaxRequestsPerMinute: 0 }, 'validation_failed', 'body.proxyMaxRequestsPerMinute'],
        [{ proxyTimeouts: { idleMs: 999 } }, 'validation_failed', 'body.proxyTimeouts.idleMs'],
        [{ proxyTimeouts: { totalMs: 900_001 } }, 'validation_failed', 'body.proxyTimeouts.totalMs'],
        [{ proxyTimeouts: { ttlMs: 5000 } }, 'validation_failed', 'body.proxyTimeouts'],
      ];
      for (const [over, code, field] of cases) {
        const res = await post('/proxies', { ...good, ...over });
        expect({ over, status: res.status, code: res.body.code }).toEqual({ over, status: 400, code });
        expect(res.body.message).toContain(field);
      }
    });

    it('carries the proxy’s own stream deadlines to the snapshot; PUT changes them, null clears them', async () => {
      const { proxy: p } = await proxy({ proxyTimeouts: { idleMs: 30_000 } });
      expect(p.proxyTimeouts).toEqual({ idleMs: 30_000 });
      expect((await readSnapshot(cell(), p.proxyId))!.proxyTimeouts).toEqual({ idleMs: 30_000 });
      const put = await gw.api('PUT', `/clients/${c}/proxies/${p.proxyId}`, {
        body: { proxyTimeouts: { firstByteMs: 5000, totalMs: 120_000 } },
      });
      expect(put.status).toBe(200);
      expect((await readSnapshot(cell(), p.proxyId))!.proxyTimeouts).toEqual({
        firstByteMs: 5000,
        totalMs: 120_000,
      });
      // Another change leaves them as they are.
      await gw.api('PUT', `/clients/${c}/proxies/${p.proxyId}`, { body: { proxyName: 'renamed' } });
      expect((await readSnapshot(cell(), p.proxyId))!.proxyTimeouts).toEqual({
        firstByteMs: 5000,
        totalMs: 120_000,
      });
      await gw.api('PUT', `/clients/${c}/proxies/${p.proxyId}`, { body: { proxyTimeouts: null } });
      expect((await readSnapshot(cell(), p.proxyId))!.proxyTimeouts).toBeUndefined();
      expect((await gw.api('GET', `/clients/${c}/proxies/${p.proxyId}`)).body.proxyTimeouts).toBeUndefined();
    });

    it('takes limits from the client configuration; PUT swaps credentials; DELETE removes the snapshot', async () => {
      await gw.api('PUT', `/clients/${c}/configuration`, {
        body: { limits: { requestsPerMinute: 42, requestsPerDay: 4242 } },
      });
      const { proxy: p, pc } = await proxy({ proxyAlias: 'billing-api', proxyActive: false });
      expect(p).toMatchObject({
        proxyMaxRequestsPerMinute: 42,
        proxyMaxRequestsPerDay: 4242,
        proxyAlias: 'billing-api',
      });
      expect(await readSnapshot(cell(), p.proxyId)).toMatchObject({
        proxyActive: false,
        proxyMaxRequestsPerMinute: 42,
      });

      const newPc = await proxyCred();
      const put = await gw.api('PUT', `/clients/${c}/proxies/${p.proxyId}`, {
        body: { proxyProxyCredentialId: newPc.credentialId, proxyActive: true, proxyMaxRequestsPerMinute: 7 },
      });
      expect(put.status).toBe(200);
      const snap = (await readSnapshot(cell(), p.proxyId))!;
      expect(snap).toMatchObject({ proxyActive: true, proxyMaxRequestsPerMinute: 7 });
      expect(snap.proxyCredential?.credentialId).toBe(newPc.credentialId);
      expect(snap.proxyCredential?.secretHash).toBe(hashSecret(newPc.credentialSecret.key));
      expect(snap.proxyCredential?.secretHash).not.toBe(hashSecret(pc.credentialSecret.key));

      const bad = await gw.api('PUT', `/clients/${c}/proxies/${p.proxyId}`, {
        body: { proxyRegion: 'eu-west-1' },
      });
      expect(bad.body.code).toBe('immutable_field');
      const wrong = await gw.api('PUT', `/clients/${c}/proxies/${p.proxyId}`, {
        body: { proxyTargetCredentialId: newPc.credentialId },
      });
      expect(wrong.body.code).toBe('wrong_credential_type');

      // A proxy whose proxy credential was revoked can still be deactivated, then repaired.
      await gw.api('DELETE', `/clients/${c}/credentials/${newPc.credentialId}`);
      expect(
        (await gw.api('PUT', `/clients/${c}/proxies/${p.proxyId}`, { body: { proxyActive: false } })).status,
      ).toBe(200);
      const repaired = await gw.api('PUT', `/clients/${c}/proxies/${p.proxyId}`, {
        body: { proxyProxyCredentialId: pc.credentialId, proxyActive: true },
      });
      expect(repaired.status).toBe(200);
      expect((await readSnapshot(cell(), p.proxyId))!.proxyCredential?.credentialId).toBe(pc.credentialId);

      const list = await gw.api('GET', `/clients/${c}/proxies`);
      expect(list.body.proxies.map((x: { proxyId: string }) => x.proxyId)).toContain(p.proxyId);
      expect((await gw.api('DELETE', `/clients/${c}/proxies/${p.proxyId}`)).status).toBe(204);
      expect(await readSnapshot(cell(), p.proxyId)).toBeUndefined();
      expect((await gw.api('GET', `/clients/${c}/proxies/${p.proxyId}`)).status).toBe(404);
    });

    it('keeps proxies in the region they name (data residency)', async () => {
      const [pc, tc, t] = await Promise.all([
        proxyCred('eu-west-1'),
        targetCred('eu-west-1'),
        target('eu-west-1'),
      ]);
      const res = await post('/proxies', {
        proxyName: 'eu',
        proxyRegion: 'eu-west-1',
        proxyProxyCredentialId: pc.credentialId,
        proxyTargetId: t.targetId,
        proxyTargetCredentialId: tc.credentialId,
      });
      expect(res.status).toBe(201);
      const eu = gw.stack.deps.cells['eu-west-1']!;
      expect(await readSnapshot(eu, res.body.proxyId)).toMatchObject({ proxyRegion: 'eu-west-1' });
    });
  });

  describe('rules', () => {
    const allow = { effect: 'allow', priority: 10 };
    const cases: Array<[Record<string, unknown>, string, string]> = [
      [{ ...allow, path: { path: { pattern: '(' } } }, 'invalid_pattern', 'body.path.path.pattern'],
      [{ ...allow, path: { path: { pattern: '(a)\\1' } } }, 'invalid_pattern', 'body.path.path.pattern'],
      [
        { ...allow, path: { path: { pattern: 'a'.repeat(1025) } } },
        'invalid_pattern',
        'body.path.path.pattern',
      ],
      [
        { ...allow, headerChecks: [{ name: { pattern: '^x-a$' }, value: { pattern: '[' } }] },
        'invalid_pattern',
        'body.headerChecks.0.value.pattern',
      ],
      [
        { ...allow, queryChecks: [{ name: { pattern: '*' } }] },
        'invalid_pattern',
        'body.queryChecks.0.name.pattern',
      ],
      [{ ...allow, body: [{ jsonPath: '$..deep' }] }, 'invalid_pattern', 'body.body.0.jsonPath'],
      [
        { ...allow, body: [{ jsonPath: '$.a', matchValue: { pattern: '(?=x)' } }] },
        'invalid_pattern',
        'body.body.0.matchValue.pattern',
      ],
      [{ ...allow, regexFlags: 'x' }, 'invalid_pattern', 'body.regexFlags'],
      [{ ...allow, methods: ['get'] }, 'validation_failed', 'body.methods.0'],
      [{ ...allow, methods: ['TRACE'] }, 'validation_failed', 'body.methods.0'],
      [{ ...allow, priority: 1001 }, 'validation_failed', 'body.priority'],
      [{ ...allow, priority: -1 }, 'validation_failed', 'body.priority'],
      [{ ...allow, priority: 1.5 }, 'validation_failed', 'body.priority'],
      [{ effect: 'maybe', priority: 1 }, 'validation_failed', 'body.effect'],
      [{ effect: 'allow' }, 'validation_failed', 'body.priority'],
      [
        { ...allow, path: { path: { pattern: 'a' }, presence: 'sometimes' } },
        'validation_failed',
        'body.path.presence',
      ],
      [{ ...allow, path: { path: { pattern: '^/v2' }, extra: 1 } }, 'validation_failed', 'body.path'],
      [{ ...allow, surprise: 1 }, 'validation_failed', 'surprise'],
      [
        {
          ...allow,
          headerChecks: Array.from({ length: 8 }, () => ({
            name: { pattern: 'a'.repeat(300) },
            value: { pattern: 'b'.repeat(300) },
          })),
        },
        'rule_too_large',
        'body',
      ],
    ];
    it('refuses bad rules with a 400 naming the field, on every parent', async () => {
      const { proxy: p, pc, t } = await proxy();
      for (const parent of [
        `/credentials/${pc.credentialId}`,
        `/targets/${t.targetId}`,
        `/proxies/${p.proxyId}`,
      ])
        for (const [body, code, field] of cases) {
          const res = await post(`${parent}/rules`, body);
          expect({ body, status: res.status, code: res.body.code }).toEqual({ body, status: 400, code });
          expect(res.body.message).toContain(field);
        }
      expect((await post('/credentials/nope/rules', allow)).status).toBe(404);
      const many = await Promise.all(
        Array.from({ length: 25 }, (_, i) => post(`/targets/${t.targetId}/rules`, { ...allow, priority: i })),
      );
      expect(many.every((r) => r.status === 201)).toBe(true);
      const over = await post(`/targets/${t.targetId}/rules`, allow);
      expect({ status: over.status, code: over.body.code }).toEqual({ status: 409, code: 'rule_limit' });
    });

    it('stores aliases canonically and keeps every scope of the snapshot exact on create, update and delete', async () => {
      const { proxy: p, pc, t, tc } = await proxy();
      const r1 = await post(`/targets/${t.targetId}/rules`, {
        effect: 'deny',
        priority: 5,
        methods: ['DELETE'],
        path: { path: { pattern: '^/admin' }, presence: 'present' },
        headerChecks: [{ name: { pattern: '^x-debug$' }, presence: 'absent' }],
      });
      expect(r1.status).toBe(201);
      expect(r1.body.path.presence).toBe('must_exist');
      expect(r1.body.headerChecks[0].presence).toBe('must_not_exist');
      const r2 = await post(`/proxies/${p.proxyId}/rules`, { effect: 'allow', priority: 1 });
      const r3 = await post(`/credentials/${tc.credentialId}/rules`, {
        effect: 'allow',
        priority: 3,
        methods: ['GET'],
      });
      const r4 = await post(`/credentials/${pc.credentialId}/rules`, {
        effect: 'allow',
        priority: 2,
        methods: ['GET', 'GET'],
      });
      expect(r4.body.methods).toEqual(['GET']);
      let snap = (await readSnapshot(cell(), p.proxyId))!;
      expect(snap.rules.target.map((r) => r.ruleId)).toEqual([r1.body.ruleId]);
      expect(snap.rules.proxy.map((r) => r.ruleId)).toEqual([r2.body.ruleId]);
      expect(snap.rules.targetCredential.map((r) => r.ruleId)).toEqual([r3.body.ruleId]);
      expect(snap.rules.proxyCredential.map((r) => r.ruleId)).toEqual([r4.body.ruleId]);

      const path = `/clients/${c}/proxies/${p.proxyId}/rules/${r2.body.ruleId}`;
      const got = await gw.api('GET', path);
      const put = await gw.api('PUT', path, { body: { ...got.body, effect: 'deny', priority: 700 } });
      expect(put.status).toBe(200);
      snap = (await readSnapshot(cell(), p.proxyId))!;
      expect(snap.rules.proxy[0]).toMatchObject({ ruleId: r2.body.ruleId, effect: 'deny', priority: 700 });
      const v = snap.version;
      expect((await gw.api('DELETE', path)).status).toBe(204);
      snap = (await readSnapshot(cell(), p.proxyId))!;
      expect(snap.rules.proxy).toEqual([]);
      expect(snap.version).toBeGreaterThan(v);
      expect((await gw.api('GET', path)).status).toBe(404);

      const list = await gw.api('GET', `/clients/${c}/targets/${t.targetId}/rules`);
      expect(list.body.rules.map((r: { ruleId: string }) => r.ruleId)).toEqual([r1.body.ruleId]);
    });

    it('concurrent rule writes on a shared credential all land in every snapshot (no stale overwrite)', async () => {
      const a = await proxy();
      const pcId = a.pc.credentialId;
      const b = await post('/proxies', {
        proxyName: 'b',
        proxyRegion: 'us-east-1',
        proxyProxyCredentialId: pcId,
        proxyTargetId: a.t.targetId,
        proxyTargetCredentialId: a.tc.credentialId,
      });
      const created = await Promise.all(
        Array.from({ length: 12 }, (_, i) =>
          post(`/credentials/${pcId}/rules`, { effect: 'allow', priority: i }),
        ),
      );
      const ids = created.map((r) => r.body.ruleId).sort();
      for (const proxyId of [a.proxy.proxyId, b.body.proxyId]) {
        const snap = (await readSnapshot(cell(), proxyId))!;
        expect(snap.rules.proxyCredential.map((r) => r.ruleId).sort()).toEqual(ids);
      }
      // Concurrent deletes likewise.
      await Promise.all(
        created
          .slice(0, 6)
          .map((r) => gw.api('DELETE', `/clients/${c}/credentials/${pcId}/rules/${r.body.ruleId}`)),
      );
      const left = created
        .slice(6)
        .map((r) => r.body.ruleId)
        .sort();
      for (const proxyId of [a.proxy.proxyId, b.body.proxyId])
        expect(
          (await readSnapshot(cell(), proxyId))!.rules.proxyCredential.map((r) => r.ruleId).sort(),
        ).toEqual(left);
    });

    it('the rule cap holds under concurrent creates: never over 25, every refusal a 409, snapshot exact', async () => {
      const { proxy: p, t } = await proxy();
      for (let i = 0; i < 22; i++)
        expect((await post(`/targets/${t.targetId}/rules`, { effect: 'allow', priority: i })).status).toBe(
          201,
        );
      const racing = await Promise.all(
        Array.from({ length: 8 }, (_, i) =>
          post(`/targets/${t.targetId}/rules`, { effect: 'deny', priority: 50 + i }),
        ),
      );
      expect(
        racing.every((r) => r.status === 201 || (r.status === 409 && r.body.code === 'rule_limit')),
      ).toBe(true);
      const listed = (await gw.api('GET', `/clients/${c}/targets/${t.targetId}/rules`)).body.rules as Array<{
        ruleId: string;
      }>;
      expect(listed.length).toBeLessThanOrEqual(25);
      expect(listed.length).toBe(22 + racing.filter((r) => r.status === 201).length);
      const snap = (await readSnapshot(cell(), p.proxyId))!;
      expect(snap.rules.target.map((r) => r.ruleId).sort()).toEqual(listed.map((r) => r.ruleId).sort());
      // A refused create left a place free or the parent is full; either way the next answer is exact.
      const next = await post(`/targets/${t.targetId}/rules`, { effect: 'allow', priority: 99 });
      expect(next.status).toBe(listed.length < 25 ? 201 : 409);
    });
  });

  describe('client deletion and the API document', () => {
    it("deleting a client removes its proxies' snapshots and counters in every cell", async () => {
      const other = (await gw.api('POST', '/clients', { body: { clientName: 'short-lived' } })).body.clientId;
      const o = (path: string, body: unknown) => gw.api('POST', `/clients/${other}${path}`, { body });
      const base = { credentialName: 'n', credentialRegion: 'eu-west-1' };
      const pc = (await o('/credentials', { ...base, credentialType: 'proxy', credentialAuthType: 'apiKey' }))
        .body;
      const tc = (await o('/credentials', { ...base, credentialType: 'target', credentialAuthType: 'none' }))
        .body;
      const t = (
        await o('/targets', {
          targetName: 't',
          targetBaseURL: 'https://a.example.com',
          targetRegion: 'eu-west-1',
        })
      ).body;
      const p = (
        await o('/proxies', {
          proxyName: 'p',
          proxyRegion: 'eu-west-1',
          proxyProxyCredentialId: pc.credentialId,
          proxyTargetId: t.targetId,
          proxyTargetCredentialId: tc.credentialId,
        })
      ).body;
      const eu = gw.stack.deps.cells['eu-west-1']!;
      expect(await readSnapshot(eu, p.proxyId)).toBeDefined();
      expect((await gw.api('DELETE', `/clients/${other}`)).status).toBe(204);
      expect(await readSnapshot(eu, p.proxyId)).toBeUndefined();
      expect(await getItem(eu, keys.proxySnapshotSeq(p.proxyId))).toBeUndefined();
    });

    it('documents every new route in the OpenAPI document', async () => {
      const doc = await gw.api('GET', '/openapi.json', { token: null });
      for (const path of [
        '/clients/{clientId}/credentials/{credentialId}',
        '/clients/{clientId}/targets/{targetId}',
        '/clients/{clientId}/proxies/{proxyId}/simulate',
        '/clients/{clientId}/targets/{targetId}/rules/{ruleId}',
      ])
        expect(Object.keys(doc.body.paths)).toContain(path);
    });
  });

  describe('tenancy', () => {
    it('answers 404 to non-members and 403 to members without the admin role, on every new route', async () => {
      const { proxy: p, pc, t } = await proxy();
      const ruleIds: Record<string, string> = {};
      for (const [segment, parentId] of [
        ['proxies', p.proxyId],
        ['credentials', pc.credentialId],
        ['targets', t.targetId],
      ])
        ruleIds[segment!] = (
          await post(`/${segment}/${parentId}/rules`, { effect: 'allow', priority: 1 })
        ).body.ruleId;
      // Meters: on the proxy, and on its target credential (a budget shared by its proxies).
      const meter = { meterName: 'm', meterType: 'request_count', window: 'day', limit: 10, action: 'block' };
      const meterIds: Record<string, string> = {
        proxies: (await post(`/proxies/${p.proxyId}/meters`, meter)).body.meterId,
        credentials: (await post(`/credentials/${p.proxyTargetCredentialId}/meters`, meter)).body.meterId,
      };
      const bob = (await gw.api('POST', '/users', { body: { userName: 'bob' } })).body;
      const carol = (await gw.api('POST', '/users', { body: { userName: 'carol' } })).body;
      await gw.api('PUT', `/clients/${c}`, {
        body: {
          clientMembers: [
            { userId: gw.admin.userId, roles: ['owner'] },
            { userId: carol.userId, roles: ['user'] },
          ],
        },
      });
      const ids: Record<string, string> = {
        clientId: c,
        credentialId: pc.credentialId,
        targetId: t.targetId,
        proxyId: p.proxyId,
      };
      const routes = coreRoutes.filter(
        (r) => /credentials|targets|proxies/.test(r.path) && !/requests|telemetry/.test(r.path),
      );
      expect(routes.length).toBe(42);
      const bodies: Record<string, unknown> = {
        credentials: {
          credentialType: 'proxy',
          credentialAuthType: 'apiKey',
          credentialName: 'x',
          credentialRegion: 'us-east-1',
        },
        targets: { targetName: 'x', targetBaseURL: 'https://a.example.com', targetRegion: 'us-east-1' },
        proxies: {
          proxyName: 'x',
          proxyRegion: 'us-east-1',
          proxyProxyCredentialId: pc.credentialId,
          proxyTargetId: t.targetId,
          proxyTargetCredentialId: p.proxyTargetCredentialId,
        },
        rules: { effect: 'allow', priority: 1 },
        meters: meter,
        simulate: { method: 'GET', path: '/' },
      };
      for (const r of routes) {
        const parent = r.path.split('/')[3]!;
        const metered = r.path.includes('/meters');
        const path = r.path.replace(/\{(\w+)\}/g, (_, k: string) => {
          if (k === 'ruleId') return ruleIds[parent]!;
          if (k === 'meterId') return meterIds[parent]!;
          if (k === 'credentialId' && metered) return p.proxyTargetCredentialId;
          return ids[k]!;
        });
        const last = r.path
          .split('/')
          .filter((s) => !s.startsWith('{'))
          .pop()!;
        const body = r.method === 'POST' || r.method === 'PUT' ? (bodies[last] ?? {}) : undefined;
        const outsider = await gw.api(r.method, path, { token: bob.token, body });
        expect({ route: `${r.method} ${r.path}`, status: outsider.status }).toEqual({
          route: `${r.method} ${r.path}`,
          status: 404,
        });
        const member = await gw.api(r.method, path, { token: carol.token, body });
        const readOnly = r.method === 'GET' || r.path.endsWith('/simulate');
        expect({ route: `${r.method} ${r.path}`, status: member.status }).toEqual({
          route: `${r.method} ${r.path}`,
          status: readOnly ? 200 : 403,
        });
      }
      // Another client's resources are invisible even to a member of both, by id.
      const other = (await gw.api('POST', '/clients', { body: { clientName: 'other' } })).body.clientId;
      expect((await gw.api('GET', `/clients/${other}/credentials/${pc.credentialId}`)).status).toBe(404);
      expect((await gw.api('GET', `/clients/${other}/proxies/${p.proxyId}`)).status).toBe(404);
      expect(
        (
          await gw.api('POST', `/clients/${other}/proxies`, {
            body: {
              proxyName: 'steal',
              proxyRegion: 'us-east-1',
              proxyProxyCredentialId: pc.credentialId,
              proxyTargetId: t.targetId,
              proxyTargetCredentialId: pc.credentialId,
            },
          })
        ).body.code,
      ).toBe('unknown_reference');
    });
  });
});
