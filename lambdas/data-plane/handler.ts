import { configFromEnv } from '../shared/config.ts';
import { createDeps } from '../shared/deps.ts';
import { createTelemetryEmitter } from '../telemetry/emitter.ts';
import { createLogTelemetrySink } from '../telemetry/log-sink.ts';
import { createProxyHandler } from './proxy-api.ts';
import { streamingProxyLambda } from './streaming-lambda.ts';
import { telemetryHooks } from './telemetry-hook.ts';

const deps = createDeps(configFromEnv());
const cell = deps.cells[deps.config.homeRegion];
if (!cell?.streamName) throw new Error('keygate proxy: the cell of this region has no telemetry stream');

/**
 * Telemetry leaves the proxy as log lines by default in Lambda (KEYGATE_TELEMETRY_SINK=log, set by
 * the CDK app with the subscription filter that forwards them to Kinesis); `kinesis` starts a
 * PutRecords as soon as a record is emitted, without awaiting it on the answer.
 */
const sink =
  deps.config.telemetrySink === 'log'
    ? createLogTelemetrySink()
    : createTelemetryEmitter({ kinesis: cell.kinesis, streamName: cell.streamName, autoFlushMs: 0 });

/**
 * Lambda entry of the regional proxy: a response-streaming function (streaming-lambda.ts). With
 * the log sink, a call's start record is a line on stdout (a pipe: written synchronously) before
 * the call out, so a timed-out or killed invocation still leaves it, and the aggregator turns it
 * into an `unknown` record (docs/audit-trail.md).
 */
export const handler = streamingProxyLambda(createProxyHandler(deps, telemetryHooks(sink)));
