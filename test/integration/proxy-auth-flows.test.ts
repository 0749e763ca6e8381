import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose';
import { sealSecret } from '../../lambdas/crypto/envelope.ts';
import type { ProxyOutcome } from '../../lambdas/data-plane/outcome.ts';
import type { ProxyHandlerOptions } from '../../lambdas/data-plane/proxy-api.ts';
import type { HttpFront } from '../../local/http-front.ts';
import { type LocalStack, startLocalStack } from '../../local/stack.ts';
import { captureLogs } from '../helpers/logs.ts';
import {
  INVENTORY_RULE,
  REGION,
  type RecordingUpstream,
  randomId,
  send,
  startProxyFront,
  startRecordingUpstream,
  writeSnapshot,
} from '../helpers/proxy-fixtures.ts';

// Upstream failures are provoked on purpose here: their ERROR lines go to a capture, not the output.
const logs = captureLogs();
afterAll(() => logs.restore());

let stack: LocalStack;
let upstream: RecordingUpstream;
const fronts: HttpFront[] = [];
const servers: Server[] = [];

/** A proxy front whose allowlist names the upstream and every token/JWKS server started so far (host:port). */
async function front(options: ProxyHandlerOptions = {}): Promise<string> {
  const ports = [upstream.port, ...servers.map((s) => (s.address() as AddressInfo).port)];
  const targetAllowlist = ports.map((port) => `127.0.0.1:${port}`);
  const f = await startProxyFront(
    { ...stack.deps, config: { ...stack.deps.config, targetAllowlist } },
    options,
  );
  fronts.push(f);
  return f.url;
}

