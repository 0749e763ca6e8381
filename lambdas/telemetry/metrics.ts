import type { TelemetryRecord } from './record.ts';

/**
 * keygate's own CloudWatch metrics: namespace `keygate`, dimension `service=keygate`. The CDK
 * dashboard and alarms (lib/observability.ts) read exactly these names.
 */
export const PRODUCT_METRICS = {
  namespace: 'keygate',
  dimensions: { service: 'keygate' },
  allowed: 'ProxyRequestsAllowed',
  denied: 'ProxyRequestsDenied',
  rateLimited: 'ProxyRequestsRateLimited',
  unauthenticated: 'ProxyRequestsUnauthenticated',
  kmsErrors: 'KmsErrors',
  storeErrors: 'StoreErrors',
  telemetryUndelivered: 'TelemetryRecordsUndelivered',
  telemetrySkipped: 'TelemetryRecordsSkipped',
  anomalyFlags: 'AnomalyFlags',
  /** A source or proxy used up its budget of failed authentications (data plane, once per window). */
  authFailureBursts: 'ProxyAuthFailureBursts',
  /** A sealed secret failed its integrity check (moved, rolled back or tampered with): never a KMS outage. */
  integrityFailures: 'CredentialIntegrityFailures',
  /** A call refused by an exhausted `block` meter (data plane, logged once per meter and minute per instance). */
  meterExhausted: 'ProxyMeterExhausted',
  /** A meter's window went past its limit (a `flag` meter, or a block meter's overshoot): once per meter and minute. */
  meterOverLimit: 'ProxyMeterOverLimit',
} as const;

/** The per-request metrics one proxied request counts toward (each a count of 1). */
export function requestMetrics(record: TelemetryRecord): string[] {
  const names: string[] = [];
  if (record.decision === 'allowed') names.push(PRODUCT_METRICS.allowed);
  else if (record.decision === 'denied') names.push(PRODUCT_METRICS.denied);
  else if (record.decision === 'rate_limited') names.push(PRODUCT_METRICS.rateLimited);
  else if (record.decision === 'unauthenticated') names.push(PRODUCT_METRICS.unauthenticated);
  if (record.failedDependency === 'kms') names.push(PRODUCT_METRICS.kmsErrors);
  if (record.failedDependency === 'store') names.push(PRODUCT_METRICS.storeErrors);
  if (record.integrityFailure) names.push(PRODUCT_METRICS.integrityFailures);
  return names;
}

/**
 * CloudWatch embedded metric format fields for a log line: CloudWatch Logs extracts the metrics from
 * the line itself, so counting costs the request nothing beyond the line it already writes.
 */
export function embeddedMetricFields(names: string[], timestamp: number): Record<string, unknown> {
  if (names.length === 0) return {};
  return {
    _aws: {
      Timestamp: timestamp,
      CloudWatchMetrics: [
        {
          Namespace: PRODUCT_METRICS.namespace,
          Dimensions: [Object.keys(PRODUCT_METRICS.dimensions)],
          Metrics: names.map((Name) => ({ Name, Unit: 'Count' })),
        },
      ],
    },
    ...PRODUCT_METRICS.dimensions,
    ...Object.fromEntries(names.map((n) => [n, 1])),
  };
}

/**
 * The same fields for a line written through the Powertools logger (shared/logger.ts): its own
 * `service` key — the logger's serviceName, `keygate`, the dimension's value — already carries the
 * dimension, and a `service` passed in is dropped with a "reserved key" warning.
 */
export function loggerMetricFields(names: string[], timestamp: number): Record<string, unknown> {
  const { service: _service, ...fields } = embeddedMetricFields(names, timestamp);
  return fields;
}
