import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { DecryptCommand } from '@aws-sdk/client-kms';
import { ScanCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createCoreApiHandler } from '../../lambdas/control-plane/core-api.ts';
import { keys } from '../../lambdas/storage/keys.ts';
import { CORE_API_OPENS } from '../../lib/cell-key.ts';
import { type HttpFront, type LambdaHttpHandler, startHttpFront } from '../../local/http-front.ts';
import { type FakeOAuth, startFakeOAuth } from '../helpers/fake-oauth.ts';
import { startTestGateway, type TestGateway } from '../helpers/local.ts';
import { captureLogs } from '../helpers/logs.ts';
import { eventually } from '../helpers/poll.ts';
import { send, startProxyFront } from '../helpers/proxy-fixtures.ts';

// Failures are provoked on purpose (KMS faults, a provider that refuses a revocation): their WARN/ERROR
// lines go to a capture, which the secret scan at the end reads too.
const logs = captureLogs();
afterAll(() => logs.restore());

/**
 * oauth2 authorization_code (PKCE) and customToken target credentials, end to end: Core API →
 * consent at a fake provider → proxy → fake vendor API, on loopback. Every assertion is about what
 * happened (counts, order, contents), never about how fast.
 */
let gw: TestGateway;
let oauth: FakeOAuth;
let custom: Server;
let customUrl = '';
const customCalls: Array<{ headers: Record<string, unknown>; body: string }> = [];
let customLifetime = 3600;
let customSeq = 0;
const customIssued: string[] = [];
const CUSTOM_BODY_SECRET = 'body-secret-3c1f9a7e5b2d4c6a8e0f';
const CUSTOM_HEADER_SECRET = 'hdr-secret-9e8d7c6b5a4f3e2d1c0b';
/** Every Core API and proxy answer, and everything written to stdout (the logs). */
const answers: string[] = [];
let logged = '';
const originalWrite = process.stdout.write;
let clientId = '';
let proxyKey = '';

const api: TestGateway['api'] = async (method, path, opts) => {
  const res = await gw.api(method, path, opts);
  answers.push(res.text);
  return res;
};
const proxied = async (proxyId: string, path: string, options: { method?: string; body?: string } = {}) => {
  const res = await send(gw.stack.proxyUrl, {
    method: options.method ?? 'GET',
    path: `/api/${proxyId}${path}`,
    headers: { authorization: proxyKey, ...(options.body ? { 'content-type': 'application/json' } : {}) },
    body: options.body,
  });
  answers.push(res.text);
  return res;
};

async function proxyTo(targetCredentialId: string, baseURL: string): Promise<string> {
  const target = await api('POST', `/clients/${clientId}/targets`, {
    body: {
      targetName: `t-${targetCredentialId.slice(0, 8)}`,
      targetBaseURL: baseURL,
      targetRegion: 'us-east-1',
      targetDefaultRuleEffect: 'allow',
    },
  });
  expect(target.status).toBe(201);
  const proxy = await api('POST', `/clients/${clientId}/proxies`, {
    body: {
      proxyName: `p-${targetCredentialId.slice(0, 8)}`,
      proxyRegion: 'us-east-1',
      proxyProxyCredentialId: proxyCredentialId,
      proxyTargetId: target.body.targetId,
      proxyTargetCredentialId: targetCredentialId,
      proxyDefaultRuleEffect: 'allow',
    },
  });
  expect(proxy.status).toBe(201);
  return proxy.body.proxyId;
}
let proxyCredentialId = '';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  // Kept (for the secret scan at the end), not printed: the failures provoked here log on purpose.
  process.stdout.write = ((chunk: unknown) => {
    logged += String(chunk);
    return true;
  }) as typeof process.stdout.write;
  oauth = await startFakeOAuth();
  custom = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/session') {
      customCalls.push({ headers: req.headers, body });
      const ok =
        req.method === 'POST' &&
        req.headers['x-vendor-key'] === CUSTOM_HEADER_SECRET &&
        JSON.parse(body).apiSecret === CUSTOM_BODY_SECRET;
      if (!ok) return res.writeHead(403).end();
      const token = `ct-${++customSeq}-${CUSTOM_BODY_SECRET.slice(-6)}x`;
      customIssued.push(token);
      setTimeout(() => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ data: { session: { token } }, meta: { ttl: customLifetime } }));
      }, 20);
      return;
    }
    // The vendor API: the latest session token only (an older one answers 401).
    const live = customIssued.at(-1);
    const status = req.headers['x-session-token'] === live && live !== undefined ? 200 : 401;
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ status }));
  });
  await new Promise<void>((r) => custom.listen(0, '127.0.0.1', r));
  customUrl = `http://127.0.0.1:${(custom.address() as AddressInfo).port}`;
  gw = await startTestGateway({
    targetAllowlist: [new URL(oauth.url).host, new URL(customUrl).host],
  });
  clientId = gw.admin.clientId;
  const pc = await api('POST', `/clients/${clientId}/credentials`, {
    body: {
      credentialType: 'proxy',
      credentialAuthType: 'apiKey',
      credentialName: 'agent',
      credentialRegion: 'us-east-1',
    },
  });
  proxyCredentialId = pc.body.credentialId;
  proxyKey = pc.body.credentialSecret.key;
});

