import { createHash } from 'node:crypto';
import { DEFAULT_TOKEN_LIFETIME_S, type FetchedToken, TokenCache } from './token-cache.ts';
import { requestToken } from './token-endpoint.ts';
import type { UpstreamPolicy } from './upstream.ts';

/**
 * OAuth 2.0 client-credentials tokens for `oauth2` target credentials. A token is kept in memory
 * until shortly before it expires (60 s, or a tenth of its lifetime when that is shorter); concurrent
 * requests that find no usable token share ONE fetch (single flight); a token the vendor refused
 * (401) is dropped so the next fetch gets a new one. The cache key includes a digest of the whole
 * secret, so a rotated client secret never uses a token fetched with the old one. The token
 * endpoint is called through the same address policy as every upstream.
 */
export interface OAuth2Secret {
  tokenUrl: string;
  clientId: string;
  clientSecret: string;
  scope?: string;
  audience?: string;
}

export { OAuth2Error } from './token-endpoint.ts';

export class OAuth2TokenCache {
  private readonly cache: TokenCache;
  private readonly policy: UpstreamPolicy;
  private readonly now: () => number;

  constructor(policy: UpstreamPolicy, now: () => number = Date.now) {
    this.policy = policy;
    this.now = now;
    this.cache = new TokenCache(now);
  }

  /** Token endpoint calls made (for tests and the benchmark). */
  get fetches(): number {
    return this.cache.fetches;
  }

  static keyFor(credentialId: string, secretJson: string): string {
    return `${credentialId}:${createHash('sha256').update(secretJson).digest('base64')}`;
  }

  /** A usable access token for `key`, fetched (once for all concurrent callers) when needed. */
  token(key: string, secret: OAuth2Secret): Promise<string> {
    return this.cache.get(key, () => this.fetch(secret));
  }

  /** Forgets `token` for `key` (the vendor refused it), unless a newer one replaced it already. */
  invalidate(key: string, token: string): void {
    this.cache.invalidate(key, token);
  }

  private async fetch(secret: OAuth2Secret): Promise<FetchedToken> {
    const fetchedAt = this.now();
    const answer = await requestToken(
      secret.tokenUrl,
      {
        grant_type: 'client_credentials',
        client_id: secret.clientId,
        client_secret: secret.clientSecret,
        scope: secret.scope || undefined,
        audience: secret.audience || undefined,
      },
      this.policy,
    );
    const lifetimeS = answer.expiresInS ?? DEFAULT_TOKEN_LIFETIME_S;
    return { token: answer.accessToken, fetchedAt, expiresAt: fetchedAt + lifetimeS * 1000 };
  }
}
