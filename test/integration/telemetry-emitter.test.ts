import { type KinesisClient, PutRecordsCommand } from '@aws-sdk/client-kinesis';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { createTelemetryEmitter } from '../../lambdas/telemetry/emitter.ts';
import type { TelemetryRecord } from '../../lambdas/telemetry/record.ts';
import { type LocalStack, startLocalStack } from '../../local/stack.ts';
import { eventually } from '../helpers/poll.ts';
import { makeRecord, streamRecords } from '../helpers/telemetry.ts';

let stack: LocalStack;
let kinesis: KinesisClient;
const STREAM = 'keygate-telemetry';

beforeAll(async () => {
  stack = await startLocalStack({ telemetryPoller: false });
  kinesis = Object.values(stack.deps.cells)[0]!.kinesis;
});
afterAll(async () => {
  await stack.close();
});

const readStream = () => streamRecords(kinesis, STREAM);

function capturingLogger() {
  const lines: string[] = [];
  return {
    lines,
    warn: (message: string, extra?: Record<string, unknown>) =>
      lines.push(JSON.stringify({ message, ...extra })),
  };
}

describe('telemetry emitter', () => {
  it('delivers every emitted record to Kinesis in batches of at most 500', async () => {
    const emitter = createTelemetryEmitter({ kinesis, streamName: STREAM });
    const proxyId = `proxy-emit-${Date.now()}`;
    const sent = Array.from({ length: 1203 }, () => makeRecord({ proxyId }));
    for (const r of sent) emitter.emit(r);
    await emitter.flush();
    expect(emitter.stats()).toEqual({ emitted: 1203, delivered: 1203, retried: 0, dropped: 0 });
    const got = (await readStream()).filter((r) => r.proxyId === proxyId);
    expect(new Set(got.map((r) => r.requestId))).toEqual(new Set(sent.map((r) => r.requestId)));
  });

  it('never blocks and never throws, even when Kinesis hangs or the record cannot be serialised', async () => {
    const hanging = { send: () => new Promise(() => undefined) } as unknown as KinesisClient;
    const emitter = createTelemetryEmitter({
      kinesis: hanging,
      streamName: STREAM,
      logger: capturingLogger(),
    });
    // emit is synchronous: it returns nothing to wait for, so a hanging Kinesis cannot hold the
    // caller (the loop finishing at all, with Kinesis never answering, is the proof).
    for (let i = 0; i < 1000; i++) expect(emitter.emit(makeRecord())).toBeUndefined();
    expect(emitter.stats().emitted).toBe(1000);
    const circular = makeRecord() as TelemetryRecord & { self?: unknown };
    circular.self = circular;
    expect(() => emitter.emit(circular)).not.toThrow();
    expect(emitter.stats()).toMatchObject({ emitted: 1001, dropped: 1 });
  });

  it('retries refused records and whole failed calls, then delivers', async () => {
    let calls = 0;
    const flaky = {
      send: async (cmd: PutRecordsCommand) => {
        calls++;
        if (calls === 1) throw Object.assign(new Error('connect ECONNREFUSED'), { name: 'TimeoutError' });
        if (calls === 2) {
          // Kinesis throttles part of a batch: the first record is refused.
          const out = await kinesis.send(
            new PutRecordsCommand({ ...cmd.input, Records: cmd.input.Records!.slice(1) }),
          );
          return {
            FailedRecordCount: 1,
            Records: [
              { ErrorCode: 'ProvisionedThroughputExceededException', ErrorMessage: 'slow down' },
              ...(out.Records ?? []),
            ],
          };
        }
        return kinesis.send(cmd);
      },
    } as unknown as KinesisClient;
    const emitter = createTelemetryEmitter({ kinesis: flaky, streamName: STREAM, retryBaseMs: 1 });
    const proxyId = `proxy-flaky-${Date.now()}`;
    const sent = Array.from({ length: 3 }, () => makeRecord({ proxyId }));
    for (const r of sent) emitter.emit(r);
    await emitter.flush();
    expect(emitter.stats()).toEqual({ emitted: 3, delivered: 3, retried: 4, dropped: 0 });
    const got = (await readStream()).filter((r) => r.proxyId === proxyId);
    expect(got.map((r) => r.requestId).sort()).toEqual(sent.map((r) => r.requestId).sort());
  });

  it('counts and reports what it cannot deliver, without any secret or record content in the log', async () => {
    const secret = 'kg_live_SECRETSECRETSECRETSECRET123456';
    const down = {
      send: async () => {
        throw Object.assign(new Error(`failed to send ${secret}`), { name: 'ServiceUnavailableException' });
      },
    } as unknown as KinesisClient;
    const log = capturingLogger();
    const emitter = createTelemetryEmitter({
      kinesis: down,
      streamName: STREAM,
      retryBaseMs: 1,
      maxAttempts: 3,
      logger: log,
    });
    for (let i = 0; i < 5; i++) emitter.emit(makeRecord({ path: `/v1/${secret}`, query: `q=${secret}` }));
    await emitter.flush();
    expect(emitter.stats()).toEqual({ emitted: 5, delivered: 0, retried: 10, dropped: 5 });
    expect(log.lines).toHaveLength(1);
    expect(JSON.parse(log.lines[0]!)).toMatchObject({
      message: 'telemetry records dropped',
      count: 5,
      errorCodes: ['ServiceUnavailableException'],
      droppedTotal: 5,
    });
    expect(log.lines.join('\n')).not.toContain(secret);
  });

  it('drops (and counts) beyond its buffer rather than growing without bound', async () => {
    const log = capturingLogger();
    const emitter = createTelemetryEmitter({ kinesis, streamName: STREAM, maxBuffered: 10, logger: log });
    for (let i = 0; i < 15; i++) emitter.emit(makeRecord());
    await emitter.flush();
    expect(emitter.stats()).toEqual({ emitted: 15, delivered: 10, retried: 0, dropped: 5 });
  });

  it('starts the send on its own with autoFlushMs, so a later flush finds it done', async () => {
    const emitter = createTelemetryEmitter({ kinesis, streamName: STREAM, autoFlushMs: 0 });
    emitter.emit(makeRecord());
    await eventually(
      () => emitter.stats().delivered,
      (delivered) => delivered > 0,
    );
    expect(emitter.stats().delivered).toBe(1);
    await emitter.flush();
    expect(emitter.stats()).toMatchObject({ emitted: 1, delivered: 1 });
  });
});
