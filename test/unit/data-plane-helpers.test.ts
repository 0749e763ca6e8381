import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from '@jest/globals';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { hashSecret } from '../../lambdas/crypto/secrets.ts';
import {
  authenticateByHash,
  isExpired,
  presentedSecret,
} from '../../lambdas/data-plane/authenticate-consumer.ts';
import { dependencyOf, withDeadline } from '../../lambdas/data-plane/deadline.ts';
import {
  cleanConsumerHeaders,
  cleanUpstreamHeaders,
  headerRefusal,
} from '../../lambdas/data-plane/header-hygiene.ts';
import {
  applyHeaders,
  applyQuery,
  InjectionError,
  injectionFor,
} from '../../lambdas/data-plane/inject-credential.ts';
import { urlRefusal } from '../../lambdas/data-plane/upstream.ts';
import { JwtVerifier } from '../../lambdas/data-plane/verify-jwt.ts';
import { isAwsDependencyError } from '../../lambdas/shared/errors.ts';

const now = new Date('2026-01-01T00:00:00Z');

describe('authenticateByHash', () => {
  const key = 'kg_live_abcdefghijklmnopqrstuvwxyz0123456789';
  const cred = { credentialId: 'c1', credentialAuthType: 'apiKey', secretHash: hashSecret(key) };

  it('accepts the raw key and "Bearer <key>"', () => {
    expect(authenticateByHash(cred, key, now)).toEqual({ ok: true, credentialId: 'c1' });
    expect(authenticateByHash(cred, `Bearer ${key}`, now)).toEqual({ ok: true, credentialId: 'c1' });
    expect(authenticateByHash(cred, `bearer ${key}`, now).ok).toBe(true);
  });

  it('refuses wrong, missing, empty, expired keys and absent credentials', () => {
    expect(authenticateByHash(cred, `${key}x`, now).ok).toBe(false);
    expect(authenticateByHash(cred, undefined, now).ok).toBe(false);
    expect(authenticateByHash(cred, '', now).ok).toBe(false);
    expect(authenticateByHash(undefined, key, now).ok).toBe(false);
    expect(authenticateByHash({ ...cred, expiresAt: '2025-12-31T23:59:59Z' }, key, now).ok).toBe(false);
    expect(authenticateByHash({ ...cred, expiresAt: 'garbage' }, key, now).ok).toBe(false);
    expect(authenticateByHash({ ...cred, expiresAt: '2026-01-01T00:00:01Z' }, key, now).ok).toBe(true);
    expect(authenticateByHash({ ...cred, secretHash: undefined }, key, now).ok).toBe(false);
    expect(authenticateByHash({ ...cred, secretHash: hashSecret('') }, '', now).ok).toBe(false);
    expect(authenticateByHash({ ...cred, credentialAuthType: 'jwtVerify' }, key, now).ok).toBe(false);
  });

  it('checks bearer prefixes exactly and basicAuth as username:password', () => {
    const bearer = {
      credentialId: 'b',
      credentialAuthType: 'bearer',
      prefix: 'Token ',
      secretHash: hashSecret('t'),
    };
    expect(authenticateByHash(bearer, 'Token t', now).ok).toBe(true);
    expect(authenticateByHash(bearer, 'Bearer t', now).ok).toBe(false);
    expect(authenticateByHash(bearer, 't', now).ok).toBe(false);
    const basic = {
      credentialId: 'u',
      credentialAuthType: 'basicAuth',
      secretHash: hashSecret('user:pa:ss'),
    };
    expect(authenticateByHash(basic, `Basic ${Buffer.from('user:pa:ss').toString('base64')}`, now).ok).toBe(
      true,
    );
    expect(authenticateByHash(basic, 'user:pa:ss', now).ok).toBe(false);
    expect(presentedSecret('basicAuth', 'Basic !!!')).toBe('');
  });

  it('treats an unparseable expiry as expired', () => {
    expect(isExpired(undefined, now)).toBe(false);
    expect(isExpired('nope', now)).toBe(true);
  });
});

