/**
 * A mergeable log-linear latency histogram (the HdrHistogram layout with 16 linear sub-buckets per
 * power of two). Values are recorded in whole microseconds, truncated (not rounded) so that a value
 * always lies inside the real-valued bounds of its bucket; below 16 µs every microsecond has its own
 * bucket, above it a bucket spans at most 1/16 of its lower bound, so a percentile read at a
 * bucket's midpoint is within 1/32 (≈3.1%) of the true value, or within 1 µs below 16 µs. Merging two histograms is adding counts index by
 * index, which is what DynamoDB's `ADD` does to the bucket attributes of a telemetry item, so
 * rollups stay exact however records are batched, split or combined.
 */
const SUB_BITS = 4;
const SUB = 1 << SUB_BITS; // 16 sub-buckets per power of two
/** Largest value kept apart (≈ 71 min in µs); above it everything shares the last bucket. */
const MAX_MICROS = 2 ** 32 - 1;

export type Histogram = Map<number, number>;

/** The bucket index of a duration in milliseconds. */
export function bucketIndex(ms: number): number {
  const us = Math.min(MAX_MICROS, Math.max(0, Math.floor(ms * 1000)));
  if (us < SUB) return us;
  const exp = 31 - Math.clz32(us); // floor(log2(us)), ≥ 4
  const sub = (us >>> (exp - SUB_BITS)) - SUB; // 0..15
  return SUB + (exp - SUB_BITS) * SUB + sub;
}

/** The [lower, upper) bounds of a bucket, in microseconds. */
export function bucketBoundsMicros(index: number): [number, number] {
  if (index < SUB) return [index, index + 1];
  const exp = Math.floor((index - SUB) / SUB) + SUB_BITS;
  const sub = (index - SUB) % SUB;
  const width = 2 ** (exp - SUB_BITS);
  const lower = (SUB + sub) * width;
  return [lower, lower + width];
}

export function record(h: Histogram, ms: number, count = 1): void {
  const i = bucketIndex(ms);
  h.set(i, (h.get(i) ?? 0) + count);
}

export function merge(into: Histogram, from: Histogram): Histogram {
  for (const [i, n] of from) into.set(i, (into.get(i) ?? 0) + n);
  return into;
}

/**
 * The value (ms) at quantile q (0..1): the midpoint of the bucket holding the ⌈q·n⌉-th smallest
 * value (nearest-rank). Undefined for an empty histogram.
 */
export function quantile(h: Histogram, q: number): number | undefined {
  let total = 0;
  for (const n of h.values()) total += n;
  if (total === 0) return undefined;
  const rank = Math.max(1, Math.ceil(q * total));
  let seen = 0;
  for (const i of [...h.keys()].sort((a, b) => a - b)) {
    seen += h.get(i)!;
    if (seen >= rank) {
      const [lo, hi] = bucketBoundsMicros(i);
      const mid = hi - lo === 1 ? lo : (lo + hi) / 2;
      return Math.round(mid) / 1000;
    }
  }
  return undefined;
}