afterAll(async () => {
  await gw.close();
  await oauth.close();
  custom.closeAllConnections();
  custom.close();
  process.stdout.write = originalWrite;
});

describe('oauth2 authorization_code with PKCE', () => {
  let credentialId = '';
  let proxyId = '';
  let authorizationUrl = '';

  const secret = () => ({
    grantType: 'authorization_code',
    authorizationUrl: `${oauth.url}/authorize`,
    tokenUrl: `${oauth.url}/token`,
    revocationUrl: `${oauth.url}/revoke`,
    clientId: oauth.clientId,
    clientSecret: oauth.clientSecret,
    scope: 'calendar.readonly email',
    usePkce: true,
    authorizationParams: { access_type: 'offline', prompt: 'consent' },
  });

  it('creates a temporary credential and answers an authorization URL with state and an S256 challenge', async () => {
    const res = await api('POST', `/clients/${clientId}/credentials`, {
      body: {
        credentialType: 'target',
        credentialAuthType: 'oauth2',
        credentialName: 'google-calendar',
        credentialRegion: 'us-east-1',
        credentialSecret: secret(),
      },
    });
    expect(res.status).toBe(201);
    expect(res.body.temporary).toBe(true);
    expect(res.body.credentialSettings).toMatchObject({ grantType: 'authorization_code', usePkce: true });
    credentialId = res.body.credentialId;
    authorizationUrl = res.body.authorizationUrl;
    const url = new URL(authorizationUrl);
    expect(url.origin + url.pathname).toBe(`${oauth.url}/authorize`);
    const q = url.searchParams;
    expect(q.get('response_type')).toBe('code');
    expect(q.get('client_id')).toBe(oauth.clientId);
    expect(q.get('redirect_uri')).toBe(`${gw.stack.apiUrl}/oauth2/callback`);
    expect(q.get('scope')).toBe('calendar.readonly email');
    expect(q.get('code_challenge_method')).toBe('S256');
    expect(q.get('access_type')).toBe('offline');
    expect(q.get('state')).toMatch(/^[0-9a-f]{64}$/);
    expect(Date.parse(res.body.authorizationExpiresAt)).toBeGreaterThan(Date.now());
    oauth.redirectUri = q.get('redirect_uri')!;
  });

  it('lists it only with includeTemporary=true, and the proxy refuses calls until consent', async () => {
    const plain = await api('GET', `/clients/${clientId}/credentials`);
    expect(plain.body.credentials.map((c: { credentialId: string }) => c.credentialId)).not.toContain(
      credentialId,
    );
    const all = await api('GET', `/clients/${clientId}/credentials?includeTemporary=true`);
    expect(all.body.credentials.map((c: { credentialId: string }) => c.credentialId)).toContain(credentialId);
    proxyId = await proxyTo(credentialId, oauth.url);
    const res = await proxied(proxyId, '/api/events');
    expect(res.status).toBe(403);
    expect(res.headers['keygate-proxy-code']).toBe('proxy-target-credential-pending');
    expect(oauth.apiStatuses).toEqual([]);
  });

  it('the callback refuses a missing or unknown state, and passes on a refused consent as 400', async () => {
    const none = await fetch(`${gw.stack.apiUrl}/oauth2/callback?code=x`);
    expect(none.status).toBe(400);
    const unknown = await fetch(`${gw.stack.apiUrl}/oauth2/callback?code=x&state=${'a'.repeat(64)}`);
    expect(unknown.status).toBe(400);
    expect(((await unknown.json()) as { code: string }).code).toBe('invalid_state');
    // A consent the user refused: a fresh URL, the provider's error, and that state is spent.
    const again = await api('POST', `/clients/${clientId}/credentials/${credentialId}/authorization`);
    expect(again.status).toBe(200);
    const state = new URL(again.body.authorizationUrl).searchParams.get('state');
    const denied = await fetch(`${gw.stack.apiUrl}/oauth2/callback?error=access_denied&state=${state}`);
    expect(denied.status).toBe(400);
    expect(((await denied.json()) as { code: string }).code).toBe('consent_denied');
    const replay = await fetch(`${gw.stack.apiUrl}/oauth2/callback?code=x&state=${state}`);
    expect(replay.status).toBe(400);
  });

  it('consent: the provider redirects to the callback, which exchanges the code with the PKCE verifier', async () => {
    const consent = await fetch(authorizationUrl, { redirect: 'manual' });
    expect(consent.status).toBe(302);
    const callback = consent.headers.get('location')!;
    expect(callback.startsWith(`${gw.stack.apiUrl}/oauth2/callback?`)).toBe(true);
    const done = await fetch(callback);
    const text = await done.text();
    answers.push(text);
    expect(done.status).toBe(200);
    expect(JSON.parse(text)).toMatchObject({ credentialId, refreshable: true });
    // The fake checked S256(code_verifier) = code_challenge and the redirect URI; one exchange.
    expect(oauth.codeExchanges).toHaveLength(1);
    expect(oauth.codeExchanges[0]!.code_verifier).toMatch(/^[\w-]{43,128}$/);
    // The state is single use: the same redirect again is refused, and makes no exchange.
    const replay = await fetch(callback);
    answers.push(await replay.text());
    expect(replay.status).toBe(400);
    expect(oauth.codeExchanges).toHaveLength(1);
    const read = await api('GET', `/clients/${clientId}/credentials/${credentialId}`);
    expect(read.body.temporary).toBeUndefined();
    expect(read.body.consentedAt).toEqual(expect.any(String));
  });

  it('calls through the proxy carry the access token from the consent', async () => {
    const res = await proxied(proxyId, '/api/events');
    expect(res.status).toBe(200);
    expect(oauth.apiStatuses).toEqual([200]);
    expect(oauth.refreshes).toBe(0);
  });

  it('steady state: the grant is read once per instance, then every call is served from memory', async () => {
    const cell = gw.stack.deps.cells['us-east-1']!;
    let grantReads = 0;
    const counting = {
      ...cell,
      ddb: {
        send: (command: { input?: { Key?: { pk?: string } } }) => {
          if (command.input?.Key?.pk?.startsWith('OAUTHGRANT#')) grantReads++;
          return cell.ddb.send(command as never);
        },
      } as unknown as typeof cell.ddb,
    };
    const front = await startProxyFront({ ...gw.stack.deps, cells: { 'us-east-1': counting } });
    try {
      for (let i = 0; i < 20; i++) {
        const res = await send(front.url, {
          path: `/api/${proxyId}/api/events`,
          headers: { authorization: proxyKey },
        });
        expect(res.status).toBe(200);
      }
      expect(grantReads).toBe(1);
    } finally {
      await front.close();
    }
  });

  it('refreshes ahead of expiry, rotating the refresh token, without a single failed call', async () => {
    oauth.lifetimeS = 1;
    // Make the current token short-lived: the provider revokes it and the next call refreshes.
    oauth.revokeAccess(oauth.issuedAccess.at(-1)!);
    const statusesBefore = oauth.apiStatuses.length;
    expect((await proxied(proxyId, '/api/events')).status).toBe(200);
    // From here on, every token lives 1 s: keep calling until three more refreshes happened.
    const refreshesBefore = oauth.refreshes;
    const deadline = Date.now() + 60_000;
    while (oauth.refreshes < refreshesBefore + 3 && Date.now() < deadline) {
      expect((await proxied(proxyId, '/api/events')).status).toBe(200);
      await sleep(100);
    }
    expect(oauth.refreshes).toBeGreaterThanOrEqual(refreshesBefore + 3);
    // The revoked token cost one 401 and one retry; after that, no refused call at all.
    const after = oauth.apiStatuses.slice(statusesBefore);
    expect(after[0]).toBe(401);
    expect(after.slice(1).every((s) => s === 200)).toBe(true);
    // Rotation: every refresh used the newest refresh token (the fake refuses any older one).
    expect(oauth.refusedRefreshes).toBe(0);
  });

  it('concurrent callers with an expired token cause ONE refresh', async () => {
    oauth.lifetimeS = 1;
    expect((await proxied(proxyId, '/api/events')).status).toBe(200);
    oauth.lifetimeS = 3600;
    await sleep(1100); // the 1 s token is now past its refresh margin
    const before = oauth.refreshes;
    const results = await Promise.all(Array.from({ length: 12 }, () => proxied(proxyId, '/api/events')));
    expect(results.map((r) => r.status)).toEqual(Array(12).fill(200));
    expect(oauth.refreshes).toBe(before + 1);
    expect(oauth.refusedRefreshes).toBe(0);
  });

  it('two proxy instances (separate memories) with an expired token share ONE refresh through the lease', async () => {
    const second = await startProxyFront(gw.stack.deps);
    try {
      oauth.lifetimeS = 1;
      oauth.revokeAccess(oauth.issuedAccess.at(-1)!);
      expect((await proxied(proxyId, '/api/events')).status).toBe(200); // 401, refresh, retry
      oauth.lifetimeS = 3600;
      await sleep(1100); // both instances' view of the 1 s token is now stale
      const before = oauth.refreshes;
      const statuses = oauth.apiStatuses.length;
      const viaSecond = () =>
        send(second.url, { path: `/api/${proxyId}/api/events`, headers: { authorization: proxyKey } });
      const results = await Promise.all(
        Array.from({ length: 12 }, (_, i) => (i % 2 ? viaSecond() : proxied(proxyId, '/api/events'))),
      );
      expect(results.map((r) => r.status)).toEqual(Array(12).fill(200));
      expect(oauth.refreshes).toBe(before + 1);
      expect(oauth.refusedRefreshes).toBe(0);
      expect(oauth.apiStatuses.slice(statuses).every((st) => st === 200)).toBe(true);
    } finally {
      await second.close();
    }
  });

  it('a vendor 401 causes one refresh and one retry, with the same body', async () => {
    oauth.revokeAccess(oauth.issuedAccess.at(-1)!);
    const before = oauth.refreshes;
    const statuses = oauth.apiStatuses.length;
    const body = JSON.stringify({ summary: 'standup', attendees: 3 });
    const res = await proxied(proxyId, '/api/events', { method: 'POST', body });
    expect(res.status).toBe(200);
    expect(oauth.refreshes).toBe(before + 1);
    expect(oauth.apiStatuses.slice(statuses)).toEqual([401, 200]);
    expect(oauth.apiBodies.slice(-2)).toEqual([body, body]);
  });

  it('fails closed (503) when the store or KMS fails while the grant is read', async () => {
    const cell = gw.stack.deps.cells['us-east-1']!;
    const outage = () =>
      Promise.reject(
        Object.assign(new Error('injected outage'), { name: 'ServiceUnavailable', $metadata: {} }),
      );
    const faulty = {
      store: {
        ...cell,
        ddb: {
          send: (command: { input?: { Key?: { pk?: string } } }) =>
            command.input?.Key?.pk?.startsWith('OAUTHGRANT#') ? outage() : cell.ddb.send(command as never),
        } as unknown as typeof cell.ddb,
      },
      kms: {
        ...cell,
        kms: {
          send: (command: object) =>
            // The snapshot's own secret opens; the grant's (a `#grant` context) does not.
            JSON.stringify(command).includes('#grant') ? outage() : cell.kms.send(command as never),
        } as unknown as typeof cell.kms,
      },
    };
    for (const [what, faultyCell] of Object.entries(faulty)) {
      // A new instance: nothing in its memory, so it must read (and open) the grant.
      const front = await startProxyFront({ ...gw.stack.deps, cells: { 'us-east-1': faultyCell } });
      try {
        const refreshes = oauth.refreshes;
        const res = await send(front.url, {
          path: `/api/${proxyId}/api/events`,
          headers: { authorization: proxyKey },
        });
        expect({ what, status: res.status, code: res.headers['keygate-proxy-code'] }).toEqual({
          what,
          status: 503,
          code: 'proxy-dependency-unavailable',
        });
        expect(oauth.refreshes).toBe(refreshes);
      } finally {
        await front.close();
      }
    }
  });

  it('deleting the credential revokes the refresh token at the provider and blocks the proxy', async () => {
    const current = oauth.issuedRefresh.at(-1)!;
    const del = await api('DELETE', `/clients/${clientId}/credentials/${credentialId}`);
    expect(del.status).toBe(204);
    expect(oauth.revoked).toEqual([
      expect.objectContaining({
        token: current,
        token_type_hint: 'refresh_token',
        client_id: oauth.clientId,
      }),
    ]);
    const res = await proxied(proxyId, '/api/events');
    expect(res.status).toBe(403);
  });

  it('a revocation endpoint that never answers does not hold the deletion back', async () => {
    const created = await api('POST', `/clients/${clientId}/credentials`, {
      body: {
        credentialType: 'target',
        credentialAuthType: 'oauth2',
        credentialName: 'google-2',
        credentialRegion: 'us-east-1',
        credentialSecret: secret(),
      },
    });
    const consent = await fetch(created.body.authorizationUrl, { redirect: 'manual' });
    expect((await fetch(consent.headers.get('location')!)).status).toBe(200);
    oauth.hangRevocation = true;
    const requests = oauth.revocationRequests;
    const del = await api('DELETE', `/clients/${clientId}/credentials/${created.body.credentialId}`);
    expect(del.status).toBe(204);
    // The provider got the revocation and never answered; the credential is gone all the same.
    expect(oauth.revocationRequests).toBe(requests + 1);
    expect((await api('GET', `/clients/${clientId}/credentials/${created.body.credentialId}`)).status).toBe(
      404,
    );
    oauth.hangRevocation = false;
  });
});