async function serve(
  handler: (req: IncomingMessage, body: string, res: ServerResponse) => void,
): Promise<string> {
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    handler(req, Buffer.concat(chunks).toString('utf8'), res);
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

beforeAll(async () => {
  upstream = await startRecordingUpstream();
  stack = await startLocalStack({ targetAllowlist: [`127.0.0.1:${upstream.port}`] });
});

afterAll(async () => {
  await Promise.all(fronts.map((f) => f.close()));
  for (const s of servers) {
    s.closeAllConnections();
    s.close();
  }
  await upstream.close();
  await stack.close();
});

beforeEach(() => {
  upstream.received.length = 0;
  upstream.respond = (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('ok');
  };
});

describe('oauth2 client-credentials target credentials', () => {
  let tokenUrl: string;
  const tokenCalls: Array<Record<string, string>> = [];
  let lifetime = 3600;
  let tokenStatus = 200;

  beforeAll(async () => {
    const base = await serve((_req, body, res) => {
      tokenCalls.push(Object.fromEntries(new URLSearchParams(body)));
      if (tokenStatus !== 200) {
        res.writeHead(tokenStatus).end();
        return;
      }
      // A little latency so concurrent callers really overlap.
      setTimeout(() => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            access_token: `tok-${tokenCalls.length}`,
            token_type: 'Bearer',
            expires_in: lifetime,
          }),
        );
      }, 30);
    });
    tokenUrl = `${base}/oauth/token`;
  });

  beforeEach(() => {
    tokenCalls.length = 0;
    lifetime = 3600;
    tokenStatus = 200;
  });

  const oauthProxy = () =>
    writeSnapshot(stack.deps, {
      targetBaseURL: upstream.url,
      rules: { proxyCredential: [INVENTORY_RULE] },
      target: {
        type: 'oauth2',
        secret: {
          tokenUrl,
          clientId: 'app-1',
          clientSecret: 'oauth-client-secret-xyz',
          scope: 'inventory:read',
          audience: 'api',
        },
      },
    });

  it('fetches one token for many concurrent requests and injects it', async () => {
    const url = await front();
    const p = await oauthProxy();
    const answers = await Promise.all(
      Array.from({ length: 10 }, () =>
        send(url, { path: `/api/${p.proxyId}/v2/inventory/1`, headers: { authorization: p.proxyKey } }),
      ),
    );
    expect(answers.map((a) => a.status)).toEqual(Array(10).fill(200));
    expect(tokenCalls).toEqual([
      {
        grant_type: 'client_credentials',
        client_id: 'app-1',
        client_secret: 'oauth-client-secret-xyz',
        scope: 'inventory:read',
        audience: 'api',
      },
    ]);
    expect(new Set(upstream.received.map((r) => r.headers.authorization))).toEqual(new Set(['Bearer tok-1']));
  });

  it('refreshes shortly before expiry', async () => {
    const url = await front();
    const p = await oauthProxy();
    lifetime = 1; // refresh margin: a tenth of the lifetime
    const call = () =>
      send(url, { path: `/api/${p.proxyId}/v2/inventory/1`, headers: { authorization: p.proxyKey } });
    await call();
    await call();
    expect(tokenCalls).toHaveLength(1);
    await new Promise((r) => setTimeout(r, 950));
    await call();
    expect(tokenCalls).toHaveLength(2);
    expect(upstream.received.map((r) => r.headers.authorization)).toEqual([
      'Bearer tok-1',
      'Bearer tok-1',
      'Bearer tok-2',
    ]);
  });

  it('fetches a new token once when the vendor answers 401, and retries once', async () => {
    const url = await front();
    const p = await oauthProxy();
    upstream.respond = (req, res) => {
      res.writeHead(req.headers.authorization === 'Bearer tok-1' ? 401 : 200).end();
    };
    const res = await send(url, {
      path: `/api/${p.proxyId}/v2/inventory/1`,
      headers: { authorization: p.proxyKey },
    });
    expect(res.status).toBe(200);
    expect(upstream.received.map((r) => r.headers.authorization)).toEqual(['Bearer tok-1', 'Bearer tok-2']);
    // A vendor that refuses every token: one retry, then its 401 goes back as it is.
    upstream.received.length = 0;
    upstream.respond = (_req, res) => res.writeHead(401, { 'www-authenticate': 'Bearer' }).end();
    const refused = await send(url, {
      path: `/api/${p.proxyId}/v2/inventory/1`,
      headers: { authorization: p.proxyKey },
    });
    expect(refused.status).toBe(401);
    expect(refused.headers['keygate-proxy-code']).toBe('proxy-access-granted');
    expect(upstream.received).toHaveLength(2);
  });

  it('answers 502 when the token endpoint fails, and sends nothing to the vendor', async () => {
    const url = await front();
    const p = await oauthProxy();
    tokenStatus = 500;
    const res = await send(url, {
      path: `/api/${p.proxyId}/v2/inventory/1`,
      headers: { authorization: p.proxyKey },
    });
    expect(res.status).toBe(502);
    expect(res.headers['keygate-proxy-code']).toBe('proxy-upstream-auth-failed');
    expect(res.text).not.toContain('oauth-client-secret');
    expect(upstream.received).toHaveLength(0);
  });
});

