import { createHash } from 'node:crypto';
import { AssumeRoleCommand, type AssumeRoleCommandOutput, type STSClient } from '@aws-sdk/client-sts';
import { Hash } from '@smithy/hash-node';
import { SignatureV4 } from '@smithy/signature-v4';
import { ExpiringCache, refreshTime } from './expiring-cache.ts';
import { headerKey } from './header-hygiene.ts';
import { SignedRequestError, TargetAuthError } from './target-auth-errors.ts';
import { type UpstreamRequest, wireHeaders } from './upstream.ts';

/**
 * `awsSigV4` target credentials `{ roleArn, externalId?, service, region, sessionName? }`: every
 * request is signed with AWS Signature Version 4 (the SDK's own signer, @smithy/signature-v4) using
 * temporary credentials from STS AssumeRole, called with the proxy's own role. No AWS key is ever
 * stored: the sealed secret holds only the role to assume.
 *
 * Credentials are cached per credential (and secret digest, so an edited role never reuses old
 * credentials) until 5 minutes before they expire (a tenth of their lifetime when shorter); one
 * AssumeRole serves all concurrent requests (single flight). Sessions last one hour.
 *
 * The signature covers exactly what is sent (docs/target-auth-signing.md):
 * - the method, the path as it goes on the request line, and the query as received (its pairs,
 *   decoded; a query whose bytes are not the RFC 3986 encoding a signature covers is refused with
 *   a 400 rather than re-encoded behind the caller's back);
 * - every header that is sent — `host` and `content-length` included, as the call out sets them —
 *   except those SigV4 never signs (user-agent, authorization, hop-by-hop, `proxy-*`, `sec-*`);
 * - the body: the proxy holds the whole request body (API Gateway's and the local front's cap),
 *   so its SHA-256 is signed and sent as `x-amz-content-sha256`; never UNSIGNED-PAYLOAD.
 * Consumer copies of authorization, x-amz-date, x-amz-security-token and x-amz-content-sha256 are
 * dropped first. Answers (Bedrock's event streams included) are not touched: they stream back as
 * they come.
 */
export interface SigV4Secret {
  roleArn: string;
  externalId?: string;
  service: string;
  region: string;
  sessionName?: string;
}

interface TemporaryCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken: string;
}

/** One hour: the default and the least every role allows (MaxSessionDuration ≥ 1 h). */
const SESSION_SECONDS = 3600;
const REFRESH_MARGIN_MS = 5 * 60_000;
/** Headers the signer sets: a consumer's copy is dropped, never signed or forwarded. */
const SIGNER_HEADERS = ['authorization', 'x-amz-date', 'x-amz-security-token', 'x-amz-content-sha256'];
const sha256 = Hash.bind(null, 'sha256');

export class AssumedRoleCache {
  private readonly cache: ExpiringCache<TemporaryCredentials>;
  private readonly now: () => number;

  constructor(now: () => number = Date.now) {
    this.now = now;
    this.cache = new ExpiringCache(now);
  }

  /** AssumeRole calls made (for tests). */
  get assumes(): number {
    return this.cache.loads;
  }

  /** Temporary credentials of the credential's role, from the cache or one AssumeRole. */
  credentials(sts: STSClient, credentialId: string, secretJson: string, secret: SigV4Secret) {
    const key = `${credentialId}:${createHash('sha256').update(secretJson).digest('base64')}`;
    return this.cache.get(key, async () => {
      const started = this.now();
      let out: AssumeRoleCommandOutput;
      try {
        out = await sts.send(
          new AssumeRoleCommand({
            RoleArn: secret.roleArn,
            RoleSessionName: secret.sessionName ?? sessionNameFor(credentialId),
            ExternalId: secret.externalId,
            DurationSeconds: SESSION_SECONDS,
          }),
        );
      } catch (error) {
        // STS said no (AccessDenied, a role that does not trust us, a bad external id): the
        // credential cannot sign. Its fault, not STS's: a 502 naming the credential, not a 503.
        if ((error as { $fault?: string }).$fault === 'client')
          throw new TargetAuthError('the role of the target credential could not be assumed', {
            cause: error,
          });
        throw error;
      }
      const c = out.Credentials;
      if (!c?.AccessKeyId || !c.SecretAccessKey || !c.SessionToken || !c.Expiration)
        throw new TargetAuthError('STS answered no credentials');
      const lifetimeMs = Math.max(0, c.Expiration.getTime() - started);
      return {
        value: {
          accessKeyId: c.AccessKeyId,
          secretAccessKey: c.SecretAccessKey,
          sessionToken: c.SessionToken,
        },
        refreshAt: refreshTime(started, lifetimeMs, REFRESH_MARGIN_MS),
      };
    });
  }
}