describe('customToken', () => {
  let credentialId = '';
  let proxyId = '';

  it('validates the secret with clear 400s, and checks the token URL like a target', async () => {
    const base = {
      credentialType: 'target',
      credentialAuthType: 'customToken',
      credentialName: 'bad',
      credentialRegion: 'us-east-1',
    };
    const good = {
      tokenRequest: { method: 'POST', url: `${customUrl}/session` },
      tokenPath: 'data.session.token',
    };
    const cases: Array<[unknown, string]> = [
      [{ tokenRequest: good.tokenRequest }, 'tokenPath'],
      [{ ...good, tokenRequest: { method: 'PATCH', url: good.tokenRequest.url } }, 'method'],
      [{ ...good, tokenRequest: { method: 'POST', url: 'https://10.0.0.8/session' } }, 'tokenRequest.url'],
      [{ ...good, tokenPath: 'a..b' }, 'tokenPath'],
      [{ ...good, injectAs: { headerName: 'X-A', queryParam: 'a' } }, 'injectAs'],
      [{ ...good, tokenRequest: { ...good.tokenRequest, headers: { Host: 'evil' } } }, 'Host'],
    ];
    for (const [credentialSecret, field] of cases) {
      const res = await api('POST', `/clients/${clientId}/credentials`, {
        body: { ...base, credentialSecret },
      });
      expect({ field, status: res.status }).toEqual({ field, status: 400 });
      expect(res.text).toContain(field);
    }
    const ac = await api('POST', `/clients/${clientId}/credentials`, {
      body: {
        ...base,
        credentialAuthType: 'oauth2',
        credentialSecret: {
          grantType: 'authorization_code',
          tokenUrl: `${oauth.url}/token`,
          clientId: 'x',
          authorizationUrl: `${oauth.url}/authorize`,
          authorizationParams: { state: 'mine' },
        },
      },
    });
    expect(ac.status).toBe(400);
    expect(ac.text).toContain('authorizationParams');
  });

  it('fetches the token once for concurrent callers, from sealed header and body values, and injects it', async () => {
    const res = await api('POST', `/clients/${clientId}/credentials`, {
      body: {
        credentialType: 'target',
        credentialAuthType: 'customToken',
        credentialName: 'vendor-session',
        credentialRegion: 'us-east-1',
        credentialSecret: {
          tokenRequest: {
            method: 'POST',
            url: `${customUrl}/session`,
            headers: { 'X-Vendor-Key': CUSTOM_HEADER_SECRET },
            body: { apiSecret: CUSTOM_BODY_SECRET, user: 'svc' },
          },
          tokenPath: '$.data.session.token',
          expiresInPath: 'meta.ttl',
          injectAs: { headerName: 'X-Session-Token' },
        },
      },
    });
    expect(res.status).toBe(201);
    expect(res.body.credentialSettings.tokenRequest).toEqual({
      method: 'POST',
      url: `${customUrl}/session`,
      headerNames: ['X-Vendor-Key'],
    });
    credentialId = res.body.credentialId;
    proxyId = await proxyTo(credentialId, customUrl);
    const results = await Promise.all(Array.from({ length: 8 }, () => proxied(proxyId, '/v1/items')));
    expect(results.map((r) => r.status)).toEqual(Array(8).fill(200));
    expect(customCalls).toHaveLength(1);
    expect(customCalls[0]!.headers['content-type']).toBe('application/json');
  });

  it('refreshes ahead of expiry, and after a vendor 401 fetches anew and retries once', async () => {
    customLifetime = 1;
    customIssued.push('revoked-elsewhere'); // the vendor now refuses our cached token
    const calls = customCalls.length;
    expect((await proxied(proxyId, '/v1/items')).status).toBe(200);
    expect(customCalls).toHaveLength(calls + 1);
    await sleep(1100); // past the 1 s token's margin
    expect((await proxied(proxyId, '/v1/items')).status).toBe(200);
    expect(customCalls).toHaveLength(calls + 2);
  });
});

