import type { Interval } from '../storage/keys.ts';
import { INTERVAL_MS } from './rollup.ts';

/**
 * Anomaly flags of one proxy against its own recent baseline: the buckets just before the one
 * judged (30 minutes, 24 hours or 14 days), counted only from the proxy's first traffic on, and
 * only once there are enough of them (a new proxy has no baseline and gets no flags). Each flag
 * carries the reason in words and the numbers behind it. Thresholds are deliberately conservative
 * (a multiple of the baseline AND an absolute floor), so steady traffic — however busy, however
 * error-prone — raises nothing.
 */
export type AnomalyType =
  | 'request_spike'
  | 'first_seen_paths'
  | 'first_denied_paths'
  | 'denied_surge'
  | 'client_error_surge'
  | 'server_error_surge'
  /** A meter's value spiked against its own baseline (docs/meters.md). */
  | 'meter_spike'
  /** A meter went past its limit in the bucket (a `flag` meter's flag, or a block meter's overshoot). */
  | 'meter_over_limit';

export interface Anomaly {
  type: AnomalyType;
  reason: string;
  observed: number;
  baseline: number;
  threshold: number;
  paths?: string[];
  /** meter_spike, meter_over_limit: which meter. */
  meterId?: string;
}

/** What detection needs of a bucket. */
export interface BucketCounts {
  bucketStart: string;
  requests: number;
  denied: number;
  s4xx: number;
  s5xx: number;
  /** Per meterId: the value counted and the calls past the limit in the bucket. */
  meters?: Record<string, { value: number; overLimit: number }>;
}

export const BASELINE_BUCKETS: Record<Interval, number> = { minute: 30, hour: 24, day: 14 };
export const MIN_BASELINE_BUCKETS = 5;
const MIN_SPIKE_REQUESTS = 20;
const MIN_SURGE_COUNT = 10;

export interface DetectionInput {
  interval: Interval;
  /** Dense, oldest first: the baseline buckets, then the ones to judge. */
  series: BucketCounts[];
  /** Index in `series` of the first bucket to judge. */
  from: number;
  /** When the proxy was first seen (owner marker), if known. */
  proxyFirstSeenAt?: string;
  /** Path templates with the time each was first seen and first denied (either may be unknown). */
  paths: { path: string; firstSeenAt?: string; firstDeniedAt?: string }[];
}

function round(x: number, digits = 3) {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/**
 * A spike of `observed` against the baseline values: at least 3× their mean AND 4 standard
 * deviations above it AND the absolute floor (requests, or units of a meter's value).
 */
function spikeOf(base: number[], observed: number): { mean: number; threshold: number } | undefined {
  const mean = base.reduce((s, v) => s + v, 0) / base.length;
  const sd = Math.sqrt(base.reduce((s, v) => s + (v - mean) ** 2, 0) / base.length);
  const threshold = Math.max(MIN_SPIKE_REQUESTS, 3 * mean, mean + 4 * sd);
  return observed >= threshold ? { mean, threshold } : undefined;
}

/** Flags per judged bucket (keyed by bucketStart); buckets without flags are absent. */
export function detectAnomalies(input: DetectionInput): Map<string, Anomaly[]> {
  const out = new Map<string, Anomaly[]>();
  const step = INTERVAL_MS[input.interval];
  const window = BASELINE_BUCKETS[input.interval];
  const firstActive = input.series.findIndex((b) => b.requests > 0);
  const firstSeenMs = input.proxyFirstSeenAt ? Date.parse(input.proxyFirstSeenAt) : undefined;
  for (let i = input.from; i < input.series.length; i++) {
    const bucket = input.series[i]!;
    const flags: Anomaly[] = [];
    const lo = Math.max(i - window, firstActive < 0 ? i : firstActive);
    const base = input.series.slice(lo, i);
    for (const [meterId, m] of Object.entries(bucket.meters ?? {}))
      if (m.overLimit > 0)
        flags.push({
          type: 'meter_over_limit',
          reason: `meter ${meterId}: ${m.overLimit} call(s) went past its limit`,
          observed: m.overLimit,
          baseline: 0,
          threshold: 1,
          meterId,
        });
    if (firstActive >= 0 && base.length >= MIN_BASELINE_BUCKETS) {
      const n = base.length;
      const spike = spikeOf(
        base.map((b) => b.requests),
        bucket.requests,
      );
      if (spike) {
        flags.push({
          type: 'request_spike',
          reason: `${bucket.requests} requests against a baseline of ${round(spike.mean, 1)} per ${input.interval} over the previous ${n}`,
          observed: bucket.requests,
          baseline: round(spike.mean),
          threshold: round(spike.threshold),
        });
      }
      for (const [meterId, m] of Object.entries(bucket.meters ?? {})) {
        const meterSpike = spikeOf(
          base.map((b) => b.meters?.[meterId]?.value ?? 0),
          m.value,
        );
        if (meterSpike)
          flags.push({
            type: 'meter_spike',
            reason: `meter ${meterId}: ${m.value} against a baseline of ${round(meterSpike.mean, 1)} per ${input.interval} over the previous ${n}`,
            observed: m.value,
            baseline: round(meterSpike.mean),
            threshold: round(meterSpike.threshold),
            meterId,
          });
      }
      const baseRequests = base.reduce((s, b) => s + b.requests, 0);
      for (const [type, field, label] of [
        ['denied_surge', 'denied', 'denied'],
        ['client_error_surge', 's4xx', '4xx'],
        ['server_error_surge', 's5xx', '5xx'],
      ] as const) {
        const count = bucket[field];
        if (count < MIN_SURGE_COUNT || bucket.requests === 0) continue;
        const rate = count / bucket.requests;
        const baseRate = baseRequests > 0 ? base.reduce((s, b) => s + b[field], 0) / baseRequests : 0;
        const rateThreshold = Math.min(1, Math.max(3 * baseRate, baseRate + 0.25));
        if (rate >= rateThreshold) {
          flags.push({
            type,
            reason: `${count} of ${bucket.requests} requests ${label} (${round(rate * 100, 1)}%) against a baseline rate of ${round(baseRate * 100, 1)}%`,
            observed: round(rate),
            baseline: round(baseRate),
            threshold: round(rateThreshold),
          });
        }
      }
    }
    // First-seen paths: only for a proxy old enough to have a baseline of paths.
    const startMs = Date.parse(bucket.bucketStart);
    const mature = firstSeenMs !== undefined && firstSeenMs <= startMs - MIN_BASELINE_BUCKETS * step;
    if (mature) {
      // A consumer probing outside its rules shows as paths denied for the first time, even when
      // each is denied once — too few for a denied surge.
      for (const [type, field, words] of [
        ['first_seen_paths', 'firstSeenAt', 'never seen on this proxy before'],
        ['first_denied_paths', 'firstDeniedAt', 'denied on this proxy for the first time'],
      ] as const) {
        const inBucket = (at: string | undefined) => {
          const t = at === undefined ? Number.NaN : Date.parse(at);
          return t >= startMs && t < startMs + step;
        };
        const fresh = [...new Set(input.paths.filter((p) => inBucket(p[field])).map((p) => p.path))].sort();
        if (fresh.length > 0) {
          flags.push({
            type,
            reason: `${fresh.length} path(s) ${words}: ${fresh.slice(0, 5).join(', ')}`,
            observed: fresh.length,
            baseline: 0,
            threshold: 1,
            paths: fresh.slice(0, 20),
          });
        }
      }
    }
    if (flags.length > 0) out.set(bucket.bucketStart, flags);
  }
  return out;
}