describe('header hygiene', () => {
  it('drops what must not reach the vendor and keeps the rest', () => {
    const out = cleanConsumerHeaders(
      {
        authorization: 'k',
        connection: 'close, X-Secret-Hop',
        'x-secret-hop': '1',
        te: 'trailers',
        upgrade: 'websocket',
        'proxy-authorization': 'x',
        'x-forwarded-for': '1.2.3.4',
        'x-http-method-override': 'PUT',
        'content-length': '3',
        host: 'gateway',
        accept: 'a',
        'X-Custom': 'c',
      },
      ['a=1', 'b=2'],
    );
    expect(out).toEqual({ accept: 'a', 'x-custom': 'c', cookie: 'a=1; b=2' });
  });

  it('refuses TE with CL, malformed CL and control characters', () => {
    expect(headerRefusal({ 'transfer-encoding': 'chunked', 'content-length': '1' })).toMatch(
      /Transfer-Encoding/,
    );
    expect(headerRefusal({ 'content-length': '1,2' })).toMatch(/Content-Length/);
    expect(headerRefusal({ 'x-a': 'a\r\nb' })).toMatch(/control/);
    expect(headerRefusal({ 'content-length': '10', accept: '*/*' })).toBeUndefined();
  });

  it('drops hop-by-hop answer headers, keeps duplicates and cookies', () => {
    const out = cleanUpstreamHeaders([
      'Connection',
      'x-hop',
      'X-Hop',
      '1',
      'Keep-Alive',
      'timeout=5',
      'Transfer-Encoding',
      'chunked',
      'Vary',
      'a',
      'Vary',
      'b',
      'Set-Cookie',
      'x=1',
      'Set-Cookie',
      'y=2',
    ]);
    expect(out).toEqual({ headers: { vary: 'a, b' }, cookies: ['x=1', 'y=2'] });
  });
});

describe('injection', () => {
  it('replaces consumer copies case-insensitively', () => {
    const headers: Record<string, string> = { 'X-Api-Key': 'mine', 'x-api-key': 'mine2', other: 'o' };
    applyHeaders(headers, injectionFor('apiKey', { key: 'v' }));
    expect(headers).toEqual({ other: 'o', 'x-api-key': 'v' });
  });

  it('rebuilds the query: consumer copies out (encoded names too), ours last', () => {
    const inj = injectionFor('apiKey', { key: 'a b', queryParam: 'key' });
    expect(applyQuery('', inj)).toBe('key=a%20b');
    expect(applyQuery('x=1&key=2&k%65y=3&keys=4', inj)).toBe('x=1&keys=4&key=a%20b');
  });

  it('refuses secrets that cannot be sent', () => {
    expect(() => injectionFor('custom', { headers: { 'bad name': 'v' } })).toThrow(InjectionError);
    expect(() => injectionFor('custom', { headers: { ok: 'a\r\nInjected: 1' } })).toThrow(InjectionError);
    expect(() => injectionFor('bearer', {})).toThrow(InjectionError);
    expect(() => injectionFor('mystery', {})).toThrow(InjectionError);
    expect(() => injectionFor('oauth2', {})).toThrow(InjectionError);
  });
});

describe('upstream URL policy (no connection is made)', () => {
  it('requires https and public literals unless allowlisted', () => {
    expect(urlRefusal(new URL('http://api.vendor.example/x'), [])).toMatch(/https/);
    expect(urlRefusal(new URL('https://10.0.0.1/x'), [])).toMatch(/public/);
    expect(urlRefusal(new URL('https://169.254.169.254/latest'), [])).toMatch(/public/);
    expect(urlRefusal(new URL('https://[::1]/x'), [])).toMatch(/public/);
    expect(urlRefusal(new URL('https://[::ffff:127.0.0.1]/x'), [])).toMatch(/public/);
    expect(urlRefusal(new URL('http://127.0.0.1:8080/x'), ['127.0.0.1:8080'])).toBeUndefined();
    expect(urlRefusal(new URL('https://api.vendor.example/x'), [])).toBeUndefined();
  });

  it("grants the allowlisted port only (a bare host: its default ports), never keygate's own", () => {
    expect(urlRefusal(new URL('http://127.0.0.1:8081/x'), ['127.0.0.1:8080'])).toMatch(/https/);
    expect(urlRefusal(new URL('http://127.0.0.1:8080/x'), ['127.0.0.1'])).toMatch(/https/);
    expect(urlRefusal(new URL('https://127.0.0.1:8443/x'), ['127.0.0.1'])).toMatch(/public/);
    expect(urlRefusal(new URL('http://127.0.0.1/x'), ['127.0.0.1'])).toBeUndefined();
    expect(urlRefusal(new URL('https://127.0.0.1/x'), ['127.0.0.1'])).toBeUndefined();
    // Own ports are refused on any host, whatever the allowlist says.
    expect(urlRefusal(new URL('http://127.0.0.1:8080/x'), ['127.0.0.1:8080'], [8080])).toMatch(/own/);
    expect(urlRefusal(new URL('https://api.vendor.example:8080/x'), [], [8080])).toMatch(/own/);
    expect(urlRefusal(new URL('http://127.0.0.1/x'), ['127.0.0.1'], [80])).toMatch(/own/);
  });
});