describe('least privilege: the Core API opens consent blobs only', () => {
  /**
   * A Core API front of its own over a KMS client that acts as the Core API's IAM policy does in AWS
   * (lib/cell-key.ts): Decrypt only under a credentialId ending in one of CORE_API_OPENS, anything
   * else AccessDenied. Every Decrypt is recorded, so a consent that opened a main blob fails here
   * even where the code swallows the refusal (revocation is best effort).
   */
  const decrypts: string[] = [];
  const allowed = CORE_API_OPENS.map((p) => new RegExp(`^.+${p.slice(1)}$`));
  let front: HttpFront;
  let coreUrl = '';
  const core = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(coreUrl + path, {
      method,
      headers: {
        authorization: `Bearer ${gw.admin.token}`,
        ...(body ? { 'content-type': 'application/json' } : {}),
      },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    answers.push(text);
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  };
  const secret = () => ({
    grantType: 'authorization_code',
    authorizationUrl: `${oauth.url}/authorize`,
    tokenUrl: `${oauth.url}/token`,
    revocationUrl: `${oauth.url}/revoke`,
    clientId: oauth.clientId,
    clientSecret: oauth.clientSecret,
    scope: 'email',
    usePkce: true,
  });
  const consent = async (authorizationUrl: string) => {
    const redirect = await fetch(authorizationUrl, { redirect: 'manual' });
    expect(redirect.status).toBe(302);
    const done = await fetch(redirect.headers.get('location')!);
    answers.push(await done.text());
    return done.status;
  };

  beforeAll(async () => {
    const cell = gw.stack.deps.cells['us-east-1']!;
    const kms = {
      send: (command: {
        constructor: { name: string };
        input?: { EncryptionContext?: Record<string, string> };
      }) => {
        if (command instanceof DecryptCommand) {
          const id = command.input?.EncryptionContext?.credentialId ?? '';
          decrypts.push(id);
          if (!allowed.some((re) => re.test(id)))
            return Promise.reject(
              Object.assign(new Error('not authorized to perform kms:Decrypt'), {
                name: 'AccessDeniedException',
                $metadata: { httpStatusCode: 400 },
              }),
            );
        }
        return cell.kms.send(command as never);
      },
    } as unknown as typeof cell.kms;
    const deps = { ...gw.stack.deps, cells: { ...gw.stack.deps.cells, 'us-east-1': { ...cell, kms } } };
    front = await startHttpFront({
      port: 0,
      functionName: 'keygate-core-api-test',
      handler: createCoreApiHandler(deps) as unknown as LambdaHttpHandler,
    });
    coreUrl = front.url.replace(/\/$/, '');
    oauth.redirectUri = `${coreUrl}/oauth2/callback`;
  });
  afterAll(async () => {
    oauth.redirectUri = `${gw.stack.apiUrl}/oauth2/callback`;
    await front.close();
  });

  it('creates, re-authorizes, consents, replaces the secret and deletes without opening a main blob', async () => {
    const created = await core('POST', `/clients/${clientId}/credentials`, {
      credentialType: 'target',
      credentialAuthType: 'oauth2',
      credentialName: 'least-privilege',
      credentialRegion: 'us-east-1',
      credentialSecret: secret(),
    });
    expect(created.status).toBe(201);
    expect(created.body.sealedConsent).toBeUndefined();
    const id: string = created.body.credentialId;
    // A new authorization URL opens the consent blob; the consent opens it and the PKCE verifier.
    const again = await core('POST', `/clients/${clientId}/credentials/${id}/authorization`);
    expect(again.status).toBe(200);
    expect(await consent(again.body.authorizationUrl)).toBe(200);
    // A new secret discards the grant (revoking its refresh token), then a consent for the new one.
    const revoked = oauth.revoked.length;
    const replaced = await core('PUT', `/clients/${clientId}/credentials/${id}`, {
      credentialSecret: secret(),
    });
    expect(replaced.status).toBe(200);
    expect(oauth.revoked.length).toBe(revoked + 1);
    expect(await consent(replaced.body.authorizationUrl)).toBe(200);
    expect((await core('DELETE', `/clients/${clientId}/credentials/${id}`)).status).toBe(204);
    expect(oauth.revoked.length).toBe(revoked + 2);

    expect(decrypts.filter((d) => d === id)).toEqual([]);
    expect(decrypts.filter((d) => !allowed.some((re) => re.test(d)))).toEqual([]);
    for (const suffix of ['#consent', '#pkce', '#grant']) expect(decrypts).toContain(`${id}${suffix}`);
  });

  it('a credential stored without a consent blob answers 409: send the secret again', async () => {
    const created = await core('POST', `/clients/${clientId}/credentials`, {
      credentialType: 'target',
      credentialAuthType: 'oauth2',
      credentialName: 'stored-before',
      credentialRegion: 'us-east-1',
      credentialSecret: secret(),
    });
    const id: string = created.body.credentialId;
    // As it was stored before consent blobs existed.
    const cell = gw.stack.deps.cells['us-east-1']!;
    await cell.ddb.send(
      new UpdateCommand({
        TableName: cell.tableName,
        Key: keys.credential(clientId, id),
        UpdateExpression: 'REMOVE sealedConsent',
      }),
    );
    const refused = await core('POST', `/clients/${clientId}/credentials/${id}/authorization`);
    expect(refused.status).toBe(409);
    expect(refused.body.code).toBe('consent_secret_missing');
    const resent = await core('PUT', `/clients/${clientId}/credentials/${id}`, {
      credentialSecret: secret(),
    });
    expect(resent.status).toBe(200);
    expect(await consent(resent.body.authorizationUrl)).toBe(200);
    expect((await core('DELETE', `/clients/${clientId}/credentials/${id}`)).status).toBe(204);
    expect(decrypts.filter((d) => d === id)).toEqual([]);
  });
});

describe('secrets', () => {
  it('the OpenAPI document shows every secret shape and the callback route', async () => {
    const doc = await api('GET', '/openapi.json', { token: null });
    expect(doc.status).toBe(200);
    for (const word of [
      'authorization_code',
      'usePkce',
      'revocationUrl',
      'tokenRequest',
      'tokenPath',
      'injectAs',
    ])
      expect(doc.text).toContain(word);
    expect(doc.body.paths['/oauth2/callback'].get.security).toEqual([]);
  });

  it('never appear in answers, logs, request-log records or stored items', async () => {
    // The request log of every proxy of the client, once the pipeline delivered it.
    const proxies = (await api('GET', `/clients/${clientId}/proxies`)).body.proxies as Array<{
      proxyId: string;
    }>;
    const { records } = await eventually(
      async () => {
        let records = '';
        let count = 0;
        for (const p of proxies) {
          const log = await api('GET', `/clients/${clientId}/proxies/${p.proxyId}/requests?limit=1000`);
          records += log.text;
          count += log.body.requests.length;
        }
        return { records, count };
      },
      ({ count }) => count > 10,
      { everyMs: 200 },
    );
    expect(records.length).toBeGreaterThan(100);
    const stored: string[] = [];
    for (const table of [gw.stack.deps.home, ...Object.values(gw.stack.deps.cells)]) {
      const out = await table.ddb.send(new ScanCommand({ TableName: table.tableName }));
      stored.push(JSON.stringify(out.Items));
    }
    const secrets = [
      oauth.clientSecret,
      ...oauth.issuedAccess,
      ...oauth.issuedRefresh,
      ...oauth.codeExchanges.map((e) => e.code!),
      ...oauth.codeExchanges.map((e) => e.code_verifier!),
      CUSTOM_BODY_SECRET,
      CUSTOM_HEADER_SECRET,
      ...customIssued.filter((t) => t.startsWith('ct-')),
    ];
    expect(secrets.length).toBeGreaterThan(10);
    const warnings = JSON.stringify(logs.lines);
    expect(logs.lines.length).toBeGreaterThan(0); // the provoked failures were logged, and are scanned
    const haystacks = {
      answers: answers.join('\n'),
      logs: logged,
      warnings,
      records,
      stored: stored.join('\n'),
    };
    for (const [where, text] of Object.entries(haystacks))
      for (const s of secrets) expect({ where, leaked: text.includes(s) }).toEqual({ where, leaked: false });
  });
});
