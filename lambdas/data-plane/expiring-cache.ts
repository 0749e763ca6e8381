/**
 * A small in-memory cache of values that expire (temporary AWS credentials, signed JWTs, access
 * tokens): a value is used until its `refreshAt`; concurrent callers that find no usable value
 * share ONE load (single flight); a failed load is not cached, so the next caller tries again.
 * Bounded: past `maxEntries` the oldest entries go first.
 */
export interface Expiring<T> {
  value: T;
  /** Epoch ms after which the value is loaded anew (some margin before it really expires). */
  refreshAt: number;
}

export class ExpiringCache<T> {
  private readonly entries = new Map<string, Expiring<T>>();
  private readonly inflight = new Map<string, Promise<T>>();
  /** Loads made (for tests and benchmarks). */
  loads = 0;

  private readonly now: () => number;
  private readonly maxEntries: number;

  constructor(now: () => number = Date.now, maxEntries = 1000) {
    this.now = now;
    this.maxEntries = maxEntries;
  }

  /** The value for `key`, loaded (once for all concurrent callers) when absent or due. */
  async get(key: string, load: () => Promise<Expiring<T>>): Promise<T> {
    const hit = this.entries.get(key);
    if (hit && hit.refreshAt > this.now()) return hit.value;
    let pending = this.inflight.get(key);
    if (!pending) {
      this.loads++;
      pending = load()
        .then((loaded) => {
          this.entries.delete(key);
          this.entries.set(key, loaded);
          while (this.entries.size > this.maxEntries)
            this.entries.delete(this.entries.keys().next().value as string);
          return loaded.value;
        })
        .finally(() => this.inflight.delete(key));
      this.inflight.set(key, pending);
    }
    return pending;
  }

  /** Forgets `value` for `key` (it was refused), unless a newer one replaced it already. */
  invalidate(key: string, value: T): void {
    if (this.entries.get(key)?.value === value) this.entries.delete(key);
  }
}

/**
 * When to load a value with `lifetimeMs` left anew: `marginMs` before it expires, or a tenth of
 * its lifetime when that is shorter (a short-lived value is still used most of its life).
 */
export function refreshTime(loadedAt: number, lifetimeMs: number, marginMs: number): number {
  return loadedAt + lifetimeMs - Math.min(marginMs, lifetimeMs / 10);
}
