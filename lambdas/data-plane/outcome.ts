import type { ProxyDecision } from '../telemetry/record.ts';

/**
 * What happened to one proxied request: produced once on every exit path of the proxy handler
 * (granted, denied, 401, 403, 429, 400, 413, 5xx) and handed to the factory's `onOutcome` hook,
 * which turns it into a masked telemetry record. It never holds a secret: no presented key, no
 * injected credential, no Authorization value, no body — only ids, names, sizes and timings.
 */
export interface ProxyOutcome {
  /** Time-ordered id, also answered in the `keygate-request-id` header. */
  requestId: string;
  /** ISO 8601 UTC, when the gateway received the request. */
  processedAt: string;
  /** The proxy id from the route (may name no proxy when the answer is 401). */
  proxyId: string;
  /** Known only once a snapshot was read and the consumer authenticated. */
  clientId?: string;
  proxyCredentialId?: string;
  targetCredentialId?: string;
  targetId?: string;
  method: string;
  /** Canonical target path when the request had one; the raw target path when it was refused. */
  path: string;
  /** Raw query as received (the telemetry builder masks secret-looking values). */
  query: string;
  /** Consumer request headers after hygiene (never Authorization); values are for masking downstream. */
  headers: Record<string, string>;
  status: number;
  /** The keygate-proxy-code answered, e.g. proxy-access-granted. */
  proxyCode: string;
  decision: ProxyDecision;
  /** The deciding rule; absent when the defaults decided or rules were not reached. */
  rule?: { ruleId: string; scope: string; effect: string; priority: number };
  durations: {
    /** Whole handler time minus the upstream call. */
    gatewayMs: number;
    upstreamMs?: number;
    /** The store round trip (snapshot read ∥ counters). */
    storeMs?: number;
    /** Rule evaluation. */
    rulesMs?: number;
    /** Opening the target secret (AES-GCM; a KMS Decrypt only when the data key is not cached). */
    cryptoMs?: number;
  };
  bytes: { in: number; out: number };
  sourceIp?: string;
  userAgent?: string;
}

export type OutcomeHook = (outcome: ProxyOutcome) => void;
