import { UpdateCommand } from '@aws-sdk/lib-dynamodb';
import type { TableRef } from '../shared/deps.ts';
import { keys } from '../storage/keys.ts';

/**
 * proxyMaxRequestsPerMinute / proxyMaxRequestsPerDay, enforced with one atomic DynamoDB counter per
 * proxy and window (`ADD n 1`, keys.rateCounter, a TTL so old windows vanish). Every request gets a
 * distinct count back, so across any number of Lambda instances exactly `limit` requests pass per
 * window (a refused request is counted too: the counter says how many were asked, not served).
 *
 * Latency: the counters are incremented IN PARALLEL with the snapshot read, so a limited proxy
 * still costs one round trip. The handler cannot know a proxy's limits before reading its snapshot,
 * so each instance keeps a hint per proxy: which windows it had, and a digest of the Authorization
 * value that last passed on it. A hint decides only WHEN to count — never whether a request may
 * pass: the snapshot read alongside decides that, every time.
 *
 * Unauthenticated callers must not burn a proxy's quota, nor be told apart by timing: a request is
 * counted early only when it presents the very Authorization value this instance last saw succeed
 * on that proxy. Any other request (a wrong key, an unknown proxy, the first request an instance
 * sees) is counted after authentication, and only if it authenticates. So a wrong key costs one
 * store read, exactly like an unknown proxy. The one case that is counted and then fails is a key
 * that was valid a moment ago and has just been revoked: it is uncounted (`ADD -1`) before its 401.
 */
export type Window = 'minute' | 'day';
export interface Limits {
  minute?: number;
  day?: number;
}

export interface Counting {
  proxyId: string;
  /** SHA-256 of the presented Authorization value (never the value). */
  authDigest: string;
  windows: Array<{ window: Window; start: string }>;
  /** Counts after this request's increment, per window counted early. */
  result: Promise<Partial<Record<Window, number>>>;
}

export type LimitVerdict = { ok: true } | { ok: false; retryAfterSeconds: number };

function windowStart(window: Window, now: Date): string {
  const iso = now.toISOString();
  return window === 'minute' ? iso.slice(0, 16) : iso.slice(0, 10);
}

function windowEndMs(window: Window, now: Date): number {
  const t = now.getTime();
  if (window === 'minute') return Math.floor(t / 60_000) * 60_000 + 60_000;
  return Math.floor(t / 86_400_000) * 86_400_000 + 86_400_000;
}

export class RateLimiter {
  private readonly table: TableRef;
  private readonly hints = new Map<string, { windows: Window[]; authDigest: string }>();

  private readonly timeoutMs: number;

  constructor(table: TableRef, timeoutMs = 2000) {
    this.table = table;
    this.timeoutMs = timeoutMs;
  }

  private async add(
    proxyId: string,
    window: Window,
    start: string,
    delta: number,
    now: Date,
  ): Promise<number> {
    const ttl = Math.ceil(windowEndMs(window, now) / 1000) + (window === 'minute' ? 3600 : 86_400);
    const out = await this.table.ddb.send(
      new UpdateCommand({
        TableName: this.table.tableName,
        Key: keys.rateCounter(proxyId, window, start),
        UpdateExpression: 'ADD #n :d SET #ttl = if_not_exists(#ttl, :ttl), #type = :type',
        ExpressionAttributeNames: { '#n': 'n', '#ttl': 'ttl', '#type': 'type' },
        ExpressionAttributeValues: { ':d': delta, ':ttl': ttl, ':type': 'RATE_COUNTER' },
        ReturnValues: 'UPDATED_NEW',
      }),
      { abortSignal: AbortSignal.timeout(this.timeoutMs) },
    );
    return Number(out.Attributes?.n ?? 0);
  }

  /**
   * Starts counting early when this instance saw this Authorization value pass on a limited proxy;
   * call it together with the snapshot read.
   */
  begin(proxyId: string, authDigest: string, now: Date): Counting {
    const hint = this.hints.get(proxyId);
    const hinted = hint && hint.authDigest === authDigest ? hint.windows : [];
    const windows = hinted.map((window) => ({ window, start: windowStart(window, now) }));
    const result =
      windows.length === 0
        ? Promise.resolve({})
        : Promise.all(windows.map((w) => this.add(proxyId, w.window, w.start, 1, now))).then((counts) =>
            Object.fromEntries(windows.map((w, i) => [w.window, counts[i]])),
          );
    return { proxyId, authDigest, windows, result };
  }

  /** After a failed authentication: uncount what was counted early (a key revoked a moment ago). */
  async release(counting: Counting, now: Date): Promise<void> {
    if (counting.windows.length === 0) return;
    this.hints.delete(counting.proxyId);
    try {
      await Promise.all(counting.windows.map((w) => this.add(counting.proxyId, w.window, w.start, -1, now)));
    } catch {
      // The answer is a 401 either way; a lost uncount only errs towards refusing.
    }
  }

  /** For an authenticated request: counts what was not counted early and decides. */
  async check(counting: Counting, limits: Limits, now: Date): Promise<LimitVerdict> {
    const limited = (['minute', 'day'] as const).filter((w) => limits[w] !== undefined);
    if (limited.length === 0) this.hints.delete(counting.proxyId);
    else this.hints.set(counting.proxyId, { windows: limited, authDigest: counting.authDigest });
    if (this.hints.size > 10_000) this.hints.delete(this.hints.keys().next().value as string);
    const early = await counting.result;
    let retryAfterMs = 0;
    await Promise.all(
      limited.map(async (window) => {
        const count =
          early[window] ?? (await this.add(counting.proxyId, window, windowStart(window, now), 1, now));
        if (count > limits[window]!)
          retryAfterMs = Math.max(retryAfterMs, windowEndMs(window, now) - now.getTime());
      }),
    );
    return retryAfterMs > 0
      ? { ok: false, retryAfterSeconds: Math.max(1, Math.ceil(retryAfterMs / 1000)) }
      : { ok: true };
  }
}
