import { bounded, type TelemetryEmitter, type TelemetryStats } from './emitter.ts';
import { embeddedMetricFields, requestMetrics } from './metrics.ts';
import type { TelemetryRecord } from './record.ts';

/**
 * The proxy's telemetry route in Lambda: each record is written as one JSON line to the function's
 * log stream, and a CloudWatch Logs subscription filter (see lib/telemetry-pipeline.ts) forwards
 * those lines into the cell's Kinesis stream, where the aggregator reads them like any record.
 *
 * Why not PutRecords from the function: with a buffered API Gateway answer there is no "after the
 * response" in Lambda — a flush awaited before returning adds a Kinesis round trip to every
 * answer, and one left running is frozen with the sandbox and lost when it is recycled. A log line
 * costs a write to stdout, which the Lambda service ships after the invocation, durably.
 * Long-lived processes (local mode) use the Kinesis emitter (./emitter.ts) instead.
 * The same line carries the request's product metrics in CloudWatch's embedded metric format
 * (allowed / denied / rate-limited / unauthenticated, KMS or store errors), so the dashboard and
 * alarms of lib/observability.ts count requests at no extra cost.
 */
export const TELEMETRY_LOG_MARKER = 'keygateTelemetry';

export function createLogTelemetrySink(
  write: (line: string) => void = (line) => process.stdout.write(line),
): TelemetryEmitter {
  const stats: TelemetryStats = { emitted: 0, delivered: 0, retried: 0, dropped: 0 };
  return {
    emit(record: TelemetryRecord) {
      stats.emitted++;
      try {
        const safe = bounded(record);
        // A call counts in the metrics by its completion; its start record carries none.
        const metrics =
          safe.phase === 'start'
            ? {}
            : embeddedMetricFields(requestMetrics(safe), Date.parse(safe.processedAt) || Date.now());
        write(`${JSON.stringify({ ...metrics, [TELEMETRY_LOG_MARKER]: 1, record: safe })}\n`);
        stats.delivered++;
      } catch {
        stats.dropped++;
      }
    },
    flush: async () => undefined,
    stats: () => ({ ...stats }),
  };
}

/**
 * Extracts telemetry records from a CloudWatch Logs subscription payload (already gunzipped and
 * parsed). Control messages and lines that are not telemetry yield nothing. A line may arrive as
 * written, or wrapped by Lambda's JSON log format with the original text in `message`.
 */
export function recordsFromLogPayload(payload: unknown): unknown[] {
  const p = payload as { messageType?: string; logEvents?: Array<{ message?: unknown }> };
  if (p?.messageType !== 'DATA_MESSAGE' || !Array.isArray(p.logEvents)) return [];
  const out: unknown[] = [];
  for (const event of p.logEvents) {
    const found = telemetryIn(event?.message, 2);
    if (found !== undefined) out.push(found);
  }
  return out;
}

function telemetryIn(value: unknown, depth: number): unknown {
  let v = value;
  if (typeof v === 'string') {
    const start = v.indexOf('{');
    if (start < 0 || !v.includes(TELEMETRY_LOG_MARKER)) return undefined;
    try {
      v = JSON.parse(v.slice(start));
    } catch {
      return undefined;
    }
  }
  if (v === null || typeof v !== 'object') return undefined;
  const o = v as Record<string, unknown>;
  if (o[TELEMETRY_LOG_MARKER] === 1 && o.record !== undefined) return o.record;
  return depth > 0 ? telemetryIn(o.message, depth - 1) : undefined;
}
