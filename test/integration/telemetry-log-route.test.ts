import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { KinesisStreamEvent } from 'aws-lambda';
import { keys } from '../../lambdas/storage/keys.ts';
import { getItem, queryPrefix } from '../../lambdas/storage/table.ts';
import { createAggregatorHandler } from '../../lambdas/telemetry/aggregator.ts';
import { createLogTelemetrySink, recordsFromLogPayload } from '../../lambdas/telemetry/log-sink.ts';
import { bucketStart } from '../../lambdas/telemetry/rollup.ts';
import { type LocalStack, startLocalStack } from '../../local/stack.ts';
import { makeRecord, sequenceNumber } from '../helpers/telemetry.ts';

/**
 * The Lambda proxy's telemetry route: records as log lines, forwarded by a CloudWatch Logs
 * subscription filter into Kinesis as gzipped DATA_MESSAGE payloads holding several lines each.
 */
function cloudWatchPayload(lines: string[], wrap: (line: string) => string = (l) => l): Buffer {
  return gzipSync(
    JSON.stringify({
      messageType: 'DATA_MESSAGE',
      owner: '123456789012',
      logGroup: '/aws/lambda/keygate-proxy',
      logStream: '2026/11/28/[$LATEST]abc',
      subscriptionFilters: ['telemetry'],
      logEvents: lines.map((line, i) => ({
        id: String(i),
        timestamp: Date.now(),
        message: wrap(line.trimEnd()),
      })),
    }),
  );
}

function eventOf(payloads: Buffer[], firstSeq: number): KinesisStreamEvent {
  return {
    Records: payloads.map((data, i) => ({
      eventSource: 'aws:kinesis',
      eventVersion: '1.0',
      eventID: `shardId-000000000000:${sequenceNumber(firstSeq + i)}`,
      eventName: 'aws:kinesis:record',
      invokeIdentityArn: 'arn:aws:iam::123456789012:role/agg',
      awsRegion: 'us-east-1',
      eventSourceARN: 'arn:aws:kinesis:us-east-1:123456789012:stream/keygate-telemetry-us-east-1',
      kinesis: {
        kinesisSchemaVersion: '1.0',
        partitionKey: 'p',
        sequenceNumber: sequenceNumber(firstSeq + i),
        data: data.toString('base64'),
        approximateArrivalTimestamp: Date.now() / 1000,
      },
    })),
  };
}

describe('telemetry log route (Lambda proxy → CloudWatch Logs → Kinesis → aggregator)', () => {
  let stack: LocalStack;
  beforeAll(async () => {
    stack = await startLocalStack({ telemetryPoller: false });
  });
  afterAll(() => stack.close());

  it('writes masked records as marked log lines', () => {
    const lines: string[] = [];
    const sink = createLogTelemetrySink((l) => lines.push(l));
    sink.emit(makeRecord({ query: 'api_key=sk_live_abcdefghijklmnop&page=2' }));
    expect(lines).toHaveLength(1);
    expect(lines[0]).not.toContain('sk_live_abcdefghijklmnop');
    expect(JSON.parse(lines[0]!)).toMatchObject({
      keygateTelemetry: 1,
      record: { query: expect.stringContaining('page=2') },
    });
    expect(sink.stats()).toMatchObject({ emitted: 1, delivered: 1, dropped: 0 });
  });

  it('carries the request metrics in embedded metric format on the same line', () => {
    const lines: string[] = [];
    const sink = createLogTelemetrySink((l) => lines.push(l));
    sink.emit(makeRecord({ decision: 'denied', status: 403 }));
    sink.emit(makeRecord({ decision: 'error', status: 503, failedDependency: 'kms' }));
    sink.emit(makeRecord({ decision: 'error', status: 502 }));
    const [denied, kms, other] = lines.map((l) => JSON.parse(l));
    expect(denied._aws.CloudWatchMetrics).toEqual([
      {
        Namespace: 'keygate',
        Dimensions: [['service']],
        Metrics: [{ Name: 'ProxyRequestsDenied', Unit: 'Count' }],
      },
    ]);
    expect(denied).toMatchObject({ service: 'keygate', ProxyRequestsDenied: 1, keygateTelemetry: 1 });
    expect(kms).toMatchObject({ KmsErrors: 1 });
    expect(kms._aws.CloudWatchMetrics[0].Metrics).toEqual([{ Name: 'KmsErrors', Unit: 'Count' }]);
    expect(other._aws).toBeUndefined();
  });

  it('reads plain and JSON-wrapped lines and ignores control messages and other lines', () => {
    const line = JSON.stringify({ keygateTelemetry: 1, record: { requestId: 'x' } });
    const wrapped = JSON.stringify({ timestamp: 't', level: 'INFO', message: line });
    const payload = {
      messageType: 'DATA_MESSAGE',
      logEvents: [{ message: line }, { message: wrapped }, { message: 'START RequestId: 1' }],
    };
    expect(recordsFromLogPayload(payload)).toEqual([{ requestId: 'x' }, { requestId: 'x' }]);
    expect(recordsFromLogPayload({ messageType: 'CONTROL_MESSAGE', logEvents: [{ message: line }] })).toEqual(
      [],
    );
  });

  it('aggregates several records per Kinesis record exactly once, even when the batch is replayed', async () => {
    const proxyId = `proxy-log-${Date.now()}`;
    const clientId = `client-${proxyId}`;
    const at = new Date(Date.UTC(2026, 10, 28, 9, 30, 0));
    const lines: string[] = [];
    const sink = createLogTelemetrySink((l) => lines.push(l));
    for (let i = 0; i < 5; i++) sink.emit(makeRecord({ proxyId, clientId, status: i === 4 ? 403 : 200 }, at));
    // Two Kinesis records: three lines in the first, two (JSON-wrapped by Lambda) in the second.
    const event = eventOf(
      [
        cloudWatchPayload(lines.slice(0, 3)),
        cloudWatchPayload(lines.slice(3), (l) => JSON.stringify({ level: 'INFO', message: l })),
      ],
      100,
    );
    const handler = createAggregatorHandler(stack.deps);
    expect(await handler(event)).toEqual({ batchItemFailures: [] });
    expect(await handler(event)).toEqual({ batchItemFailures: [] });
    expect(await handler({ Records: [event.Records[1]!] })).toEqual({ batchItemFailures: [] });

    const cell = Object.values(stack.deps.cells)[0]!;
    const log = await queryPrefix(cell, keys.requestLogPartition(proxyId, '2026-11-28'));
    expect(log).toHaveLength(5);
    const bucket = await getItem<Record<string, unknown>>(
      cell,
      keys.telemetryBucket('PROXY', proxyId, 'hour', bucketStart(at, 'hour')),
    );
    expect(bucket).toMatchObject({ requests: 5 });
  });
});
