import { ExpiringCache, refreshTime } from './expiring-cache.ts';

/**
 * Fetched vendor tokens kept in memory per proxy instance (oauth2 client credentials and
 * authorization code, customToken; on ./expiring-cache.ts like the signed targets' tokens): a
 * token is used until shortly before it expires — 60 s, or a tenth of its lifetime when that is
 * shorter — and concurrent requests that find no usable token share ONE fetch (single flight). A token the vendor refused is dropped so the next request fetches anew.
 * Keys name the credential AND its secret (revision or digest): a replaced secret never uses a
 * token fetched with the old one.
 */
export interface FetchedToken {
  token: string;
  /** Epoch ms when the token expires. */
  expiresAt: number;
  /** Epoch ms when it was fetched (the margin is a tenth of expiresAt − fetchedAt, ≤ 60 s). */
  fetchedAt: number;
}

/** A token answered without `expires_in` is used this long. */
export const DEFAULT_TOKEN_LIFETIME_S = 300;

/** When to fetch a token again: 60 s before it expires, or a tenth of its lifetime when shorter. */
export function refreshAtOf(t: Pick<FetchedToken, 'expiresAt' | 'fetchedAt'>): number {
  return refreshTime(t.fetchedAt, t.expiresAt - t.fetchedAt, 60_000);
}

/** An ExpiringCache of tokens whose loads answer when they were fetched and when they expire. */
export class TokenCache {
  private readonly cache: ExpiringCache<string>;

  constructor(now: () => number = Date.now) {
    this.cache = new ExpiringCache(now);
  }

  /** Fetches started (for tests and the benchmark). */
  get fetches(): number {
    return this.cache.loads;
  }

  /** A usable token for `key`; `fetch` runs once for all concurrent callers when none is. */
  get(key: string, fetch: () => Promise<FetchedToken>): Promise<string> {
    return this.cache.get(key, async () => {
      const fetched = await fetch();
      return { value: fetched.token, refreshAt: refreshAtOf(fetched) };
    });
  }

  /** Forgets `token` for `key` (the vendor refused it), unless a newer one replaced it already. */
  invalidate(key: string, token: string): void {
    this.cache.invalidate(key, token);
  }
}
