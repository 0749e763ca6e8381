import { patternFinds } from '../rules/patterns.ts';
import { logger } from '../shared/logger.ts';
import { keys } from '../storage/keys.ts';
import type { MeterView, ProxySnapshot } from '../storage/snapshot-types.ts';
import { loggerMetricFields, PRODUCT_METRICS } from '../telemetry/metrics.ts';
import type { MeterRecord } from '../telemetry/record.ts';
import type { ReadValues } from './meter-values.ts';
import { type CounterRef, type RateLimiter, retryAfterSeconds, type Token } from './rate-limit.ts';

/**
 * Meters on the hot path (docs/meters.md): a budget of requests, or of a value the vendor reports in
 * its answer (tokens…), per UTC window, on a proxy or on its target credential.
 *
 * Counting reuses the rate limiter's token leases (rate-limit.ts): every meter has a counter per
 * window (keys.meterCounter) whose units an instance claims in blocks with one `ADD` and spends
 * locally, so in steady state a metered call writes nothing to the store.
 *  - Admission (before the call goes out): a `block` meter that applies to the call must yield ONE
 *    unit below its limit (`takeToken`); if none is left the call is refused, 429
 *    `proxy-meter-exhausted`, Retry-After = the window's end. `flag` meters never refuse.
 *  - Settlement (after the answer): the call's value v (1 for request_count; for response_value
 *    the number at valuePath, rounded up) is spent: the admission unit is one of them, v − 1 more
 *    are consumed (past the limit too: they record the overshoot and keep later calls out). v = 0
 *    gives the admission unit back.
 *
 * The overshoot bound. Units below the limit go to admissions and to settlements; once all of them
 * are spent no call is admitted. A call admitted before that and settled after it spends at most
 * v − 1 units past the limit. So per window:
 *      spent ≤ limit + Σ over calls in flight when the budget ran out of (their value − 1)
 *            ≤ limit + F × (Vmax − 1)
 * with F the calls admitted but not yet settled, across all instances, at that moment, and Vmax the
 * largest value of one call. request_count meters never overshoot (v = 1). Tested with N calls
 * released together (test/integration/meters.test.ts).
 */
export interface Admitted {
  meter: MeterView;
  /** The admission unit of a `block` meter. */
  token?: Token;
}

export type Admission =
  | { ok: true; admitted: Admitted[] }
  | { ok: false; meter: MeterView; retryAfterSeconds: number };

/** Refusals and flags are logged once per meter and window by each instance. */
const MAX_FLAGGED = 10_000;

export function meterCounter(meter: MeterView): CounterRef {
  return {
    id: `meter ${meter.meterId}`,
    window: meter.window,
    key: (start) => keys.meterCounter(meter.meterId, meter.window, start),
  };
}

/**
 * The meters of a snapshot that apply to this method and (normalised) path. A stored pattern that
 * no longer compiles under today's limits applies everywhere: a budget errs on the counting side.
 */
export function applicableMeters(snapshot: ProxySnapshot, method: string, path: string): MeterView[] {
  if (!snapshot.meters?.length) return [];
  const onPath = (pattern: string) => {
    try {
      return patternFinds(pattern, path);
    } catch {
      return true;
    }
  };
  return snapshot.meters.filter(
    (m) =>
      (!m.methods || m.methods.includes(method)) && (m.pathPattern === undefined || onPath(m.pathPattern)),
  );
}

export class MeterBook {
  private readonly limiter: RateLimiter;
  private readonly flagged = new Set<string>();

  constructor(limiter: RateLimiter) {
    this.limiter = limiter;
  }

  /** One unit of every applicable `block` meter, or the first exhausted one. */
  async admit(meters: MeterView[], now: Date): Promise<Admission> {
    const admitted: Admitted[] = [];
    for (const meter of meters) {
      if (meter.action !== 'block') {
        admitted.push({ meter });
        continue;
      }
      const token = await this.limiter.takeToken(meterCounter(meter), meter.limit, now);
      if (!token) {
        this.release(admitted);
        return { ok: false, meter, retryAfterSeconds: retryAfterSeconds(meter.window, now) };
      }
      admitted.push({ meter, token });
    }
    return { ok: true, admitted };
  }

  /** The call did not go out: admission units go back to this instance's leases. */
  release(admitted: Admitted[]): void {
    for (const a of admitted) if (a.token) this.limiter.giveBack(a.token);
  }

  /**
   * Spends each meter's value (see the top of this file) and answers what the request log records.
   * Runs after the answer, off the consumer's path; a store failure here loses the values of this
   * call (logged), it never changes an answer already sent.
   */
  async settle(admitted: Admitted[], read: ReadValues | undefined, now: Date): Promise<MeterRecord[]> {
    return Promise.all(
      admitted.map(async ({ meter, token }) => {
        const raw = meter.meterType === 'request_count' ? 1 : (read?.values.get(meter.meterId) ?? 0);
        const value = Math.ceil(raw);
        const out: MeterRecord = { meterId: meter.meterId, value };
        if (meter.meterType === 'response_value' && !read?.values.has(meter.meterId))
          out.unread = read?.unread ?? 'no_value';
        if (token && value === 0) {
          this.limiter.giveBack(token);
          return out;
        }
        const extra = token ? value - 1 : value;
        const highest = Math.max(
          token?.index ?? -1,
          await this.limiter.consume(meterCounter(meter), meter.limit, extra, now),
        );
        if (highest >= meter.limit) {
          out.overLimit = true;
          this.flagOnce(meter, 'meter over limit', now);
        }
        return out;
      }),
    );
  }

  /** A refused call: logged (with the metric) once per meter and window by this instance. */
  refused(meter: MeterView, proxyId: string, now: Date): void {
    this.flagOnce(meter, 'meter exhausted', now, proxyId);
  }

  private flagOnce(meter: MeterView, message: string, now: Date, proxyId?: string) {
    const key = `${message} ${meter.meterId} ${now.toISOString().slice(0, 16)}`;
    if (this.flagged.has(key)) return;
    this.flagged.add(key);
    if (this.flagged.size > MAX_FLAGGED) this.flagged.delete(this.flagged.values().next().value as string);
    const metric =
      message === 'meter exhausted' ? PRODUCT_METRICS.meterExhausted : PRODUCT_METRICS.meterOverLimit;
    logger.warn(message, {
      ...loggerMetricFields([metric], now.getTime()),
      meter: { meterId: meter.meterId, scope: meter.scope, window: meter.window, limit: meter.limit },
      ...(proxyId ? { proxyId } : {}),
    });
  }
}
