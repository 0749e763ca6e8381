import { gunzipSync } from 'node:zlib';
import type { KinesisStreamRecord } from 'aws-lambda';
import { z } from 'zod';
import type { Cell, Deps } from '../shared/deps.ts';
import { logger } from '../shared/logger.ts';
import { recordsFromLogPayload } from './log-sink.ts';
import { maskHeaders, maskPath, maskQuery } from './masking.ts';
import type { TelemetryRecord } from './record.ts';
import { REQUEST_ID_PATTERN } from './request-id.ts';

/**
 * The aggregator's first step: a Kinesis record in, checked and masked telemetry records out, each
 * with where it came from (shard, sequence number), which the exactly-once rollups and the
 * start/completion join rely on.
 */

const SEQ_WIDTH = 129;
/** Sequence numbers are decimal strings of up to 129 digits; padded, string order is numeric order. */
export const padSeq = (seq: string) => seq.padStart(SEQ_WIDTH, '0');

const recordSchema = z.looseObject({
  requestId: z.string().regex(REQUEST_ID_PATTERN),
  processedAt: z.iso.datetime({ offset: true }),
  clientId: z.string().min(1).max(128).optional(),
  proxyId: z.string().min(1).max(128),
  proxyCredentialId: z.string().max(128).optional(),
  targetCredentialId: z.string().max(128).optional(),
  targetId: z.string().max(128).optional(),
  method: z.string().min(1).max(32),
  path: z.string().max(8192),
  query: z.string().max(8192),
  headers: z.record(z.string(), z.string()).optional(),
  status: z.number().int().min(0).max(999),
  proxyCode: z.string().max(128),
  decision: z.enum([
    'allowed',
    'denied',
    'unauthenticated',
    'rate_limited',
    'inactive',
    'bad_request',
    'error',
    'unknown',
  ]),
  rule: z
    .object({ ruleId: z.string(), scope: z.string(), effect: z.string(), priority: z.number() })
    .optional(),
  durations: z.object({
    gatewayMs: z.number().min(0).max(3_600_000),
    upstreamMs: z.number().min(0).max(3_600_000).optional(),
    ttfbMs: z.number().min(0).max(3_600_000).optional(),
  }),
  end: z.enum(['complete', 'client_abort', 'vendor_abort', 'deadline']).optional(),
  bytes: z.object({ in: z.number().min(0), out: z.number().min(0) }),
  sourceIp: z.string().max(64).optional(),
  userAgent: z.string().max(2048).optional(),
  phase: z.literal('start').optional(),
  meters: z
    .array(
      z.object({
        meterId: z.string().regex(/^[\w-]{1,64}$/),
        value: z.number().min(0).max(1e15),
        overLimit: z.boolean().optional(),
        blocked: z.boolean().optional(),
        unread: z.enum(['too_large', 'not_json', 'no_value', 'encoded']).optional(),
      }),
    )
    .max(20)
    .optional(),
});

export interface Decoded {
  seq: string;
  padded: string;
  shardId: string;
  cell: Cell;
  record: TelemetryRecord;
}

function cellFor(deps: Deps, region: string | undefined): Cell | undefined {
  if (region && deps.cells[region]) return deps.cells[region];
  return deps.cells[deps.config.homeRegion] ?? Object.values(deps.cells)[0];
}

/**
 * The telemetry records a Kinesis record carries: one JSON record (put by the Kinesis emitter), or
 * several in a gzipped CloudWatch Logs subscription payload (the Lambda proxy's log route). All the
 * records of one Kinesis record share its sequence number; they always travel together, so the
 * watermarks stay exact.
 */
export function payloadRecords(data: Buffer): unknown[] | string {
  if (data[0] === 0x1f && data[1] === 0x8b) {
    try {
      return recordsFromLogPayload(JSON.parse(gunzipSync(data).toString('utf8')));
    } catch {
      return 'not a CloudWatch Logs payload';
    }
  }
  try {
    return [JSON.parse(data.toString('utf8'))];
  } catch {
    return 'not JSON';
  }
}

/** Decodes one Kinesis record; a string names why it can never be processed (poison). */
export function decode(deps: Deps, r: KinesisStreamRecord): Decoded[] | string {
  const raws = payloadRecords(Buffer.from(r.kinesis.data, 'base64'));
  if (typeof raws === 'string') return raws;
  const cell = cellFor(deps, r.awsRegion);
  if (!cell) return 'no cell for region';
  const shardId = r.eventID.includes(':') ? r.eventID.slice(0, r.eventID.indexOf(':')) : 'shard';
  const out: Decoded[] = [];
  for (const raw of raws) {
    const parsed = recordSchema.safeParse(raw);
    if (!parsed.success) {
      if (raws.length === 1) return `invalid field ${parsed.error.issues[0]?.path.join('.') ?? '?'}`;
      logger.error('telemetry record skipped', { reason: 'invalid field', eventID: r.eventID });
      continue;
    }
    const record = parsed.data as TelemetryRecord;
    // Defence in depth: the proxy masks before emitting; masking again is a no-op on masked values.
    record.query = maskQuery(record.query);
    record.path = maskPath(record.path);
    if (record.headers) record.headers = maskHeaders(record.headers);
    out.push({
      seq: r.kinesis.sequenceNumber,
      padded: padSeq(r.kinesis.sequenceNumber),
      shardId,
      cell,
      record,
    });
  }
  return out;
}

/** Runs `fn` over `items`, at most `limit` at a time. */
export async function runLimited<T>(items: T[], limit: number, fn: (item: T) => Promise<void>) {
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await fn(items[next++]!);
  });
  await Promise.all(workers);
}

/** Epoch seconds of `time` plus some days (DynamoDB TTL values). */
export function epochSeconds(time: Date, plusDays: number): number {
  return Math.floor(time.getTime() / 1000) + plusDays * 86_400;
}
