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
  const { storeMs: _store, rulesMs: _rules, cryptoMs: _crypto, ...durations } = o.durations;
  return {
    ...o,
    path: maskPath(o.path),
    query: maskQuery(o.query),
    headers: maskHeaders(o.headers),
    durations,
  };
}

/** The proxy's `onOutcome` hook for a telemetry sink (Kinesis emitter or log sink). */
export function telemetryHook(sink: Pick<TelemetryEmitter, 'emit'>): OutcomeHook {
  return (outcome) => sink.emit(outcomeToRecord(outcome));
}
