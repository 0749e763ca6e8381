import type { Interval } from '../storage/keys.ts';
import { type Histogram, quantile, record as recordLatency } from './histogram.ts';
import type { TelemetryRecord } from './record.ts';

/**
 * Rollup arithmetic, free of storage: which buckets a record counts in, the additive delta of a
 * group of records, and the public view of a stored bucket. Every stored number is a sum (counters,
 * byte totals, duration sums, histogram bucket counts), so buckets merge by addition and DynamoDB's
 * `ADD` applies a delta without reading the item first.
 */
export const INTERVALS: readonly Interval[] = ['minute', 'hour', 'day'];
export const INTERVAL_MS: Record<Interval, number> = { minute: 60_000, hour: 3_600_000, day: 86_400_000 };
/** How long buckets are kept (DynamoDB TTL): fine grain briefly, coarse grain long. */
export const BUCKET_RETENTION_DAYS: Record<Interval, number> = { minute: 3, hour: 35, day: 400 };

/** Start of the bucket holding `time`, as `YYYY-MM-DDTHH:MM:00Z` (UTC, no milliseconds). */
export function bucketStart(time: Date | number, interval: Interval): string {
  const ms = typeof time === 'number' ? time : time.getTime();
  const start = ms - (((ms % INTERVAL_MS[interval]) + INTERVAL_MS[interval]) % INTERVAL_MS[interval]);
  return `${new Date(start).toISOString().slice(0, 19)}Z`;
}

/** Counter attributes of a bucket item, in the order answers show them. */
export const COUNTERS = [
  'requests',
  's1xx',
  's2xx',
  's3xx',
  's4xx',
  's5xx',
  'allowed',
  'denied',
  'unauthenticated',
  'rateLimited',
  'inactive',
  'badRequest',
  'gatewayErrors',
  'unknown',
  'bytesIn',
  'bytesOut',
  'gatewayMsSum',
  'upstreamMsSum',
  'upstreamCount',
  'ttfbMsSum',
  'ttfbCount',
] as const;
export type Counter = (typeof COUNTERS)[number];

/**
 * Histogram bucket attributes: `hg<i>` gateway durations, `hu<i>` upstream durations, `ht<i>` time
 * to the vendor's first byte (streamed answers: what a user of an LLM stream waits for).
 */
export const GATEWAY_HIST = 'hg';
export const UPSTREAM_HIST = 'hu';
export const TTFB_HIST = 'ht';
/**
 * Meter attributes (docs/meters.md), per meterId: `mv_<id>` the value counted, `mn_<id>` the calls
 * metered, `mo_<id>` the calls that went past the limit, `mb_<id>` the calls the meter refused.
 */
const METER_ATTRS = { value: 'mv_', calls: 'mn_', overLimit: 'mo_', blocked: 'mb_' } as const;

export interface Delta {
  counters: Partial<Record<Counter, number>>;
  gateway: Histogram;
  upstream: Histogram;
  ttfb: Histogram;
  /** Meter attribute → increment (METER_ATTRS). */
  meters: Map<string, number>;
}

export function emptyDelta(): Delta {
  return { counters: {}, gateway: new Map(), upstream: new Map(), ttfb: new Map(), meters: new Map() };
}

function addMeter(d: Delta, attr: string, n: number) {
  if (n !== 0 && Number.isFinite(n)) d.meters.set(attr, (d.meters.get(attr) ?? 0) + n);
}

const DECISION_COUNTER: Record<TelemetryRecord['decision'], Counter> = {
  allowed: 'allowed',
  denied: 'denied',
  unauthenticated: 'unauthenticated',
  rate_limited: 'rateLimited',
  inactive: 'inactive',
  bad_request: 'badRequest',
  error: 'gatewayErrors',
  unknown: 'unknown',
};

function add(d: Delta, c: Counter, n: number) {
  if (n !== 0 && Number.isFinite(n)) d.counters[c] = (d.counters[c] ?? 0) + n;
}

/** Adds one record to a delta. */
export function addRecord(d: Delta, r: TelemetryRecord): Delta {
  add(d, 'requests', 1);
  const cls = Math.floor(r.status / 100);
  if (cls >= 1 && cls <= 5) add(d, `s${cls}xx` as Counter, 1);
  add(d, DECISION_COUNTER[r.decision], 1);
  add(d, 'bytesIn', Math.max(0, Math.round(r.bytes.in)));
  add(d, 'bytesOut', Math.max(0, Math.round(r.bytes.out)));
  add(d, 'gatewayMsSum', r.durations.gatewayMs);
  recordLatency(d.gateway, r.durations.gatewayMs);
  if (r.durations.upstreamMs !== undefined) {
    add(d, 'upstreamMsSum', r.durations.upstreamMs);
    add(d, 'upstreamCount', 1);
    recordLatency(d.upstream, r.durations.upstreamMs);
  }
  if (r.durations.ttfbMs !== undefined) {
    add(d, 'ttfbMsSum', r.durations.ttfbMs);
    add(d, 'ttfbCount', 1);
    recordLatency(d.ttfb, r.durations.ttfbMs);
  }
  for (const m of r.meters ?? []) {
    addMeter(d, `${METER_ATTRS.value}${m.meterId}`, Math.max(0, m.value));
    addMeter(d, `${METER_ATTRS.calls}${m.meterId}`, m.blocked ? 0 : 1);
    if (m.overLimit) addMeter(d, `${METER_ATTRS.overLimit}${m.meterId}`, 1);
    if (m.blocked) addMeter(d, `${METER_ATTRS.blocked}${m.meterId}`, 1);
  }
  return d;
}

