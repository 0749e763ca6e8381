import { createHash, createPrivateKey, type KeyObject, randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import { ExpiringCache, refreshTime } from './expiring-cache.ts';
import { TargetAuthError } from './target-auth-errors.ts';
import { DEFAULT_TOKEN_LIFETIME_S } from './token-cache.ts';
import { requestToken } from './token-endpoint.ts';
import type { UpstreamPolicy } from './upstream.ts';

/**
 * `jwt` target credentials `{ algorithm, key, claims, ttlSeconds?, tokenUrl?, header? }`: a JWT
 * signed by keygate (jose) with the sealed key — an HS256 secret or an RS256/ES256 PEM private
 * key — from the claims template plus `iat`, `exp` (iat + ttlSeconds, default 300) and a fresh
 * `jti`, and `header` (e.g. `kid`) in its protected header. Without `tokenUrl` the JWT itself is
 * sent as `Authorization: Bearer <jwt>`; with it, the JWT is exchanged there with the JWT bearer
 * grant (RFC 7523: `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<jwt>`) and
 * the access token answered is sent instead. The token endpoint is called through the same
 * address policy as every upstream (https, public addresses, checked at connect time).
 *
 * What is sent is cached per credential and secret digest, until shortly before it expires (60 s,
 * or a tenth of its lifetime when shorter); one signature or exchange serves all concurrent
 * requests. So a JWT is signed once per lifetime, not per request. A value the vendor refuses
 * (401: an exchanged token revoked early, a JWT older than the vendor accepts) is replaced by a
 * fresh one and the request retried once, as for oauth2 tokens.
 */
export const JWT_ALGORITHMS = ['HS256', 'RS256', 'ES256'] as const;
export type JwtAlgorithm = (typeof JWT_ALGORITHMS)[number];

export interface JwtSecret {
  algorithm: JwtAlgorithm;
  key: string;
  claims: Record<string, unknown>;
  ttlSeconds?: number;
  tokenUrl?: string;
  header?: Record<string, string>;
}

export const DEFAULT_JWT_TTL_SECONDS = 300;
const REFRESH_MARGIN_MS = 60_000;
export const JWT_BEARER_GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer';

/**
 * The signing key for `algorithm`, or why `key` cannot be one: HS256 takes the secret's UTF-8
 * bytes (at least 32: RFC 7518 wants a key as long as the hash); RS256 an RSA private key of at
 * least 2048 bits; ES256 a P-256 private key — each as PEM (PKCS#8, PKCS#1 or SEC1).
 */
export function signingKeyFor(algorithm: JwtAlgorithm, key: string): Uint8Array | KeyObject | string {
  if (algorithm === 'HS256') {
    const bytes = new TextEncoder().encode(key);
    return bytes.length >= 32 ? bytes : 'an HS256 secret needs at least 32 bytes';
  }
  let keyObject: KeyObject;
  try {
    keyObject = createPrivateKey(key);
  } catch {
    return 'not a PEM private key';
  }
  const details = keyObject.asymmetricKeyDetails;
  if (algorithm === 'RS256') {
    if (keyObject.asymmetricKeyType !== 'rsa')
      return `an RS256 key must be an RSA key, not ${keyObject.asymmetricKeyType}`;
    if ((details?.modulusLength ?? 0) < 2048) return 'an RS256 key needs at least 2048 bits';
    return keyObject;
  }
  if (keyObject.asymmetricKeyType !== 'ec' || details?.namedCurve !== 'prime256v1')
    return 'an ES256 key must be an EC key on P-256';
  return keyObject;
}

/** Signs one JWT from the template, valid `ttlSeconds` from `nowMs`. */
export async function signJwt(secret: JwtSecret, nowMs: number): Promise<string> {
  const key = signingKeyFor(secret.algorithm, secret.key);
  if (typeof key === 'string') throw new TargetAuthError(`the jwt credential's key is unusable: ${key}`);
  const iat = Math.floor(nowMs / 1000);
  return new SignJWT({ ...secret.claims })
    .setProtectedHeader({ typ: 'JWT', ...secret.header, alg: secret.algorithm })
    .setIssuedAt(iat)
    .setExpirationTime(iat + (secret.ttlSeconds ?? DEFAULT_JWT_TTL_SECONDS))
    .setJti(randomUUID())
    .sign(key);
}

export class JwtTokenCache {
  private readonly cache: ExpiringCache<string>;
  private readonly policy: UpstreamPolicy;
  private readonly now: () => number;

  constructor(policy: UpstreamPolicy, now: () => number = Date.now) {
    this.policy = policy;
    this.now = now;
    this.cache = new ExpiringCache(now);
  }

  /** Signatures made plus exchanges done (for tests). */
  get loads(): number {
    return this.cache.loads;
  }

  /**
   * The bearer value to send: the signed JWT, or the access token it was exchanged for. `refused`
   * is a value the vendor just answered 401 to: it is dropped, so a fresh one is signed (and
   * exchanged) unless a concurrent caller already replaced it.
   */
  token(credentialId: string, secretJson: string, secret: JwtSecret, refused?: string): Promise<string> {
    const key = `${credentialId}:${createHash('sha256').update(secretJson).digest('base64')}`;
    if (refused) this.cache.invalidate(key, refused);
    return this.cache.get(key, async () => {
      const started = this.now();
      const jwt = await signJwt(secret, started);
      const jwtLifetimeMs = (secret.ttlSeconds ?? DEFAULT_JWT_TTL_SECONDS) * 1000;
      if (!secret.tokenUrl)
        return { value: jwt, refreshAt: refreshTime(started, jwtLifetimeMs, REFRESH_MARGIN_MS) };
      const { token, lifetimeS } = await this.exchange(secret.tokenUrl, jwt);
      return { value: token, refreshAt: refreshTime(started, lifetimeS * 1000, REFRESH_MARGIN_MS) };
    });
  }

  /** The JWT bearer grant (RFC 7523) at the credential's token endpoint (token-endpoint.ts). */
  private async exchange(tokenUrl: string, assertion: string): Promise<{ token: string; lifetimeS: number }> {
    const answer = await requestToken(tokenUrl, { grant_type: JWT_BEARER_GRANT, assertion }, this.policy);
    return { token: answer.accessToken, lifetimeS: answer.expiresInS ?? DEFAULT_TOKEN_LIFETIME_S };
  }
}
