import type { TelemetryRecord } from '../telemetry/record.ts';

/**
 * What happened to one proxied request: produced once on every exit path of the proxy handler
 * (granted, denied, 401, 403, 429, 400, 413, 5xx) and handed to the factory's `onOutcome` hook,
 * which turns it into a masked telemetry record. It never holds a secret: no presented key, no
 * injected credential, no Authorization value, no body — only ids, names, sizes and timings.
 */
export interface ProxyOutcome extends Omit<TelemetryRecord, 'headers' | 'durations'> {
  /** The proxy id from the route (may name no proxy when the answer is 401). */
  proxyId: string;
  /** Canonical target path when the request had one; the raw target path when it was refused. */
  path: string;
  /** Raw query as received (the telemetry hook masks secret-looking values). */
  query: string;
  /** Consumer request headers after hygiene (never Authorization); values are for masking downstream. */
  headers: Record<string, string>;
  durations: TelemetryRecord['durations'] & {
    /** The store round trip (snapshot read ∥ counters). */
    storeMs?: number;
    /** Rule evaluation. */
    rulesMs?: number;
    /** Opening the target secret (AES-GCM; a KMS Decrypt only when the data key is not cached). */
    cryptoMs?: number;
  };
}

export type OutcomeHook = (outcome: ProxyOutcome) => void;
