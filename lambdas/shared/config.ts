// zod's tree-shakable build: this module is in every function's bundle, the proxy's included,
// which otherwise needs no zod; the full build would add ~440 KiB to its cold start.
import * as z from 'zod/mini';
import { parseTargetAllowlist } from '../net/target-allowlist.ts';
// The mini build carries no messages; English ones name what is wrong ("Too small: expected …").
import './zod-messages.ts';

/**
 * Settings are read once, at init, and checked: a missing or malformed value fails the cold start,
 * not the hundredth request. The same shape is built by the local mode and the tests.
 */
const nonEmpty = (min = 1) => z.string().check(z.minLength(min));
const cellSchema = z.object({
  tableName: nonEmpty(3),
  kmsKeyId: nonEmpty(),
  streamName: z.optional(nonEmpty()),
});
export type CellConfig = z.infer<typeof cellSchema> & { region: string };

export interface Config {
  /** Region of the home cell: users, tokens and clients live in its table. */
  homeRegion: string;
  homeTableName: string;
  /** One self-contained cell per served region (table, KMS key, telemetry stream). */
  cells: Record<string, CellConfig>;
  /**
   * `host:port` entries that may be targets although private, and over plain http (local use); a
   * bare `host` allows its default ports only (443 for https, 80 for http). Canonical strings from
   * `parseTargetAllowlist`.
   */
  targetAllowlist: string[];
  /**
   * Ports keygate itself listens on (local mode: Core API, proxy, embedded DynamoDB, Kinesis, KMS).
   * Never targets, on any host, whatever the allowlist says. Absent in AWS.
   */
  ownPorts?: number[];
  requestLogRetentionDays: number;
  /** Largest Core API request body accepted, in bytes. */
  maxBodyBytes: number;
  /**
   * How the proxy ships telemetry: `kinesis` (PutRecords, batched off the answer path; long-lived
   * processes such as local mode) or `log` (one log line per record, forwarded to Kinesis by a
   * CloudWatch Logs subscription; Lambda).
   */
  telemetrySink: 'kinesis' | 'log';
  /**
   * The domain under which `{proxyId or alias}.{domain}` routes to a proxy (data-plane/routing.ts):
   * a wildcard custom domain in AWS (`KEYGATE_PROXY_DOMAIN`); absent: `localhost`.
   */
  proxyDomain?: string;
  /**
   * Where the proxy calls STS AssumeRole for `awsSigV4` target credentials (`KEYGATE_STS_ENDPOINT`):
   * absent in AWS (the SDK's regional endpoint); a stand-in's URL locally.
   */
  stsEndpoint?: string;
}

const envSchema = z.object({
  AWS_REGION: nonEmpty(),
  KEYGATE_TABLE_NAME: nonEmpty(3),
  KEYGATE_CELLS: z.pipe(
    z.pipe(
      z.string(),
      z.transform((raw, ctx) => {
        try {
          return JSON.parse(raw) as unknown;
        } catch {
          ctx.issues.push({ code: 'custom', message: 'KEYGATE_CELLS must be JSON', input: raw });
          return z.NEVER;
        }
      }),
    ),
    z.record(nonEmpty(), cellSchema),
  ),
  KEYGATE_TARGET_ALLOWLIST: z.optional(
    z.pipe(
      z.string(),
      z.transform((raw, ctx) => {
        try {
          return parseTargetAllowlist(raw);
        } catch (error) {
          ctx.issues.push({ code: 'custom', message: (error as Error).message, input: raw });
          return z.NEVER;
        }
      }),
    ),
  ),
  KEYGATE_REQUEST_LOG_RETENTION_DAYS: z._default(
    z.coerce.number().check(z.int(), z.minimum(1), z.maximum(3650)),
    90,
  ),
  KEYGATE_TELEMETRY_SINK: z._default(z.enum(['kinesis', 'log']), 'kinesis'),
  KEYGATE_PROXY_DOMAIN: z.optional(
    z.string().check(z.regex(/^[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?$/, 'a lower-case DNS name')),
  ),
  KEYGATE_STS_ENDPOINT: z.optional(z.url({ protocol: /^https?$/ })),
});

/** Splits a comma-separated host list, lower-cased, blanks dropped. */
export function parseHostList(raw: string | undefined): string[] {
  return (raw ?? '')
    .split(',')
    .map((h) => h.trim().toLowerCase())
    .filter((h) => h.length > 0);
}

/** Builds the config from environment variables, throwing a readable error when one is wrong. */
export function configFromEnv(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    throw new Error(`keygate configuration is invalid: ${problems}`);
  }
  const e = parsed.data;
  const cells = Object.fromEntries(
    Object.entries(e.KEYGATE_CELLS).map(([region, cell]) => [region, { ...cell, region }]),
  );
  return {
    homeRegion: e.AWS_REGION,
    homeTableName: e.KEYGATE_TABLE_NAME,
    cells,
    targetAllowlist: e.KEYGATE_TARGET_ALLOWLIST ?? [],
    requestLogRetentionDays: e.KEYGATE_REQUEST_LOG_RETENTION_DAYS,
    maxBodyBytes: 256 * 1024,
    telemetrySink: e.KEYGATE_TELEMETRY_SINK,
    ...(e.KEYGATE_PROXY_DOMAIN ? { proxyDomain: e.KEYGATE_PROXY_DOMAIN } : {}),
    ...(e.KEYGATE_STS_ENDPOINT ? { stsEndpoint: e.KEYGATE_STS_ENDPOINT } : {}),
  };
}
