import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { jwtVerify } from 'jose';
import { createStsClient } from '../../lambdas/crypto/sts-client.ts';
import { JwtTokenCache } from '../../lambdas/data-plane/jwt-target.ts';
import {
  AssumedRoleCache,
  signableQuery,
  signUpstreamRequest,
} from '../../lambdas/data-plane/sigv4-target.ts';
import { SignedRequestError, TargetAuthError } from '../../lambdas/data-plane/target-auth-errors.ts';
import { isAwsDependencyError } from '../../lambdas/shared/errors.ts';
import { type KmsStandIn, startKmsStandIn } from '../../local/kms-server.ts';
import type { Recorded } from '../helpers/proxy-fixtures.ts';
import { sigV4Failure } from '../helpers/sigv4-verifier.ts';

const ROLE = 'arn:aws:iam::123456789012:role/keygate-unit';
const creds = { accessKeyId: 'ASIAUNITTEST', secretAccessKey: 'unit-secret', sessionToken: 'unit-token' };
const lookup = (id: string) => (id === creds.accessKeyId ? creds : undefined);
const scope = { service: 'bedrock', region: 'us-east-1' };

/** Signs a request as the proxy would, and returns what the vendor would receive. */
async function signedAsReceived(pathAndQuery: string, body: string): Promise<Recorded> {
  const headers = await signUpstreamRequest(
    {
      url: new URL('https://bedrock-runtime.us-east-1.amazonaws.com'),
      pathAndQuery,
      method: 'POST',
      headers: { 'content-type': 'application/json', 'user-agent': 'sdk/1', authorization: 'consumer' },
      body: Buffer.from(body),
    },
    scope,
    creds,
  );
  return { method: 'POST', url: pathAndQuery, headers, rawHeaders: [], body: Buffer.from(body) };
}

describe('SigV4 signing of the outgoing request', () => {
  it('verifies with the SDK signer as received; any change to path, query, a signed header or the body breaks it', async () => {
    const good = await signedAsReceived('/model/a%3Ab/invoke?x=1&y=a%20b', '{"a":1}');
    expect(await sigV4Failure(good, lookup, scope)).toBeUndefined();
    expect(good.headers.host).toBe('bedrock-runtime.us-east-1.amazonaws.com');
    expect(good.headers['content-length']).toBe('7');
    expect(String(good.headers.authorization)).toMatch(/^AWS4-HMAC-SHA256 Credential=ASIAUNITTEST\//);
    // user-agent is sent but never signed (SigV4's rule); the consumer's authorization is replaced.
    expect(String(good.headers.authorization)).not.toMatch(/user-agent/);
    const tampered: Recorded[] = [
      { ...good, url: '/model/a%3Ab/invoke?x=2&y=a%20b' },
      { ...good, url: '/model/a%3Ac/invoke?x=1&y=a%20b' },
      { ...good, method: 'PUT' },
      { ...good, headers: { ...good.headers, 'content-type': 'text/plain' } },
      { ...good, body: Buffer.from('{"a":2}') },
    ];
    for (const t of tampered) expect(await sigV4Failure(t, lookup, scope)).toBeDefined();
  });

  it('takes only a query whose bytes are the encoding the signature covers', () => {
    expect(signableQuery('a=1&b=x%20y&b=z&c')).toEqual({
      a: '1',
      b: ['x%20y', 'z'].map(decodeURIComponent),
      c: '',
    });
    for (const q of ['a=b+c', 'a=%2f', 'a=(x)', 'a=%E0%A4%A', '=x'])
      expect(() => signableQuery(q)).toThrow(SignedRequestError);
  });
});

describe('temporary credentials from the STS stand-in (the real STS client)', () => {
  let standIn: KmsStandIn;
  beforeAll(async () => {
    standIn = await startKmsStandIn();
  });
  afterAll(() => standIn.close());

  it('assumes once, then again ahead of expiry: no request ever holds expired credentials', async () => {
    const sts = createStsClient({
      region: 'us-east-1',
      endpoint: standIn.endpoint,
      credentials: standIn.credentials,
    });
    const t0 = Date.now();
    let now = t0;
    const cache = new AssumedRoleCache(() => now);
    const secret = { roleArn: ROLE, externalId: 'ext-1', service: 'bedrock', region: 'us-east-1' };
    const first = await cache.credentials(sts, 'cred1', '{}', secret);
    now = t0 + 3000_000;
    expect(await cache.credentials(sts, 'cred1', '{}', secret)).toBe(first);
    now = t0 + 3301_000; // within 5 minutes of the one-hour expiry
    const second = await cache.credentials(sts, 'cred1', '{}', secret);
    expect(second.accessKeyId).not.toBe(first.accessKeyId);
    expect(cache.assumes).toBe(2);
    expect(standIn.sts.calls.at(-1)).toEqual({
      roleArn: ROLE,
      externalId: 'ext-1',
      roleSessionName: 'keygate-cred1',
      durationSeconds: 3600,
    });
    // An edited secret (another role) never reuses the old credentials.
    await cache.credentials(sts, 'cred1', '{"edited":1}', { ...secret, roleArn: `${ROLE}-b` });
    expect(cache.assumes).toBe(3);
    sts.destroy();
  });

  it('a refused role is the credential’s fault (TargetAuthError); an unreachable STS is a dependency fault (503)', async () => {
    const sts = createStsClient({
      region: 'us-east-1',
      endpoint: standIn.endpoint,
      credentials: standIn.credentials,
    });
    standIn.sts.refusedRoles.add(`${ROLE}-refused`);
    const cache = new AssumedRoleCache();
    const refused = await cache
      .credentials(sts, 'c2', '{}', { roleArn: `${ROLE}-refused`, service: 's3', region: 'us-east-1' })
      .catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(TargetAuthError);
    sts.destroy();
    const down = createStsClient({
      region: 'us-east-1',
      endpoint: 'http://127.0.0.1:9',
      credentials: standIn.credentials,
      maxAttempts: 1,
    });
    const unreachable = await cache
      .credentials(down, 'c3', '{}', { roleArn: ROLE, service: 's3', region: 'us-east-1' })
      .catch((e: unknown) => e);
    expect(unreachable).not.toBeInstanceOf(TargetAuthError);
    expect(isAwsDependencyError(unreachable)).toBe(true);
    down.destroy();
  });
});

describe('jwt tokens', () => {
  it('are signed once per lifetime and re-signed ahead of expiry', async () => {
    let now = Date.now();
    const t0 = now;
    const cache = new JwtTokenCache({ allowlist: [], timeoutMs: 1000, maxResponseBytes: 1024 }, () => now);
    const secret = {
      algorithm: 'HS256' as const,
      key: 'x'.repeat(40),
      claims: { sub: 'svc' },
      ttlSeconds: 300,
    };
    const a = await cache.token('c', '{}', secret);
    now = t0 + 269_000;
    expect(await cache.token('c', '{}', secret)).toBe(a);
    now = t0 + 271_000; // within a tenth of the 300 s lifetime of its expiry
    const b = await cache.token('c', '{}', secret);
    expect(b).not.toBe(a);
    const { payload } = await jwtVerify(b, new TextEncoder().encode(secret.key));
    expect(payload.sub).toBe('svc');
    expect(cache.loads).toBe(2);
  });
});