describe('jwtVerify proxy credentials', () => {
  let jwksUrl: string;
  let jwksStatus = 200;
  let key: Awaited<ReturnType<typeof generateKeyPair>>;
  let other: Awaited<ReturnType<typeof generateKeyPair>>;
  const outcomes: ProxyOutcome[] = [];
  let url: string;

  beforeAll(async () => {
    key = await generateKeyPair('RS256');
    other = await generateKeyPair('RS256');
    const jwk: JWK = { ...(await exportJWK(key.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
    const base = await serve((_req, _body, res) => {
      if (jwksStatus !== 200) return void res.writeHead(jwksStatus).end();
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ keys: [jwk] }));
    });
    jwksUrl = `${base}/.well-known/jwks.json`;
    url = await front({ onOutcome: (o) => outcomes.push(o) });
  });

  const jwtProxy = (jwt: Record<string, unknown>, credentialId?: string, clientId?: string) =>
    writeSnapshot(stack.deps, {
      clientId,
      targetBaseURL: upstream.url,
      rules: { proxyCredential: [INVENTORY_RULE] },
      proxyCredential: { credentialId, credentialAuthType: 'jwtVerify', secretHash: undefined, jwt },
    });

  const sign = (
    claims: Record<string, unknown>,
    opts: { exp?: string | null; kid?: string; signer?: Parameters<SignJWT['sign']>[0] } = {},
  ) => {
    let jwt = new SignJWT(claims).setProtectedHeader({ alg: 'RS256', kid: opts.kid ?? 'k1' }).setIssuedAt();
    if (opts.exp !== null) jwt = jwt.setExpirationTime(opts.exp ?? '5m');
    return jwt.sign(opts.signer ?? key.privateKey);
  };

  const call = (proxyId: string, token: string) =>
    send(url, { path: `/api/${proxyId}/v2/inventory/1`, headers: { authorization: `Bearer ${token}` } });

  it('accepts a valid token (JWKS) and refuses every bad one with the same 401', async () => {
    const p = await jwtProxy({ jwksUrl, issuer: 'https://issuer.test', audience: 'keygate' });
    const good = { iss: 'https://issuer.test', aud: 'keygate', sub: 'svc-1' };
    expect((await call(p.proxyId, await sign(good))).status).toBe(200);
    const bad = [
      await sign({ ...good, iss: 'https://evil.test' }),
      await sign({ ...good, aud: 'other' }),
      await sign(good, { exp: '-1m' }),
      await sign(good, { exp: null }),
      await sign(good, { signer: other.privateKey }),
      await sign(good, { kid: 'unknown' }),
      `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from(JSON.stringify({ ...good, exp: 9e9 })).toString('base64url')}.`,
      'not-a-jwt',
      '',
    ];
    for (const token of bad) {
      const res = await call(p.proxyId, token);
      expect([token.slice(0, 20), res.status, res.headers['keygate-proxy-code']]).toEqual([
        token.slice(0, 20),
        401,
        'proxy-unauthorized',
      ]);
    }
    expect(upstream.received).toHaveLength(1);
    expect(upstream.received[0]!.headers.authorization).toBeUndefined();
  });

  it('verifies HS256 tokens against a sealed shared secret', async () => {
    const credentialId = randomId('cred_');
    const clientId = randomId('cli_');
    const cell = stack.deps.cells[REGION]!;
    const sealed = await sealSecret(
      cell.kms,
      cell.kmsKeyId,
      JSON.stringify({ secret: 'shared-jwt-secret-0123456789abcdef' }),
      {
        clientId,
        credentialId,
      },
    );
    const p = await jwtProxy({ sealedSecret: sealed, audience: 'keygate' }, credentialId, clientId);
    const hs = (secret: string, aud = 'keygate') =>
      new SignJWT({ aud })
        .setProtectedHeader({ alg: 'HS256' })
        .setExpirationTime('5m')
        .sign(new TextEncoder().encode(secret));
    expect((await call(p.proxyId, await hs('shared-jwt-secret-0123456789abcdef'))).status).toBe(200);
    expect((await call(p.proxyId, await hs('wrong-secret-0123456789abcdef0000'))).status).toBe(401);
    expect((await call(p.proxyId, await hs('shared-jwt-secret-0123456789abcdef', 'x'))).status).toBe(401);
    // An RS256 token is not accepted where a shared secret is configured (no algorithm confusion).
    expect((await call(p.proxyId, await sign({ aud: 'keygate' }))).status).toBe(401);
  });

  it('fails closed (503) when the JWKS cannot be fetched', async () => {
    const fresh = await front();
    const p = await jwtProxy({ jwksUrl: `${jwksUrl}?v=2`, issuer: 'https://issuer.test' });
    jwksStatus = 500;
    try {
      const res = await send(fresh, {
        path: `/api/${p.proxyId}/v2/inventory/1`,
        headers: { authorization: `Bearer ${await sign({ iss: 'https://issuer.test' })}` },
      });
      expect(res.status).toBe(503);
    } finally {
      jwksStatus = 200;
    }
    expect(upstream.received).toHaveLength(0);
  });

  it('puts no token in the outcome', () => {
    expect(outcomes.length).toBeGreaterThan(0);
    expect(JSON.stringify(outcomes)).not.toMatch(/eyJ/);
  });
});
