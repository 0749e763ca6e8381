import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import type { TableRef } from '../shared/deps.ts';
import { type Key, keys } from '../storage/keys.ts';
import { withDeadline } from './deadline.ts';

/**
 * proxyMaxRequestsPerMinute / proxyMaxRequestsPerDay, enforced with token leases (docs/hot-path.md).
 *
 * Every window of a proxy has one counter item (keys.rateCounter, a TTL so old windows vanish). The
 * counter numbers the window's tokens 0, 1, 2, …: an instance claims a BLOCK of b tokens with one
 * UpdateItem (`ADD n b`, UPDATED_NEW), which hands it the distinct index range [n − b, n). It then
 * spends those tokens locally, one per request, and claims again when they run out. A request
 * passes only with a token whose index is below the limit IN THE SNAPSHOT READ FOR THAT REQUEST.
 *
 * Guarantees (tests: test/integration/rate-limit-leases.test.ts, proxy-resilience.test.ts):
 *  - Never over: ranges from the atomic ADD never overlap, and only indices < limit pass, so at
 *    most `limit` requests pass per window across any number of instances. Claims past the limit
 *    are harmless (they only number tokens that cannot pass).
 *  - A lowered limit applies on the very next request, on every instance: an instance that reads a
 *    lower limit drops the tokens it holds, and only indices below the new limit that nobody has
 *    claimed yet can still pass. So after lowering to L', at most max(L', requests passed before the
 *    change) pass in that window. A raised limit applies at once too (held indices are compared
 *    with the limit each request reads, and the counter is claimed from again).
 *  - Under-admission is bounded: tokens are lost only when an instance holds a lease and gets no
 *    more traffic before the window ends (or is recycled). An instance holds at most one block plus
 *    a prefetched one, a block is at most ceil(limit / 16) (minute) or ceil(limit / 64) (day), and
 *    prefetch starts only when a quarter of a block is left: at most 1.25 blocks per instance.
 *  - Unauthenticated calls burn nothing: the handler asks for a token only after authentication.
 *  - Nothing here says whether a key or proxy is valid; the snapshot read on every request does.
 *
 * Cost: a block lasts about LEASE_SECONDS of this instance's observed traffic, so in steady state
 * a claim (one write) serves many requests. Once the counter is seen at or over the limit, refusals
 * are local (no write). Blocks of 4 tokens or more are claimed again in the background before they
 * run out, so a request rarely waits for a claim: one store round trip (the snapshot) per request.
 *
 * The same machinery counts meters (data-plane/meters.ts, docs/meters.md): a counter is any
 * {@link CounterRef}; `takeToken` admits a call with one index below the limit and `consume`
 * spends further indices for a value known only after the answer (indices at or over the limit
 * included: they record what was spent past the limit, and make later admissions fail).
 */
export type Window = 'minute' | 'hour' | 'day' | 'month';
export interface Limits {
  minute?: number;
  day?: number;
}

export type LimitVerdict = { ok: true } | { ok: false; retryAfterSeconds: number };

/** How long a block should last at the observed rate, and the largest share of a window's limit. */
const LEASE_SECONDS: Record<Window, number> = { minute: 5, hour: 30, day: 60, month: 300 };
const MAX_SHARE: Record<Window, number> = { minute: 16, hour: 32, day: 64, month: 128 };
/** How long a counter item outlives its window (DynamoDB TTL). */
const TTL_AFTER_SECONDS: Record<Window, number> = { minute: 3600, hour: 86_400, day: 86_400, month: 86_400 };
/** Prefetching pays off (and costs at most a quarter block of under-admission) from this size. */
const MIN_PREFETCH_BLOCK = 4;
const MAX_LEASES = 10_000;

/** The largest block an instance claims in a window with this limit. */
export function maxBlock(window: Window, limit: number): number {
  return Math.max(1, Math.ceil(limit / MAX_SHARE[window]));
}

const START_LENGTH: Record<Window, number> = { minute: 16, hour: 13, day: 10, month: 7 };

/** The window holding `now`, UTC, as an ISO prefix (`2026-01-31T10:05`, `…T10`, `2026-01-31`, `2026-01`). */
export function windowStart(window: Window, now: Date): string {
  return now.toISOString().slice(0, START_LENGTH[window]);
}

/** Epoch ms at which the window holding `now` ends (UTC; months by the calendar). */
export function windowEndMs(window: Window, now: Date): number {
  if (window === 'month') return Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1);
  const size = window === 'minute' ? 60_000 : window === 'hour' ? 3_600_000 : 86_400_000;
  return Math.floor(now.getTime() / size) * size + size;
}

/** Whole seconds to the end of the window (at least 1): a 429's Retry-After. */
export function retryAfterSeconds(window: Window, now: Date): number {
  return Math.max(1, Math.ceil((windowEndMs(window, now) - now.getTime()) / 1000));
}

/**
 * One counter with leases: its id (the lease map's key), its window kind and its item key per
 * window start. A proxy's request limits are `{ id: proxyId, key: keys.rateCounter(…) }`.
 */
export interface CounterRef {
  id: string;
  window: Window;
  key(windowStart: string): Key;
}