describe('withDeadline', () => {
  it('turns a hung dependency into a dependency error', async () => {
    const error = await withDeadline(new Promise(() => undefined), 20, 'the store').catch((e) => e);
    expect(isAwsDependencyError(error)).toBe(true);
    expect(dependencyOf(error)).toBe('the store');
    await expect(withDeadline(Promise.resolve(1), 20, 'KMS')).resolves.toBe(1);
  });

  it('names the dependency whose call failed, for the KmsErrors / StoreErrors metrics', async () => {
    const throttled = Object.assign(new Error('slow down'), { name: 'ThrottlingException' });
    const error = await withDeadline(Promise.reject(throttled), 1000, 'KMS').catch((e) => e);
    expect(error).toBe(throttled);
    expect(dependencyOf(error)).toBe('KMS');
    expect(dependencyOf(new Error('elsewhere'))).toBeUndefined();
  });

  it('aborts the work it started at the deadline, and only then', async () => {
    let hung: AbortSignal | undefined;
    const error = await withDeadline(
      (signal) => {
        hung = signal;
        return new Promise(() => undefined);
      },
      20,
      'the store',
    ).catch((e) => e);
    expect(isAwsDependencyError(error)).toBe(true);
    expect(dependencyOf(error)).toBe('the store');
    expect(hung?.aborted).toBe(true);
    let answered: AbortSignal | undefined;
    const value = await withDeadline(
      async (signal) => {
        answered = signal;
        return 2;
      },
      20,
      'KMS',
    );
    expect(value).toBe(2);
    // Past the deadline: the timer was cleared with the answer, the signal never fires.
    await new Promise((r) => setTimeout(r, 40));
    expect(answered?.aborted).toBe(false);
  });
});

describe('JwtVerifier key rotation', () => {
  const servers: Server[] = [];
  afterAll(() => {
    for (const s of servers) {
      s.closeAllConnections();
      s.close();
    }
  });

  it('fetches the JWKS again for an unknown kid, at most once per cooldown', async () => {
    const k1 = await generateKeyPair('ES256');
    const k2 = await generateKeyPair('ES256');
    let keys = [{ ...(await exportJWK(k1.publicKey)), kid: 'k1' }];
    let fetches = 0;
    const server = createServer((_req, res) => {
      fetches++;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ keys }));
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const jwksUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks`;
    let clock = 1_000_000;
    const verifier = new JwtVerifier(
      {
        allowlist: [`127.0.0.1:${(server.address() as AddressInfo).port}`],
        timeoutMs: 1000,
        maxResponseBytes: 1e6,
      },
      () => clock,
    );
    const sign = (kid: string, key: Parameters<SignJWT['sign']>[0]) =>
      new SignJWT({}).setProtectedHeader({ alg: 'ES256', kid }).setExpirationTime('5m').sign(key);

    expect(await verifier.verify(await sign('k1', k1.privateKey), { jwksUrl })).toBe(true);
    expect(fetches).toBe(1);
    keys = [...keys, { ...(await exportJWK(k2.publicKey)), kid: 'k2' }];
    const t2 = await sign('k2', k2.privateKey);
    // Within the cooldown the cached set answers (and refuses).
    clock += 1000;
    expect(await verifier.verify(t2, { jwksUrl })).toBe(false);
    expect(fetches).toBe(1);
    // After it, an unknown kid triggers one fetch, and the rotated key verifies.
    clock += 31_000;
    expect(await verifier.verify(t2, { jwksUrl })).toBe(true);
    expect(fetches).toBe(2);
    expect(await verifier.verify(await sign('k1', k1.privateKey), { jwksUrl })).toBe(true);
    expect(fetches).toBe(2);
  });
});
