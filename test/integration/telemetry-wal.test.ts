import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { KinesisClient } from '@aws-sdk/client-kinesis';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { bounded } from '../../lambdas/telemetry/emitter.ts';
import { type LocalStack, startLocalStack } from '../../local/stack.ts';
import { openTelemetryWal } from '../../local/telemetry-wal.ts';
import { makeRecord, streamRecords } from '../helpers/telemetry.ts';

/**
 * The write-ahead file's shipped offset (overwritten in place after every PutRecords): a restart
 * from the files a crash leaves behind ships what was not shipped, never skips a record; a clean
 * close leaves nothing to ship again; a truncation puts the offset back to 0 at once.
 */
let stack: LocalStack;
let kinesis: KinesisClient;
const STREAM = 'keygate-telemetry';
const dirs: string[] = [];

beforeAll(async () => {
  stack = await startLocalStack({ telemetryPoller: false });
  kinesis = Object.values(stack.deps.cells)[0]!.kinesis;
});
afterAll(async () => {
  await stack.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'keygate-wal-test-'));
  dirs.push(dir);
  return dir;
}

/** What a kill -9 leaves: the files as they are now (the page cache is what survives). */
function crashCopy(dir: string): string {
  const copy = tempDir();
  cpSync(dir, copy, { recursive: true });
  return copy;
}

const offsetOf = (dir: string) => Number(readFileSync(join(dir, 'telemetry.wal.shipped'), 'utf8'));

/** requestId → how many times it is in the stream (the write-ahead file packs lines into records). */
async function streamCounts(): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const { requestId } of await streamRecords(kinesis, STREAM))
    counts.set(requestId, (counts.get(requestId) ?? 0) + 1);
  return counts;
}

describe('telemetry write-ahead file: the shipped offset', () => {
  it('is on disk after every shipment: a crash re-ships only what was not shipped', async () => {
    const dir = tempDir();
    const wal = openTelemetryWal({ dir, kinesis, streamName: STREAM, shipDelayMs: 60_000 });
    const proxyId = `proxy-wal-${Date.now()}`;
    const shipped = Array.from({ length: 12 }, () => makeRecord({ proxyId }));
    for (const r of shipped.slice(0, 5)) wal.emit(r);
    await wal.flush();
    for (const r of shipped.slice(5)) wal.emit(r);
    await wal.flush();
    expect(wal.stats().delivered).toBe(12);
    expect(offsetOf(dir)).toBe(readFileSync(join(dir, 'telemetry.wal')).length);
    const unshipped = Array.from({ length: 3 }, () => makeRecord({ proxyId }));
    for (const r of unshipped) wal.emit(r);

    // A crash now: the restart ships the three, and nothing that was in the stream already.
    const crashed = crashCopy(dir);
    const restarted = openTelemetryWal({ dir: crashed, kinesis, streamName: STREAM });
    expect(restarted.recovered).toBe(unshipped.length);
    await restarted.close();
    const counts = await streamCounts();
    for (const r of [...shipped, ...unshipped]) expect(counts.get(r.requestId)).toBe(1);

    // A clean close: nothing to ship again.
    await wal.close();
    const reopened = openTelemetryWal({ dir, kinesis, streamName: STREAM });
    expect(reopened.recovered).toBe(0);
    await reopened.close();
  });

  it('reads the unpadded offset an older version wrote', async () => {
    const dir = tempDir();
    const proxyId = `proxy-wal-old-${Date.now()}`;
    const wal = openTelemetryWal({ dir, kinesis, streamName: STREAM, shipDelayMs: 60_000 });
    const records = [makeRecord({ proxyId }), makeRecord({ proxyId })];
    for (const r of records) wal.emit(r);
    const old = crashCopy(dir);
    await wal.close();
    const lineBytes = readFileSync(join(old, 'telemetry.wal')).indexOf(10) + 1;
    writeFileSync(join(old, 'telemetry.wal.shipped'), String(lineBytes));
    const restarted = openTelemetryWal({ dir: old, kinesis, streamName: STREAM });
    expect(restarted.recovered).toBe(1);
    await restarted.close();
    expect(offsetOf(old)).toBe(2 * lineBytes);
  });

  it('is on disk at once when the file is truncated: records written after it are never skipped', async () => {
    const dir = tempDir();
    const proxyId = `proxy-wal-trunc-${Date.now()}`;
    const lineBytes = JSON.stringify(bounded(makeRecord({ proxyId }))).length + 1;
    const wal = openTelemetryWal({
      dir,
      kinesis,
      streamName: STREAM,
      shipDelayMs: 60_000,
      maxBytes: 2 * lineBytes + 10,
    });
    wal.emit(makeRecord({ proxyId }));
    await wal.flush(); // under maxBytes: no truncation
    expect(offsetOf(dir)).toBe(lineBytes);
    for (let i = 0; i < 2; i++) wal.emit(makeRecord({ proxyId }));
    await wal.flush(); // over maxBytes and all shipped: truncated, the offset back to 0 on disk
    expect(readFileSync(join(dir, 'telemetry.wal')).length).toBe(0);
    expect(offsetOf(dir)).toBe(0);
    const after = Array.from({ length: 4 }, () => makeRecord({ proxyId }));
    for (const r of after) wal.emit(r);
    const crashed = crashCopy(dir);
    const restarted = openTelemetryWal({ dir: crashed, kinesis, streamName: STREAM });
    expect(restarted.recovered).toBe(after.length);
    await restarted.close();
    const counts = await streamCounts();
    for (const r of after) expect(counts.get(r.requestId)).toBe(1);
    await wal.close();
  });
});
