import type { TelemetryEmitter } from '../telemetry/emitter.ts';
import { maskHeaders, maskPath, maskQuery } from '../telemetry/masking.ts';
import type { TelemetryRecord } from '../telemetry/record.ts';
import type { OutcomeHook, ProxyOutcome } from './outcome.ts';

/**
 * Turns the proxy's per-request outcome into the masked telemetry record (query values, header
 * values and key-looking path segments that may carry secrets are masked here, before anything
 * leaves the handler; the emitter and the aggregator mask again) and hands it to the sink. The
 * store/rules/crypto split of the gateway time stays in the process: it is a benchmark figure.
 */
export function outcomeToRecord(o: ProxyOutcome): TelemetryRecord {
  return {
    requestId: o.requestId,
    processedAt: o.processedAt,
    clientId: o.clientId,
    proxyId: o.proxyId,
    proxyCredentialId: o.proxyCredentialId,
    targetCredentialId: o.targetCredentialId,
    targetId: o.targetId,
    method: o.method,
    path: maskPath(o.path),
    query: maskQuery(o.query),
    headers: maskHeaders(o.headers),
    status: o.status,
    proxyCode: o.proxyCode,
    decision: o.decision,
    rule: o.rule,
    durations: { gatewayMs: o.durations.gatewayMs, upstreamMs: o.durations.upstreamMs },
    bytes: o.bytes,
    sourceIp: o.sourceIp,
    userAgent: o.userAgent,
  };
}

/** The proxy's `onOutcome` hook for a telemetry sink (Kinesis emitter or log sink). */
export function telemetryHook(sink: Pick<TelemetryEmitter, 'emit'>): OutcomeHook {
  return (outcome) => sink.emit(outcomeToRecord(outcome));
}
