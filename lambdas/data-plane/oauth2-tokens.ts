import { createHash } from 'node:crypto';
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

interface Entry {
  token: string;
  refreshAt: number;
}

const MAX_ENTRIES = 1000;
const DEFAULT_LIFETIME_S = 300;

export class OAuth2TokenCache {
  private readonly tokens = new Map<string, Entry>();
  private readonly inflight = new Map<string, Promise<string>>();
  /** Token endpoint calls made (for tests and the benchmark). */
  fetches = 0;

  private readonly policy: UpstreamPolicy;
  private readonly now: () => number;

  constructor(policy: UpstreamPolicy, now: () => number = Date.now) {
    this.policy = policy;
    this.now = now;
  }

  static keyFor(credentialId: string, secretJson: string): string {
    return `${credentialId}:${createHash('sha256').update(secretJson).digest('base64')}`;
  }

  /** A usable access token for `key`, fetched (once for all concurrent callers) when needed. */
  async token(key: string, secret: OAuth2Secret): Promise<string> {
    const hit = this.tokens.get(key);
    if (hit && hit.refreshAt > this.now()) return hit.token;
    let pending = this.inflight.get(key);
    if (!pending) {
      pending = this.fetch(key, secret).finally(() => this.inflight.delete(key));
      this.inflight.set(key, pending);
    }
    return pending;
  }

  /** Forgets `token` for `key` (the vendor refused it), unless a newer one replaced it already. */
  invalidate(key: string, token: string): void {
    if (this.tokens.get(key)?.token === token) this.tokens.delete(key);
  }

  private async fetch(key: string, secret: OAuth2Secret): Promise<string> {
    this.fetches++;
    const started = this.now();
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
    const lifetimeS = answer.expiresInS ?? DEFAULT_LIFETIME_S;
    const marginMs = Math.min(60_000, lifetimeS * 100);
    this.tokens.set(key, { token: answer.accessToken, refreshAt: started + lifetimeS * 1000 - marginMs });
    while (this.tokens.size > MAX_ENTRIES) this.tokens.delete(this.tokens.keys().next().value as string);
    return answer.accessToken;
  }
}
