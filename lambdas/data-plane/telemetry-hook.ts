import type { TelemetryEmitter } from '../telemetry/emitter.ts';
import { maskHeaders, maskPath, maskQuery } from '../telemetry/masking.ts';
import type { TelemetryRecord } from '../telemetry/record.ts';
import type { OutcomeHook, ProxyOutcome } from './outcome.ts';
import type { ProxyHandlerOptions } from './proxy-api.ts';

/**
 * Turns the proxy's per-request outcome into the masked telemetry record (query values, header
 * values and key-looking path segments that may carry secrets are masked here, before anything
 * leaves the handler; the emitter and the aggregator mask again) and hands it to the sink. The
 * store/rules/crypto split of the gateway time stays in the process: it is a benchmark figure.
 */
export function outcomeToRecord(o: ProxyOutcome): TelemetryRecord {
  const { storeMs: _store, rulesMs: _rules, cryptoMs: _crypto, ...durations } = o.durations;
  return {
    ...o,
    path: maskPath(o.path),
    query: maskQuery(o.query),
    headers: maskHeaders(o.headers),
    durations,
  };
}

/**
 * The start record of a call about to go out (docs/audit-trail.md): ids, method, canonical path,
 * deciding rule, the gateway time so far — status 0, nothing of an answer, no headers.
 */
export function startToRecord(o: ProxyOutcome): TelemetryRecord {
  const { headers: _headers, ...record } = outcomeToRecord(o);
  return {
    ...record,
    status: 0,
    proxyCode: 'proxy-call-started',
    decision: 'allowed',
    durations: { gatewayMs: o.durations.gatewayMs },
    bytes: { in: o.bytes.in, out: 0 },
    phase: 'start',
  };
}

/** The proxy's `onOutcome` hook for a telemetry sink (Kinesis emitter or log sink). */
export function telemetryHook(sink: Pick<TelemetryEmitter, 'emit'>): OutcomeHook {
  return (outcome) => {
    // A request that names no proxy (a stray hit on the proxy's root, a scanner) belongs to no
    // client's log and reached no vendor: answered 404, not a record — and not a pipeline error.
    if (outcome.proxyId) sink.emit(outcomeToRecord(outcome));
  };
}

/**
 * Both telemetry hooks of the proxy for one sink: the start record before the call out and the
 * completion on every exit. A sink that promises durability throws from `emit` when it cannot keep
 * the promise; the proxy then does not make the call.
 */
export function telemetryHooks(
  sink: Pick<TelemetryEmitter, 'emit'>,
): Pick<ProxyHandlerOptions, 'onOutcome' | 'onCallOut'> {
  return { onOutcome: telemetryHook(sink), onCallOut: (o) => sink.emit(startToRecord(o)) };
}