/** The attribute → increment map an `ADD` update applies. */
export function deltaAttributes(d: Delta): Record<string, number> {
  const out: Record<string, number> = { ...d.counters } as Record<string, number>;
  for (const [i, n] of d.gateway) out[`${GATEWAY_HIST}${i}`] = n;
  for (const [i, n] of d.upstream) out[`${UPSTREAM_HIST}${i}`] = n;
  for (const [i, n] of d.ttfb) out[`${TTFB_HIST}${i}`] = n;
  for (const [attr, n] of d.meters) out[attr] = n;
  return out;
}

export interface MeterBucketView {
  meterId: string;
  /** The value counted in this bucket (requests for a request_count meter). */
  value: number;
  calls: number;
  overLimit: number;
  blocked: number;
}

/** The meters counted in a stored bucket, by meterId. */
function metersOf(item: Record<string, unknown> | undefined): MeterBucketView[] {
  const byId = new Map<string, MeterBucketView>();
  for (const [k, v] of Object.entries(item ?? {})) {
    if (typeof v !== 'number') continue;
    const field = (Object.keys(METER_ATTRS) as Array<keyof typeof METER_ATTRS>).find((f) =>
      k.startsWith(METER_ATTRS[f]),
    );
    if (!field) continue;
    const meterId = k.slice(METER_ATTRS[field].length);
    const view = byId.get(meterId) ?? { meterId, value: 0, calls: 0, overLimit: 0, blocked: 0 };
    view[field] = v;
    byId.set(meterId, view);
  }
  return [...byId.values()].sort((a, b) => a.meterId.localeCompare(b.meterId));
}

function histogramOf(item: Record<string, unknown>, prefix: string): Histogram {
  const h: Histogram = new Map();
  const pattern = new RegExp(`^${prefix}(\\d+)$`);
  for (const [k, v] of Object.entries(item)) {
    const m = pattern.exec(k);
    if (m && typeof v === 'number') h.set(Number(m[1]), v);
  }
  return h;
}

function latencyView(h: Histogram, sum: number, count: number) {
  if (count === 0) return null;
  const round = (x: number | undefined) => (x === undefined ? null : Math.round(x * 1000) / 1000);
  return {
    p50: round(quantile(h, 0.5)),
    p95: round(quantile(h, 0.95)),
    p99: round(quantile(h, 0.99)),
    mean: round(sum / count),
  };
}

export interface BucketView {
  bucketStart: string;
  requests: number;
  status: { '1xx': number; '2xx': number; '3xx': number; '4xx': number; '5xx': number };
  allowed: number;
  denied: number;
  unauthenticated: number;
  rateLimited: number;
  inactive: number;
  badRequest: number;
  gatewayErrors: number;
  /** Calls that went out to the vendor and whose completion was never recorded (crash, timeout). */
  unknown: number;
  bytes: { in: number; out: number };
  /** Milliseconds, read from the histograms (≤ ~3.2% relative error). */
  latency: {
    gateway: { p50: number | null; p95: number | null; p99: number | null; mean: number | null } | null;
    upstream: { p50: number | null; p95: number | null; p99: number | null; mean: number | null } | null;
    /** Time to the vendor's first byte (calls that went out). */
    ttfb: { p50: number | null; p95: number | null; p99: number | null; mean: number | null } | null;
  };
  /** The meters that counted calls in this bucket (docs/meters.md). */
  meters: MeterBucketView[];
}

/** The public view of a stored bucket item (or of an empty bucket). */
export function bucketView(start: string, item: Record<string, unknown> | undefined): BucketView {
  const n = (c: Counter) => (typeof item?.[c] === 'number' ? (item[c] as number) : 0);
  return {
    bucketStart: start,
    requests: n('requests'),
    status: { '1xx': n('s1xx'), '2xx': n('s2xx'), '3xx': n('s3xx'), '4xx': n('s4xx'), '5xx': n('s5xx') },
    allowed: n('allowed'),
    denied: n('denied'),
    unauthenticated: n('unauthenticated'),
    rateLimited: n('rateLimited'),
    inactive: n('inactive'),
    badRequest: n('badRequest'),
    gatewayErrors: n('gatewayErrors'),
    unknown: n('unknown'),
    bytes: { in: n('bytesIn'), out: n('bytesOut') },
    latency: {
      gateway: item ? latencyView(histogramOf(item, GATEWAY_HIST), n('gatewayMsSum'), n('requests')) : null,
      upstream: item
        ? latencyView(histogramOf(item, UPSTREAM_HIST), n('upstreamMsSum'), n('upstreamCount'))
        : null,
      ttfb: item ? latencyView(histogramOf(item, TTFB_HIST), n('ttfbMsSum'), n('ttfbCount')) : null,
    },
    meters: metersOf(item),
  };
}

/**
 * The path as a template for "first-seen path" detection: segments that look like ids (numbers,
 * UUIDs, long hex, long mixed tokens) become `{id}`, so `/v2/orders/123` and `/v2/orders/456` are one
 * path. Capped so it fits a sort key.
 */
export function pathTemplate(path: string): string {
  const t = path
    .split('/')
    .map((seg) => {
      if (seg === '') return seg;
      if (/^\d+$/.test(seg)) return '{id}';
      if (/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(seg)) return '{id}';
      if (/^[0-9a-f]{12,}$/i.test(seg)) return '{id}';
      if (seg.length >= 16 && /\d/.test(seg) && /^[\w-]+$/.test(seg)) return '{id}';
      if (seg.length > 64) return '{long}';
      return seg;
    })
    .join('/');
  return t.slice(0, 512) || '/';
}
