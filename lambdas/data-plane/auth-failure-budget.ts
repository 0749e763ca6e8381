import ipaddr from 'ipaddr.js';

/**
 * The unauthenticated-failure budget: how many 401s one source address, and one proxy id, may
 * collect per window before the gateway stops asking the store and answers 429 with `Retry-After`.
 *
 * Why: a wrong key costs the gateway a store read and tells the caller nothing, so a flood of them
 * is a free cost and availability lever (and a credential-stuffing signal). The budget is checked
 * BEFORE the store read, in memory, so a throttled request costs no I/O at all.
 *
 * Guarantees and costs:
 *  - fixed memory: at most `maxTracked` counters per kind (source, proxy), least recently used
 *    evicted first; each counter is a fixed window (count, window start), so nothing grows with
 *    traffic;
 *  - a source is an IPv4 address or an IPv6 /64 (one host usually owns a whole /64);
 *  - a caller whose Authorization digest recently succeeded on that very proxy (in this instance)
 *    is never throttled by the budget: a flood of wrong keys against a proxy cannot lock out its
 *    real consumer, and a NAT neighbour of an attacker keeps working;
 *  - it is per instance (per Lambda container, per local process): N instances allow N budgets.
 *    The edge rule in AWS (docs/data-plane-hygiene.md) is the cross-instance backstop.
 *  - it decides only when to stop trying: a request it lets through is authenticated in full.
 */
export interface AuthFailureBudgetOptions {
  /** 401s one source may collect per window; default 20. */
  perSource?: number;
  /** 401s one proxy id may collect per window (all sources together); default 200. */
  perProxy?: number;
  /** Window length; default 60 s. */
  windowSeconds?: number;
  /** Counters kept per kind; default 10,000. */
  maxTracked?: number;
  /**
   * Count loopback sources (127.0.0.0/8, ::1) per source too; default false. Locally every
   * consumer is 127.0.0.1, so a per-source budget would let one bad local client lock out all
   * the others; the per-proxy budget still applies. In AWS no source is loopback.
   */
  countLoopback?: boolean;
}

export const DEFAULT_AUTH_FAILURE_BUDGET = {
  perSource: 20,
  perProxy: 200,
  windowSeconds: 60,
  maxTracked: 10_000,
};

/** Recently good Authorization digests remembered per proxy. */
const GOOD_DIGESTS_PER_PROXY = 8;

interface Counter {
  windowStart: number;
  count: number;
}

export type BudgetVerdict =
  | { ok: true }
  | { ok: false; scope: 'source' | 'proxy'; retryAfterSeconds: number };

/** A map of at most `max` entries; reading or writing an entry makes it the most recent. */
class BoundedLru<V> {
  private readonly entries = new Map<string, V>();
  private readonly max: number;

  constructor(max: number) {
    this.max = max;
  }

  get(key: string): V | undefined {
    const value = this.entries.get(key);
    if (value !== undefined) {
      this.entries.delete(key);
      this.entries.set(key, value);
    }
    return value;
  }

  set(key: string, value: V): void {
    this.entries.delete(key);
    this.entries.set(key, value);
    if (this.entries.size > this.max) this.entries.delete(this.entries.keys().next().value as string);
  }

  get size(): number {
    return this.entries.size;
  }
}

/** The budget key of a source address: IPv4 as is, IPv6 by its /64; anything unparseable as given. */
export function sourceKey(sourceIp: string | undefined): string {
  const ip = sourceIp ?? '';
  try {
    const addr = ipaddr.process(ip);
    if (addr.kind() === 'ipv4') return addr.toString();
    const parts = (addr as ipaddr.IPv6).parts.slice(0, 4);
    return `${parts.map((p) => p.toString(16)).join(':')}::/64`;
  } catch {
    return ip.slice(0, 64);
  }
}

function isLoopback(sourceIp: string | undefined): boolean {
  try {
    return ipaddr.process(sourceIp ?? '').range() === 'loopback';
  } catch {
    return false;
  }
}

export class AuthFailureBudget {
  readonly perSource: number;
  readonly perProxy: number;
  private readonly windowMs: number;
  private readonly countLoopback: boolean;
  private readonly sources: BoundedLru<Counter>;
  private readonly proxies: BoundedLru<Counter>;
  private readonly good: BoundedLru<string[]>;

  constructor(options: AuthFailureBudgetOptions = {}) {
    const { countLoopback = false, ...counts } = options;
    const o = { ...DEFAULT_AUTH_FAILURE_BUDGET, ...counts };
    this.countLoopback = countLoopback;
    for (const [name, value] of Object.entries(o))
      if (!Number.isInteger(value) || value < 1)
        throw new Error(`auth failure budget: ${name} must be a positive integer`);
    this.perSource = o.perSource;
    this.perProxy = o.perProxy;
    this.windowMs = o.windowSeconds * 1000;
    this.sources = new BoundedLru(o.maxTracked);
    this.proxies = new BoundedLru(o.maxTracked);
    this.good = new BoundedLru(o.maxTracked);
  }

  /** Whether this request may go on to the store; pure memory, no I/O. */
  check(sourceIp: string | undefined, proxyId: string, authDigest: string, nowMs: number): BudgetVerdict {
    if (this.good.get(proxyId)?.includes(authDigest)) return { ok: true };
    const source = this.bySource(sourceIp)
      ? this.over(this.sources.get(sourceKey(sourceIp)), this.perSource, nowMs)
      : undefined;
    if (source !== undefined) return { ok: false, scope: 'source', retryAfterSeconds: source };
    const proxy = this.over(this.proxies.get(proxyId), this.perProxy, nowMs);
    if (proxy !== undefined) return { ok: false, scope: 'proxy', retryAfterSeconds: proxy };
    return { ok: true };
  }

  /**
   * Counts one 401. Answers the scopes whose budget this very failure exhausted (each at most once
   * per window): the moments a burst is flagged.
   */
  recordFailure(sourceIp: string | undefined, proxyId: string, nowMs: number): Array<'source' | 'proxy'> {
    const exhausted: Array<'source' | 'proxy'> = [];
    if (this.bySource(sourceIp) && this.bump(this.sources, sourceKey(sourceIp), this.perSource, nowMs))
      exhausted.push('source');
    if (this.bump(this.proxies, proxyId, this.perProxy, nowMs)) exhausted.push('proxy');
    return exhausted;
  }

  /** Remembers a digest that authenticated on this proxy (it is never throttled here). */
  recordSuccess(proxyId: string, authDigest: string): void {
    const list = this.good.get(proxyId) ?? [];
    if (list.includes(authDigest)) return;
    this.good.set(proxyId, [authDigest, ...list].slice(0, GOOD_DIGESTS_PER_PROXY));
  }

  private bySource(sourceIp: string | undefined): boolean {
    return this.countLoopback || !isLoopback(sourceIp);
  }

  /** Seconds until the window ends when the counter is at its limit; undefined when not. */
  private over(counter: Counter | undefined, limit: number, nowMs: number): number | undefined {
    if (!counter || nowMs - counter.windowStart >= this.windowMs || counter.count < limit) return undefined;
    return Math.max(1, Math.ceil((counter.windowStart + this.windowMs - nowMs) / 1000));
  }

  private bump(map: BoundedLru<Counter>, key: string, limit: number, nowMs: number): boolean {
    let counter = map.get(key);
    if (!counter || nowMs - counter.windowStart >= this.windowMs) counter = { windowStart: nowMs, count: 0 };
    counter.count++;
    map.set(key, counter);
    return counter.count === limit;
  }
}
