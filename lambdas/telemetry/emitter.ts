import { type KinesisClient, PutRecordsCommand, type PutRecordsRequestEntry } from '@aws-sdk/client-kinesis';
import { logger as defaultLogger } from '../shared/logger.ts';
import { maskHeaders, maskPath, maskQuery } from './masking.ts';
import type { TelemetryRecord } from './record.ts';

/**
 * The proxy's side of telemetry. `emit` is synchronous and O(1): it serialises the record into an
 * in-memory buffer and returns — no network, no await, no throw — so it costs the consumer's answer
 * microseconds. `flush` ships the buffer with PutRecords (≤ 500 records / ≤ 5 MiB per call), retries
 * what Kinesis refuses (throttling, a failed call) with exponential backoff, and counts what it
 * finally cannot deliver (`dropped`, with one log line carrying counts and error codes, never a
 * record). The proxy calls `flush` after its answer is on its way:
 *  - long-lived processes (local mode): right after the response is written;
 *  - Lambda: after the answer is handed back (response streaming ends the stream first), or, with a
 *    buffered answer, `autoFlushMs` starts the PutRecords as soon as a record is emitted, so the
 *    final `await flush()` usually finds it already done.
 * The buffer is bounded; a record that does not fit is dropped and counted, never blocking.
 */
export interface TelemetryEmitterOptions {
  kinesis: KinesisClient;
  streamName: string;
  /** Records buffered at most; beyond, new records are dropped (counted). Default 10 000. */
  maxBuffered?: number;
  /** Attempts per record, the first included. Default 4. */
  maxAttempts?: number;
  /** First retry delay; doubles each attempt. Default 50 ms. */
  retryBaseMs?: number;
  /** When set, a flush starts this many ms after the first buffered record (0: next tick). */
  autoFlushMs?: number;
  /** Where undeliverable-record notices go (Powertools logger by default). */
  logger?: { warn(message: string, extra?: Record<string, unknown>): void };
  /** Sleep used between retries (tests shorten it). */
  sleep?: (ms: number) => Promise<void>;
}

export interface TelemetryStats {
  emitted: number;
  delivered: number;
  retried: number;
  dropped: number;
}

export interface TelemetryEmitter {
  /**
   * Hands a record over. This emitter never throws (a record it cannot take is counted as
   * dropped); a sink that promises durability (local/telemetry-wal.ts) throws when it cannot keep
   * the promise, so that the proxy does not make a call it could not record.
   */
  emit(record: TelemetryRecord): void;
  flush(): Promise<void>;
  stats(): TelemetryStats;
}

const MAX_RECORDS_PER_CALL = 500;
const MAX_BYTES_PER_CALL = 5 * 1024 * 1024;
/** Kinesis's per-record cap is 1 MiB; records are kept far below it. */
const MAX_RECORD_BYTES = 256 * 1024;

interface Pending {
  entry: PutRecordsRequestEntry;
  size: number;
  attempts: number;
}

function clip(s: string | undefined, max: number): string | undefined {
  return s === undefined || s.length <= max ? s : s.slice(0, max);
}

/**
 * Bounds the free-text fields so a record always fits Kinesis and a DynamoDB item, and masks the
 * query and headers once more (a no-op on masked values), so the stream never holds a secret even
 * if a caller forgot to mask.
 */
export function bounded(r: TelemetryRecord): TelemetryRecord {
  let headers: Record<string, string> | undefined;
  if (r.headers) {
    headers = {};
    for (const [k, v] of Object.entries(r.headers).slice(0, 64)) headers[k.slice(0, 128)] = v.slice(0, 1024);
    headers = maskHeaders(headers);
  }
  return {
    ...r,
    path: maskPath(clip(r.path, 4096)!),
    query: maskQuery(clip(r.query, 4096)!),
    userAgent: clip(r.userAgent, 512),
    headers,
  };
}

