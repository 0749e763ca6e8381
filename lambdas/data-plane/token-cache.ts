/**
 * Fetched vendor tokens kept in memory per proxy instance (authorization-code and customToken
 * credentials): a token is used until shortly before it expires — 60 s, or a tenth of its
 * lifetime when that is shorter — and concurrent requests that find no usable token share ONE
 * fetch (single flight). A token the vendor refused is dropped so the next request fetches anew.
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

const MAX_ENTRIES = 1000;
export const DEFAULT_TOKEN_LIFETIME_S = 300;

/** When to fetch a token again: 60 s before it expires, or a tenth of its lifetime when shorter. */
export function refreshAtOf(t: Pick<FetchedToken, 'expiresAt' | 'fetchedAt'>): number {
  return t.expiresAt - Math.min(60_000, (t.expiresAt - t.fetchedAt) / 10);
}

export class TokenCache {
  private readonly entries = new Map<string, { token: string; refreshAt: number }>();
  private readonly inflight = new Map<string, Promise<string>>();
  /** Fetches started (for tests and the benchmark). */
  fetches = 0;
  private readonly now: () => number;

  constructor(now: () => number = Date.now) {
    this.now = now;
  }

  /** A usable token for `key`; `fetch` runs once for all concurrent callers when none is. */
  async get(key: string, fetch: () => Promise<FetchedToken>): Promise<string> {
    const hit = this.entries.get(key);
    if (hit && hit.refreshAt > this.now()) return hit.token;
    let pending = this.inflight.get(key);
    if (!pending) {
      this.fetches++;
      pending = fetch()
        .then((fetched) => {
          this.entries.delete(key);
          this.entries.set(key, { token: fetched.token, refreshAt: refreshAtOf(fetched) });
          while (this.entries.size > MAX_ENTRIES)
            this.entries.delete(this.entries.keys().next().value as string);
          return fetched.token;
        })
        .finally(() => this.inflight.delete(key));
      this.inflight.set(key, pending);
    }
    return pending;
  }

  /** Forgets `token` for `key` (the vendor refused it), unless a newer one replaced it already. */
  invalidate(key: string, token: string): void {
    if (this.entries.get(key)?.token === token) this.entries.delete(key);
  }
}
