import { createLocalJWKSet, errors, type JSONWebKeySet, type JWTVerifyGetKey, jwtVerify } from 'jose';
import { callUpstream, type UpstreamPolicy } from './upstream.ts';

/**
 * jwtVerify proxy credentials: the consumer presents a JWT (`Authorization: Bearer <jwt>`), checked
 * by signature against the credential's JWKS URL or shared secret, and for issuer, audience and
 * expiry (`exp` is required; 5 s of clock tolerance). JWKS documents are fetched through the same
 * address policy as every upstream, kept 10 minutes, and fetched again early (at most every 30 s)
 * when a token names a key they do not hold — key rotation at the identity provider.
 */
export interface JwtSettings {
  jwksUrl?: string;
  issuer?: string;
  audience?: string;
}

export class JwksUnavailableError extends Error {
  constructor(options?: { cause?: unknown }) {
    super('the JWKS document could not be fetched', options);
    this.name = 'JwksUnavailableError';
  }
}

const JWKS_TTL_MS = 10 * 60_000;
const JWKS_COOLDOWN_MS = 30_000;
const HMAC_ALGS = ['HS256', 'HS384', 'HS512'];
const ASYMMETRIC_ALGS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
];

export class JwtVerifier {
  private readonly sets = new Map<string, { keys: JWTVerifyGetKey; fetchedAt: number }>();
  private readonly policy: UpstreamPolicy;
  private readonly now: () => number;

  constructor(policy: UpstreamPolicy, now: () => number = Date.now) {
    this.policy = policy;
    this.now = now;
  }

  /** True when `token` verifies; throws JwksUnavailableError when the JWKS cannot be had (fail closed). */
  async verify(token: string, settings: JwtSettings, sharedSecret?: string): Promise<boolean> {
    if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(token)) return false;
    const options = {
      issuer: settings.issuer,
      audience: settings.audience,
      requiredClaims: ['exp'],
      clockTolerance: 5,
    };
    try {
      if (sharedSecret !== undefined) {
        await jwtVerify(token, new TextEncoder().encode(sharedSecret), { ...options, algorithms: HMAC_ALGS });
        return true;
      }
      if (!settings.jwksUrl) return false;
      const keys = await this.keySet(settings.jwksUrl, false);
      try {
        await jwtVerify(token, keys, { ...options, algorithms: ASYMMETRIC_ALGS });
      } catch (error) {
        if (!(error instanceof errors.JWKSNoMatchingKey)) throw error;
        const fresh = await this.keySet(settings.jwksUrl, true);
        if (fresh === keys) return false;
        await jwtVerify(token, fresh, { ...options, algorithms: ASYMMETRIC_ALGS });
      }
      return true;
    } catch (error) {
      if (error instanceof JwksUnavailableError) throw error;
      return false;
    }
  }

  private async keySet(url: string, refresh: boolean): Promise<JWTVerifyGetKey> {
    const cached = this.sets.get(url);
    const age = cached ? this.now() - cached.fetchedAt : Number.POSITIVE_INFINITY;
    if (cached && age < JWKS_TTL_MS && (!refresh || age < JWKS_COOLDOWN_MS)) return cached.keys;
    let jwks: JSONWebKeySet;
    try {
      const jwksUrl = new URL(url);
      const res = await callUpstream(
        {
          url: jwksUrl,
          pathAndQuery: jwksUrl.pathname + jwksUrl.search,
          method: 'GET',
          headers: { accept: 'application/json' },
        },
        { ...this.policy, maxResponseBytes: 256 * 1024 },
      );
      if (res.status !== 200) throw new Error(`JWKS answered ${res.status}`);
      jwks = JSON.parse(res.body.toString('utf8')) as JSONWebKeySet;
      if (!Array.isArray(jwks.keys)) throw new Error('not a JWKS');
    } catch (cause) {
      throw new JwksUnavailableError({ cause });
    }
    const keys = createLocalJWKSet(jwks);
    this.sets.set(url, { keys, fetchedAt: this.now() });
    if (this.sets.size > 100) this.sets.delete(this.sets.keys().next().value as string);
    return keys;
  }
}
