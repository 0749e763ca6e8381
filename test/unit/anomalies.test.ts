import { describe, expect, it } from '@jest/globals';
import { type BucketCounts, detectAnomalies } from '../../lambdas/telemetry/anomalies.ts';

const T0 = Date.UTC(2026, 10, 28, 9, 0);
const minute = (i: number) => `${new Date(T0 + i * 60_000).toISOString().slice(0, 19)}Z`;

/** 40 minutes of traffic: `shape(i)` gives each minute's counts. */
function series(shape: (i: number) => Partial<BucketCounts>): BucketCounts[] {
  return Array.from({ length: 40 }, (_, i) => ({
    bucketStart: minute(i),
    requests: 0,
    denied: 0,
    s4xx: 0,
    s5xx: 0,
    ...shape(i),
  }));
}

const steady = (i: number) => ({ requests: 100 + (i % 3) * 5, s4xx: 4 + (i % 2), denied: 2, s5xx: 1 });

describe('anomaly flags', () => {
  it("flags a meter's value spiking against its own baseline, even with steady request counts", () => {
    // Same requests every minute; tokens per minute ~2,000, then 30,000 in minute 35.
    const meterOf = (i: number) => ({
      m1: { value: i === 35 ? 30_000 : 2000 + (i % 4) * 100, overLimit: 0 },
    });
    const flags = detectAnomalies({
      interval: 'minute',
      series: series((i) => ({ ...steady(i), meters: meterOf(i) })),
      from: 30,
      proxyFirstSeenAt: minute(0),
      paths: [],
    });
    expect([...flags.keys()]).toEqual([minute(35)]);
    expect(flags.get(minute(35))).toEqual([
      expect.objectContaining({ type: 'meter_spike', meterId: 'm1', observed: 30_000, baseline: 2150 }),
    ]);
  });

  it('raises nothing on steady traffic, busy and a little error-prone', () => {
    const flags = detectAnomalies({
      interval: 'minute',
      series: series(steady),
      from: 30,
      proxyFirstSeenAt: minute(0),
      paths: [{ path: '/v2/inventory/{id}', firstSeenAt: minute(0) }],
    });
    expect(flags.size).toBe(0);
  });

  it('raises nothing for a brand-new proxy (no baseline yet), even on its first burst', () => {
    const flags = detectAnomalies({
      interval: 'minute',
      series: series((i) => (i >= 37 ? { requests: 500, s4xx: 200 } : {})),
      from: 30,
      proxyFirstSeenAt: minute(37),
      paths: [{ path: '/v2/a', firstSeenAt: minute(37) }],
    });
    expect(flags.size).toBe(0);
  });

  it('flags a request spike with the numbers behind it', () => {
    const flags = detectAnomalies({
      interval: 'minute',
      series: series((i) => (i === 35 ? { ...steady(i), requests: 900 } : steady(i))),
      from: 30,
      paths: [],
    });
    expect([...flags.keys()]).toEqual([minute(35)]);
    const [spike] = flags.get(minute(35))!;
    expect(spike).toMatchObject({ type: 'request_spike', observed: 900 });
    expect(spike!.baseline).toBeGreaterThan(100);
    expect(spike!.baseline).toBeLessThan(110);
    expect(spike!.threshold).toBeLessThan(900);
    expect(spike!.reason).toMatch(/900 requests against a baseline of 10\d/);
  });

  it('flags denied, 4xx and 5xx surges by rate against the baseline rate', () => {
    const flags = detectAnomalies({
      interval: 'minute',
      series: series((i) => (i === 38 ? { requests: 100, denied: 60, s4xx: 65, s5xx: 30 } : steady(i))),
      from: 30,
      paths: [],
    });
    const types = flags
      .get(minute(38))!
      .map((f) => f.type)
      .sort();
    expect(types).toEqual(['client_error_surge', 'denied_surge', 'server_error_surge']);
    const denied = flags.get(minute(38))!.find((f) => f.type === 'denied_surge')!;
    expect(denied.observed).toBe(0.6);
    expect(denied.baseline).toBeCloseTo(2 / 105, 2);
  });

  it('does not call a handful of errors a surge (absolute floor)', () => {
    const flags = detectAnomalies({
      interval: 'minute',
      series: series((i) => (i === 38 ? { requests: 12, s5xx: 6 } : { requests: 10 })),
      from: 30,
      paths: [],
    });
    expect(flags.size).toBe(0);
  });

  it('flags first-seen paths on a proxy with a history, in the bucket they appeared', () => {
    const flags = detectAnomalies({
      interval: 'minute',
      series: series(steady),
      from: 30,
      proxyFirstSeenAt: minute(0),
      paths: [
        { path: '/v2/inventory/{id}', firstSeenAt: minute(0) },
        { path: '/admin/export', firstSeenAt: new Date(T0 + 33 * 60_000 + 12_000).toISOString() },
      ],
    });
    expect([...flags.keys()]).toEqual([minute(33)]);
    expect(flags.get(minute(33))).toEqual([
      expect.objectContaining({ type: 'first_seen_paths', observed: 1, paths: ['/admin/export'] }),
    ]);
  });

  it('flags paths denied for the first time, even one call each, and only on a proxy with a history', () => {
    const at = (i: number, s = 0) => new Date(T0 + i * 60_000 + s * 1000).toISOString();
    const input = {
      interval: 'minute' as const,
      series: series(steady),
      from: 30,
      paths: [
        { path: '/v2/inventory/{id}', firstSeenAt: minute(0), firstDeniedAt: minute(1) },
        { path: '/admin/users', firstSeenAt: minute(2), firstDeniedAt: at(34, 5) },
        { path: '/admin/export', firstSeenAt: at(34, 9), firstDeniedAt: at(34, 9) },
        { path: '/admin/export', firstSeenAt: at(34, 9) },
      ],
    };
    const flags = detectAnomalies({ ...input, proxyFirstSeenAt: minute(0) });
    expect([...flags.keys()]).toEqual([minute(34)]);
    expect(flags.get(minute(34))).toEqual([
      expect.objectContaining({ type: 'first_seen_paths', observed: 1, paths: ['/admin/export'] }),
      expect.objectContaining({
        type: 'first_denied_paths',
        observed: 2,
        paths: ['/admin/export', '/admin/users'],
        reason: '2 path(s) denied on this proxy for the first time: /admin/export, /admin/users',
      }),
    ]);
    // A new proxy's first denials are its rules at work, not an anomaly.
    expect(detectAnomalies({ ...input, proxyFirstSeenAt: minute(32) }).size).toBe(0);
  });
});
