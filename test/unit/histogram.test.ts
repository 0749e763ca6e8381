import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import {
  bucketBoundsMicros,
  bucketIndex,
  type Histogram,
  merge,
  quantile,
  record,
} from '../../lambdas/telemetry/histogram.ts';

/** Nearest-rank percentile of raw values: the reference the histogram is checked against. */
function reference(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(1, Math.ceil(q * sorted.length)) - 1]!;
}

function histogramOf(values: number[]): Histogram {
  const h: Histogram = new Map();
  for (const v of values) record(h, v);
  return h;
}

describe('log-linear latency histogram', () => {
  it('puts every value inside its bucket', () => {
    fc.assert(
      fc.property(fc.double({ min: 0, max: 3_000_000, noNaN: true }), (ms) => {
        const us = ms * 1000;
        const [lo, hi] = bucketBoundsMicros(bucketIndex(ms));
        expect(us).toBeGreaterThanOrEqual(lo);
        expect(us).toBeLessThan(hi);
        expect(hi - lo).toBeLessThanOrEqual(Math.max(1, lo / 16));
      }),
    );
  });

  it('reads p50/p95/p99 within 3.5% of the exact values (lognormal latencies)', () => {
    // Deterministic pseudo-random lognormal latencies around 40 ms with a long tail.
    let seed = 42;
    const rand = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const values = Array.from({ length: 20_000 }, () => {
      const z = Math.sqrt(-2 * Math.log(rand() || 1e-9)) * Math.cos(2 * Math.PI * rand());
      return Math.exp(Math.log(40) + 0.8 * z);
    });
    const h = histogramOf(values);
    for (const q of [0.5, 0.95, 0.99]) {
      const exact = reference(values, q);
      const read = quantile(h, q)!;
      expect(Math.abs(read - exact) / exact).toBeLessThan(0.035);
    }
  });

  it('is within 3.5% for any sample (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: 0.05, max: 60_000, noNaN: true }), { minLength: 1, maxLength: 500 }),
        fc.constantFrom(0.5, 0.95, 0.99),
        (values, q) => {
          const exact = reference(values, q);
          const read = quantile(histogramOf(values), q)!;
          expect(Math.abs(read - exact)).toBeLessThanOrEqual(Math.max(0.001, exact * 0.035));
        },
      ),
      // Found by CI: 63.5 µs was rounded up to 64 µs, the bottom of the next bucket, then read
      // back at that bucket's midpoint (66 µs), 3.9% off. Values are truncated now.
      { numRuns: 1000, examples: [[[0.0635], 0.5]] },
    );
  });

  it('merges by addition: any split gives the same histogram', () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: 0, max: 10_000, noNaN: true }), { maxLength: 200 }),
        fc.nat(),
        (values, cut) => {
          const k = values.length === 0 ? 0 : cut % values.length;
          const merged = merge(histogramOf(values.slice(0, k)), histogramOf(values.slice(k)));
          expect([...merged.entries()].sort()).toEqual([...histogramOf(values).entries()].sort());
        },
      ),
    );
  });

  it('is empty-safe', () => {
    expect(quantile(new Map(), 0.5)).toBeUndefined();
  });
});
