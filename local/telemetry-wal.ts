import {
  closeSync,
  constants,
  fdatasync,
  fstatSync,
  ftruncateSync,
  openSync,
  readFileSync,
  readSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import { type KinesisClient, PutRecordsCommand } from '@aws-sdk/client-kinesis';
import { bounded, type TelemetryEmitter, type TelemetryStats } from '../lambdas/telemetry/emitter.ts';
import { TELEMETRY_LOG_MARKER } from '../lambdas/telemetry/log-sink.ts';
import type { TelemetryRecord } from '../lambdas/telemetry/record.ts';

/**
 * Local mode's telemetry emitter: a write-ahead file in the data dir, shipped to the embedded
 * Kinesis stream behind the answers.
 *
 * `emit` appends the record as one JSON line with a synchronous write(2) and returns: once it
 * returns, the record is in the operating system's page cache and survives the process being
 * killed (kill -9, a crash, an OOM kill) — the proxy calls it before the call out (start record)
 * and before the answer is written (completion), so no call reaches the vendor and no answer
 * reaches the consumer without its record. It costs a few microseconds; there is no fsync on the
 * request path. The file is fdatasync'd in the background every `syncMs` (default 200 ms) and on
 * close, so a power loss or kernel crash loses at most that window (documented in
 * docs/audit-trail.md).
 *
 * A shipper sends the lines to Kinesis with PutRecords, up to 200 lines packed per Kinesis record
 * (`aggregate`, the log route's format: one shard, file order), retries what Kinesis refuses
 * without limit, and moves a "shipped up to" offset (a small file, overwritten in place by one
 * fixed-width write) past the records that are in the stream, in file order. On start, whatever
 * lies past that offset is shipped again: a record may reach the stream twice after a crash (the
 * aggregator keeps the first completion of a call and ignores the second), never zero times. When
 * everything written is shipped and the file is over `maxBytes`, it is truncated and started
 * afresh.
 */
export interface TelemetryWalOptions {
  dir: string;
  kinesis: KinesisClient;
  streamName: string;
  /** Background fdatasync period. Default 200 ms. */
  syncMs?: number;
  /** Delay before shipping what was written (batches the records of a burst). Default 5 ms. */
  shipDelayMs?: number;
  /** Truncate the file once fully shipped and over this size. Default 8 MiB. */
  maxBytes?: number;
}

export interface TelemetryWal extends TelemetryEmitter {
  /** Records found unshipped in the file at start (shipped by the first flush). */
  readonly recovered: number;
  /** Ships everything, syncs the file and closes it. */
  close(): Promise<void>;
}

const WAL_FILE = 'telemetry.wal';
const OFFSET_FILE = 'telemetry.wal.shipped';
const MAX_RECORDS_PER_CALL = 500;
/** The offset file holds one zero-padded decimal of this width (any older unpadded one reads too). */
const OFFSET_WIDTH = 20;

interface Line {
  data: Buffer;
  /** File offset just past this line. */
  end: number;
}

/**
 * Lines per Kinesis record, and their size at most (before compression; Kinesis takes 1 MiB).
 * The embedded Kinesis spends ~0.25 ms of CPU putting a record and ~0.1 ms reading it back,
 * whatever its size: two records per proxied call were ~0.7 ms of the store's thread per call.
 */
const MAX_LINES_PER_AGGREGATE = 200;
const MAX_AGGREGATE_BYTES = 512 * 1024;
/** Lines per PutRecords call, before compression: under Kinesis's 5 MiB per call even uncompressed. */
const MAX_CALL_BYTES = 4 * 1024 * 1024;
/** The local stream has one shard: every aggregate goes to it, in file order. */
const AGGREGATE_PARTITION_KEY = 'keygate-telemetry-wal';
const gzipAsync = promisify(gzip);

/**
 * Several lines as one Kinesis record, in the shape a CloudWatch Logs subscription delivers the
 * Lambda proxy's log route (gzipped `DATA_MESSAGE`, one telemetry line per log event), which the
 * aggregator already reads: the records of one Kinesis record share its sequence number and always
 * travel together, so the exactly-once bookkeeping is the same (lambdas/telemetry/decode.ts).
 * Compressed on libuv's thread pool, off the proxy's event loop.
 */
function aggregate(group: Line[]): Promise<Buffer> {
  const now = Date.now();
  const logEvents = group.map((line, i) => ({
    id: String(i),
    timestamp: now,
    message: `{"${TELEMETRY_LOG_MARKER}":1,"record":${line.data.toString('utf8')}}`,
  }));
  return gzipAsync(JSON.stringify({ messageType: 'DATA_MESSAGE', logEvents }), { level: 1 });
}

function readOffset(path: string): number {
  try {
    const n = Number(readFileSync(path, 'utf8').trim());
    return Number.isSafeInteger(n) && n >= 0 ? n : 0;
  } catch {
    return 0;
  }
}

export function openTelemetryWal(options: TelemetryWalOptions): TelemetryWal {
  const walPath = join(options.dir, WAL_FILE);
  const offsetPath = join(options.dir, OFFSET_FILE);
  const syncMs = options.syncMs ?? 200;
  const shipDelayMs = options.shipDelayMs ?? 5;
  const maxBytes = options.maxBytes ?? 8 * 1024 * 1024;
  const stats: TelemetryStats = { emitted: 0, delivered: 0, retried: 0, dropped: 0 };
  const fd = openSync(walPath, 'a+', 0o600);
  let size = fstatSync(fd).size;
  let shipped = readOffset(offsetPath);
  // Truncated after everything was shipped, before the offset was reset: all of it is new.
  if (shipped > size) shipped = 0;
  // Kept open and overwritten in place: one pwrite(2) of a fixed width per shipment, which a kill
  // cannot tear (a write-then-rename of a new file cost the proxy's loop ~150 µs each time).
  const offsetFd = openSync(offsetPath, constants.O_RDWR | constants.O_CREAT, 0o600);
  const pending: Line[] = [];

  // Recovery: the lines past the shipped offset; a torn last line (killed mid-write) is cut off.
  if (size > shipped) {
    const tail = Buffer.alloc(size - shipped);
    readSync(fd, tail, 0, tail.length, shipped);
    let at = 0;
    for (let nl = tail.indexOf(10); nl >= 0; nl = tail.indexOf(10, at)) {
      const data = tail.subarray(at, nl);
      at = nl + 1;
      try {
        JSON.parse(data.toString('utf8'));
        pending.push({ data: Buffer.from(data), end: shipped + at });
      } catch {
        // Not a record (cannot happen short of disk corruption): skipped, not shipped.
      }
    }
    if (at < tail.length) {
      ftruncateSync(fd, shipped + at);
      size = shipped + at;
    }
  }
  const recovered = pending.length;

  let dirty = false;
  let closed = false;
  let fdOpen = true;
  let shipTimer: NodeJS.Timeout | undefined;
  let chain: Promise<void> = Promise.resolve();
  const syncTimer = setInterval(() => {
    if (!dirty) return;
    dirty = false;
    fdatasync(fd, () => undefined);
  }, syncMs);
  syncTimer.unref();

  function saveOffset(offset: number) {
    shipped = offset;
    writeOffset(offset);
    if (pending.length === 0 && shipped === size && size > maxBytes) {
      ftruncateSync(fd, 0);
      size = 0;
      shipped = 0;
      writeOffset(0);
    }
  }

  function writeOffset(offset: number) {
    writeSync(offsetFd, String(offset).padStart(OFFSET_WIDTH, '0'), 0, 'latin1');
  }
  writeOffset(shipped);

  /** Ships what is pending now, in file order; answers when it all is in the stream (or closing). */
  async function ship(): Promise<void> {
    while (pending.length > 0) {
      // Consecutive lines packed into Kinesis records (aggregates), up to MAX_RECORDS_PER_CALL.
      const groups: Line[][] = [];
      let taken = 0;
      let callBytes = 0;
      while (
        taken < pending.length &&
        groups.length < MAX_RECORDS_PER_CALL &&
        (groups.length === 0 || callBytes + MAX_AGGREGATE_BYTES <= MAX_CALL_BYTES)
      ) {
        const group: Line[] = [];
        let bytes = 0;
        while (
          taken < pending.length &&
          group.length < MAX_LINES_PER_AGGREGATE &&
          (group.length === 0 || bytes + pending[taken]!.data.length <= MAX_AGGREGATE_BYTES)
        ) {
          bytes += pending[taken]!.data.length;
          group.push(pending[taken++]!);
        }
        callBytes += bytes;
        groups.push(group);
      }
      const batch = pending.slice(0, taken);
      let deliveredGroups: boolean[];
      try {
        const payloads = await Promise.all(groups.map(aggregate));
        const out = await options.kinesis.send(
          new PutRecordsCommand({
            StreamName: options.streamName,
            Records: payloads.map((Data) => ({ Data, PartitionKey: AGGREGATE_PARTITION_KEY })),
          }),
        );
        deliveredGroups = groups.map(
          (_, i) => !out.Records?.[i]?.ErrorCode && !!out.Records?.[i]?.SequenceNumber,
        );
      } catch {
        deliveredGroups = groups.map(() => false);
      }
      const delivered = groups.flatMap((group, i) => group.map(() => deliveredGroups[i]!));
      const ok = delivered.filter(Boolean).length;
      stats.delivered += ok;
      // Keep the refused ones, in order; the offset moves past the delivered prefix only.
      const prefix = delivered.indexOf(false) < 0 ? batch.length : delivered.indexOf(false);
      const refused = batch.filter((_, i) => !delivered[i]);
      pending.splice(0, batch.length, ...refused);
      if (prefix > 0 && refused.length === 0) saveOffset(batch[batch.length - 1]!.end);
      else if (prefix > 0) saveOffset(batch[prefix - 1]!.end);
      if (refused.length > 0) {
        stats.retried += refused.length;
        if (closed && ok === 0) return; // Kinesis is gone: the file keeps them for the next start
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  function flush(): Promise<void> {
    if (shipTimer) {
      clearTimeout(shipTimer);
      shipTimer = undefined;
    }
    chain = chain.then(ship, ship);
    return chain;
  }

  function emit(record: TelemetryRecord): void {
    stats.emitted++;
    const data = Buffer.from(JSON.stringify(bounded(record)), 'utf8');
    const line = Buffer.concat([data, Buffer.from('\n')]);
    try {
      // A late call (past the shutdown deadline) cannot be recorded: its start stands for it.
      if (!fdOpen) throw new Error('the telemetry write-ahead file is closed');
      writeSync(fd, line);
    } catch (error) {
      stats.dropped++;
      throw error; // the proxy refuses a call it cannot record
    }
    size += line.length;
    dirty = true;
    pending.push({ data, end: size });
    if (!shipTimer && !closed) {
      shipTimer = setTimeout(() => {
        shipTimer = undefined;
        void flush();
      }, shipDelayMs);
      shipTimer.unref();
    }
  }

  return {
    recovered,
    emit,
    flush,
    stats: () => ({ ...stats }),
    async close() {
      closed = true;
      await flush();
      clearInterval(syncTimer);
      await new Promise<void>((resolve) => fdatasync(fd, () => resolve()));
      fdOpen = false;
      closeSync(fd);
      closeSync(offsetFd);
    },
  };
}
