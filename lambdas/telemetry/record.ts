/**
 * One telemetry record per proxied request, allowed or not: what the proxy emits into Kinesis and
 * the aggregator turns into a request-log item and telemetry rollups. Header and query values that
 * may carry secrets are already masked when the record is built; bodies are never recorded.
 */
export type ProxyDecision =
  | 'allowed'
  | 'denied'
  | 'unauthenticated'
  | 'rate_limited'
  | 'inactive'
  | 'bad_request'
  | 'error'
  /** A call that reached for the vendor and never completed (crash, kill, timeout): see docs/audit-trail.md. */
  | 'unknown';

/**
 * Which half of a call a record is. A call that goes out to the vendor has two: a `start` record,
 * durable before the first byte leaves (ids, method, canonical path, deciding rule; status 0), and a
 * completion (no `phase`) with the answer. The aggregator joins them on requestId; a start whose
 * completion never comes becomes an `unknown` completion after a grace period. Calls refused by
 * the gateway (401, 403, 429, …) never go out and have only the completion.
 */
export type RecordPhase = 'start';

/** How a forwarded call ended (see lambdas/data-plane/stream-answer.ts). */
export type StreamEnd = 'complete' | 'client_abort' | 'vendor_abort' | 'deadline';

/** One meter's part in a call (docs/meters.md): the value counted, and whether it went past the limit. */
export interface MeterRecord {
  meterId: string;
  value: number;
  /** This call's value went past the meter's limit (a flag meter's flag; a block meter's overshoot). */
  overLimit?: boolean;
  /** The call was refused because this meter was exhausted. */
  blocked?: boolean;
  /** response_value: why no value was read (value 0). */
  unread?: 'too_large' | 'not_json' | 'no_value' | 'encoded';
}

export interface TelemetryRecord {
  /** Time-ordered id (ULID-like): its first 10 characters encode processedAt in ms. */
  requestId: string;
  /** ISO 8601 UTC, when the gateway received the request. */
  processedAt: string;
  clientId?: string;
  proxyId: string;
  proxyCredentialId?: string;
  targetCredentialId?: string;
  targetId?: string;
  method: string;
  /** Canonical path (what the rules saw and what was sent upstream). */
  path: string;
  /** Query string with secret-looking values masked. */
  query: string;
  /** Selected request headers, masked (`Bearer ****`). */
  headers?: Record<string, string>;
  status: number;
  /** keygate-proxy-code answered, e.g. proxy-access-granted. */
  proxyCode: string;
  decision: ProxyDecision;
  /** The deciding rule (absent when the defaults decided or no rule was evaluated). */
  rule?: { ruleId: string; scope: string; effect: string; priority: number };
  /**
   * gatewayMs: keygate's own time; upstreamMs: the call out, to the vendor's last byte; ttfbMs: from
   * the call out to the vendor's status line and headers (forwarded calls only).
   */
  durations: { gatewayMs: number; upstreamMs?: number; ttfbMs?: number };
  /** Forwarded calls: how the answer's stream ended. */
  end?: StreamEnd;
  bytes: { in: number; out: number };
  sourceIp?: string;
  userAgent?: string;
  /** On a 503: which dependency failed (the consumer is told only "unavailable"). */
  failedDependency?: 'store' | 'kms';
  /** `start` on the record written before the call out; absent on a completion. */
  phase?: RecordPhase;
  /** A sealed credential did not open under its context (moved, rolled back, tampered with). */
  integrityFailure?: boolean;
  /** The meters that applied to the call (docs/meters.md). */
  meters?: MeterRecord[];
}