/** A token taken by {@link RateLimiter.takeToken}: give it back when the call is not made after all. */
export interface Token {
  lease: object;
  index: number;
}

/** One proxy's tokens in one window, held by this instance. */
interface Lease {
  start: string;
  /** Index ranges [lo, hi) still held, ascending. */
  ranges: Array<[number, number]>;
  /** Indices taken by a request that was then refused by another window: spent first. */
  returned: number[];
  /** The highest counter value this instance saw: no claim can return an index below it. */
  seen: number;
  /** The limit of the last request: when a request reads a lower one, the holdings are dropped. */
  limit: number;
  /** Tokens taken since the last claim, and when that claim was made (for the rate). */
  taken: number;
  lastClaimAt: number;
  lastBlock: number;
  /** Requests waiting for a claim in flight, and the tokens they want beyond one each (consume). */
  waiting: number;
  wanted: number;
  claim?: Promise<void>;
}

export interface LimiterStats {
  /** Claims (UpdateItem calls) made, and how many of them a request had to wait for. */
  claims: number;
  inlineClaims: number;
}

export class RateLimiter {
  private readonly table: TableRef;
  private readonly timeoutMs: number;
  /** Keyed by `${counter id} ${window}`; the lease of the current window only. */
  private readonly leases = new Map<string, Lease>();
  /** Observed rate per proxy and window kind (tokens per second), kept across windows. */
  private readonly rates = new Map<string, number>();
  readonly stats: LimiterStats = { claims: 0, inlineClaims: 0 };

  constructor(table: TableRef, timeoutMs = 2000) {
    this.table = table;
    this.timeoutMs = timeoutMs;
  }

  /** For an authenticated request: one token from every limited window, or a 429 verdict. */
  async check(proxyId: string, limits: Limits, now: Date): Promise<LimitVerdict> {
    const taken: Token[] = [];
    for (const window of ['minute', 'day'] as const) {
      const limit = limits[window];
      if (limit === undefined) continue;
      const counter: CounterRef = {
        id: proxyId,
        window,
        key: (start) => keys.rateCounter(proxyId, window, start),
      };
      const token = await this.takeToken(counter, limit, now);
      if (!token) {
        // Keep what the other window gave: the next request of this instance spends it.
        for (const t of taken) this.giveBack(t);
        return { ok: false, retryAfterSeconds: retryAfterSeconds(window, now) };
      }
      taken.push(token);
    }
    return { ok: true };
  }

  /** One index below `limit` of the counter's current window, or undefined when its budget is spent. */
  async takeToken(counter: CounterRef, limit: number, now: Date): Promise<Token | undefined> {
    const lease = this.leaseFor(counter.id, counter.window, now);
    const index = await this.take(counter, lease, limit, now);
    return index === undefined ? undefined : { lease, index };
  }

  /** A token whose call was not made (or spent nothing): the next call of this instance spends it. */
  giveBack(token: Token): void {
    (token.lease as Lease).returned.push(token.index);
  }

  /**
   * Spends `n` more indices of the counter's current window (a value known after the answer),
   * claiming what the lease lacks (one write for at least `n`, usually for many calls). Indices at
   * or over the limit count too: they are what was spent past it. Answers the highest index spent
   * (≥ limit − 1 means the budget is used up), or −1 when `n` is 0.
   */
  async consume(counter: CounterRef, limit: number, n: number, now: Date): Promise<number> {
    const lease = this.leaseFor(counter.id, counter.window, now);
    let need = Math.max(0, Math.floor(n));
    let highest = -1;
    while (need > 0) {
      const index = lease.returned.shift();
      if (index !== undefined) {
        highest = Math.max(highest, index);
        lease.taken++;
        need--;
        continue;
      }
      const spent = this.spanFromLease(lease, need);
      if (spent) {
        highest = Math.max(highest, spent.last);
        lease.taken += spent.count;
        need -= spent.count;
        continue;
      }
      if (!lease.claim) this.startClaim(counter, lease, limit, now, need);
      lease.wanted += need;
      try {
        await lease.claim;
      } finally {
        lease.wanted -= need;
      }
    }
    return highest;
  }

  /** Up to `n` of the lowest held indices, whatever the limit (spending past it is recorded too). */
  private spanFromLease(lease: Lease, n: number): { count: number; last: number } | undefined {
    const range = lease.ranges[0];
    if (!range) return undefined;
    const count = Math.min(n, range[1] - range[0]);
    range[0] += count;
    if (range[0] >= range[1]) lease.ranges.shift();
    return { count, last: range[0] - 1 };
  }

  private leaseFor(id: string, window: Window, now: Date): Lease {
    const key = `${id} ${window}`;
    const start = windowStart(window, now);
    const held = this.leases.get(key);
    if (held?.start === start) return held;
    const lease: Lease = {
      start,
      ranges: [],
      returned: [],
      seen: 0,
      limit: Number.POSITIVE_INFINITY,
      taken: 0,
      lastClaimAt: now.getTime(),
      lastBlock: 0,
      waiting: 0,
      wanted: 0,
    };
    this.leases.delete(key);
    this.leases.set(key, lease);
    if (this.leases.size > MAX_LEASES) this.leases.delete(this.leases.keys().next().value as string);
    return lease;
  }