/** `keygate-<credentialId>`, within STS's 64 characters of [\w+=,.@-]. */
export function sessionNameFor(credentialId: string): string {
  return `keygate-${credentialId.replace(/[^\w+=,.@-]/g, '-')}`.slice(0, 64);
}

/** RFC 3986 encoding, as SigV4 canonicalises query names and values. */
function rfc3986(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/**
 * The query's pairs for the signer, decoded; refused unless every byte sent is the encoding the
 * signature covers (what AWS will decode is then exactly what was signed).
 */
export function signableQuery(rawQuery: string): Record<string, string | string[]> {
  const query: Record<string, string | string[]> = {};
  if (rawQuery === '') return query;
  for (const part of rawQuery.split('&')) {
    const eq = part.indexOf('=');
    const rawName = eq >= 0 ? part.slice(0, eq) : part;
    const rawValue = eq >= 0 ? part.slice(eq + 1) : '';
    let name: string;
    let value: string;
    try {
      name = decodeURIComponent(rawName);
      value = decodeURIComponent(rawValue);
    } catch {
      throw new SignedRequestError('the query is not valid percent-encoding');
    }
    if (rawName === '' || rfc3986(name) !== rawName || rfc3986(value) !== rawValue)
      throw new SignedRequestError(
        'a signed target needs its query in RFC 3986 encoding (%20 not +, upper-case hex, nothing else escaped)',
      );
    const prev = query[name];
    query[name] = prev === undefined ? value : [...(Array.isArray(prev) ? prev : [prev]), value];
  }
  return query;
}

/** The query part of a request line's path and query. */
export function queryOf(pathAndQuery: string): string {
  const q = pathAndQuery.indexOf('?');
  return q >= 0 ? pathAndQuery.slice(q + 1) : '';
}

/**
 * The headers to send for `req`, signed: SigV4 over the method, path, query, the headers the call
 * out will put on the wire (wireHeaders) and the body's hash, with `credentials`.
 */
export async function signUpstreamRequest(
  req: UpstreamRequest,
  secret: Pick<SigV4Secret, 'service' | 'region'>,
  credentials: TemporaryCredentials,
  signingDate?: Date,
): Promise<Record<string, string>> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(wireHeaders(req)))
    if (!SIGNER_HEADERS.includes(headerKey(name))) headers[name] = String(value);
  const q = req.pathAndQuery.indexOf('?');
  const path = q >= 0 ? req.pathAndQuery.slice(0, q) : req.pathAndQuery;
  const signer = new SignatureV4({
    credentials,
    region: secret.region,
    service: secret.service,
    sha256,
    // S3 signs its path as sent; every other service double-encodes it (SigV4's rule).
    uriEscapePath: secret.service !== 's3',
    applyChecksum: true,
  });
  const signed = await signer.sign(
    {
      method: req.method,
      protocol: req.url.protocol,
      hostname: req.url.hostname,
      path,
      query: signableQuery(queryOf(req.pathAndQuery)),
      headers,
      body: req.body ?? new Uint8Array(0),
    },
    signingDate ? { signingDate } : undefined,
  );
  return signed.headers as Record<string, string>;
}