export function createTelemetryEmitter(options: TelemetryEmitterOptions): TelemetryEmitter {
  const maxBuffered = options.maxBuffered ?? 10_000;
  const maxAttempts = options.maxAttempts ?? 4;
  const retryBaseMs = options.retryBaseMs ?? 50;
  const log = options.logger ?? defaultLogger;
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const stats: TelemetryStats = { emitted: 0, delivered: 0, retried: 0, dropped: 0 };
  let buffer: Pending[] = [];
  let chain: Promise<void> = Promise.resolve();
  let timer: NodeJS.Timeout | undefined;

  const drop = (count: number, reason: string, errorCodes: string[] = []) => {
    stats.dropped += count;
    try {
      // Counts and error codes only: a record may hold paths or ids, never logged here.
      log.warn('telemetry records dropped', {
        count,
        reason,
        errorCodes: [...new Set(errorCodes)].slice(0, 5),
        droppedTotal: stats.dropped,
      });
    } catch {
      // a failing logger must not fail the request
    }
  };

  async function send(batch: Pending[]): Promise<void> {
    let pending = batch;
    while (pending.length > 0) {
      const retry: Pending[] = [];
      const codes: string[] = [];
      try {
        const out = await options.kinesis.send(
          new PutRecordsCommand({ StreamName: options.streamName, Records: pending.map((p) => p.entry) }),
        );
        const results = out.Records ?? [];
        pending.forEach((p, i) => {
          const res = results[i];
          if (res && !res.ErrorCode && res.SequenceNumber) stats.delivered++;
          else {
            codes.push(res?.ErrorCode ?? 'NoResult');
            retry.push(p);
          }
        });
      } catch (error) {
        codes.push((error as Error).name || 'Error');
        retry.push(...pending);
      }
      const again: Pending[] = [];
      const give: Pending[] = [];
      for (const p of retry) {
        p.attempts++;
        (p.attempts >= maxAttempts ? give : again).push(p);
      }
      if (give.length > 0) drop(give.length, 'kinesis refused after retries', codes);
      if (again.length === 0) return;
      stats.retried += again.length;
      await sleep(retryBaseMs * 2 ** (again[0]!.attempts - 1));
      pending = again;
    }
  }

  async function drain(): Promise<void> {
    while (buffer.length > 0) {
      const taken = buffer;
      buffer = [];
      const calls: Pending[][] = [];
      let current: Pending[] = [];
      let bytes = 0;
      for (const p of taken) {
        if (current.length === MAX_RECORDS_PER_CALL || bytes + p.size > MAX_BYTES_PER_CALL) {
          calls.push(current);
          current = [];
          bytes = 0;
        }
        current.push(p);
        bytes += p.size;
      }
      if (current.length > 0) calls.push(current);
      await Promise.all(calls.map(send));
    }
  }

  function flush(): Promise<void> {
    if (timer) {
      clearTimeout(timer);
      timer = undefined;
    }
    // Serialised: a flush waits for the one before it, then ships whatever is buffered.
    chain = chain.then(drain, drain);
    return chain;
  }

  function emit(record: TelemetryRecord): void {
    try {
      stats.emitted++;
      if (buffer.length >= maxBuffered) {
        drop(1, 'telemetry buffer full');
        return;
      }
      const data = Buffer.from(JSON.stringify(bounded(record)), 'utf8');
      if (data.length > MAX_RECORD_BYTES) {
        drop(1, 'record too large');
        return;
      }
      const partitionKey = record.requestId || record.proxyId || 'keygate';
      buffer.push({
        entry: { Data: data, PartitionKey: partitionKey },
        size: data.length + partitionKey.length,
        attempts: 0,
      });
      if (options.autoFlushMs !== undefined && !timer) {
        timer = setTimeout(() => {
          timer = undefined;
          void flush();
        }, options.autoFlushMs);
        timer.unref?.();
      }
    } catch {
      // emit never throws into the proxy: a record that cannot even be serialised is counted.
      drop(1, 'record not serialisable');
    }
  }

  return { emit, flush, stats: () => ({ ...stats }) };
}