  /** A token index below `limit`, or undefined when the window's budget is spent. */
  private async take(
    counter: CounterRef,
    lease: Lease,
    limit: number,
    now: Date,
  ): Promise<number | undefined> {
    if (limit < lease.limit) {
      // Lowered: tokens held under the higher limit are dropped (lost for this window, the safe side),
      // so only indices claimed from now on pass: at most max(new limit, already passed) this window.
      lease.ranges = [];
      lease.returned = [];
    }
    lease.limit = limit;
    for (;;) {
      const index = this.fromLease(lease, limit);
      if (index !== undefined) {
        lease.taken++;
        this.maybePrefetch(counter, lease, limit, now);
        return index;
      }
      // Nothing usable held. Indices only grow: once the counter reached the limit, no claim helps.
      if (lease.seen >= limit && !lease.claim) return undefined;
      if (!lease.claim) {
        this.stats.inlineClaims++;
        this.startClaim(counter, lease, limit, now);
      }
      lease.waiting++;
      try {
        await lease.claim;
      } finally {
        lease.waiting--;
      }
    }
  }

  /** The lowest held index, if it is below the limit (held indices at or over it wait for a raise). */
  private fromLease(lease: Lease, limit: number): number | undefined {
    const i = lease.returned.findIndex((r) => r < limit);
    if (i >= 0) return lease.returned.splice(i, 1)[0];
    const range = lease.ranges[0];
    if (!range || range[0] >= limit) return undefined;
    const index = range[0]++;
    if (range[0] >= range[1]) lease.ranges.shift();
    return index;
  }

  private held(lease: Lease, limit: number): number {
    let n = 0;
    for (const [lo, hi] of lease.ranges) n += Math.max(0, Math.min(hi, limit) - lo);
    return n;
  }

  private maybePrefetch(counter: CounterRef, lease: Lease, limit: number, now: Date) {
    if (lease.claim || lease.seen >= limit || lease.lastBlock < MIN_PREFETCH_BLOCK) return;
    if (this.held(lease, limit) > Math.floor(lease.lastBlock / 4)) return;
    // A failed prefetch is retried inline by the request that needs the tokens (and fails closed there).
    this.startClaim(counter, lease, limit, now).catch(() => undefined);
  }

  /** Block size: the tokens this instance spends in LEASE_SECONDS, within the limit's share and half the rest. */
  private blockSize(counter: CounterRef, lease: Lease, limit: number, now: Date): number {
    const { window } = counter;
    const rateKey = `${counter.id} ${window}`;
    const elapsed = Math.max(1, now.getTime() - lease.lastClaimAt) / 1000;
    if (lease.lastBlock > 0) this.rates.set(rateKey, lease.taken / elapsed);
    if (this.rates.size > MAX_LEASES) this.rates.delete(this.rates.keys().next().value as string);
    const rate = this.rates.get(rateKey) ?? 0;
    const wanted = Math.max(Math.ceil(rate * LEASE_SECONDS[window]), lease.waiting + 1);
    const remaining = Math.max(1, Math.ceil((limit - lease.seen) / 2));
    return Math.max(1, Math.min(wanted, maxBlock(window, limit), remaining));
  }

  /** Claims a block (at least `atLeast` tokens: what a consume still lacks) in the background. */
  private startClaim(counter: CounterRef, lease: Lease, limit: number, now: Date, atLeast = 0) {
    const block = Math.max(atLeast + lease.wanted, this.blockSize(counter, lease, limit, now));
    lease.taken = 0;
    lease.lastClaimAt = now.getTime();
    lease.lastBlock = block;
    this.stats.claims++;
    lease.claim = this.add(counter, lease.start, block, now)
      .then((n) => {
        lease.seen = Math.max(lease.seen, n);
        lease.ranges.push([n - block, n]);
        lease.ranges.sort((a, b) => a[0] - b[0]);
      })
      .finally(() => {
        lease.claim = undefined;
      });
    return lease.claim;
  }

  private async add(counter: CounterRef, start: string, delta: number, now: Date) {
    const ttl = Math.ceil(windowEndMs(counter.window, now) / 1000) + TTL_AFTER_SECONDS[counter.window];
    const update = new UpdateCommand({
      TableName: this.table.tableName,
      Key: counter.key(start),
      UpdateExpression: 'ADD #n :d SET #ttl = if_not_exists(#ttl, :ttl), #type = :type',
      ExpressionAttributeNames: { '#n': 'n', '#ttl': 'ttl', '#type': 'type' },
      ExpressionAttributeValues: { ':d': delta, ':ttl': ttl, ':type': 'RATE_COUNTER' },
      ReturnValues: 'UPDATED_NEW',
    });
    // A hung store fails the claim at the deadline, and the call itself is aborted (socket freed).
    const out = await withDeadline(
      (abortSignal) => this.table.ddb.send(update, { abortSignal }),
      this.timeoutMs,
      'the store',
    );
    return Number(out.Attributes?.n ?? 0);
  }
}
