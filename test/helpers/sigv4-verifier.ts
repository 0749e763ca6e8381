import { createHash, timingSafeEqual } from 'node:crypto';
import { Hash } from '@smithy/hash-node';
import { SignatureV4 } from '@smithy/signature-v4';
import type { Recorded } from './proxy-fixtures.ts';

/**
 * Checks a received request's SigV4 signature the way an AWS service does, with the AWS SDK's own
 * signer: parse Authorization, look up the secret of its access key, re-sign the request AS
 * RECEIVED (method, raw path, query, the headers it names as signed, the body's hash) and compare.
 * Answers the reason it fails, or undefined when the signature is valid.
 */
export interface KnownKey {
  secretAccessKey: string;
  sessionToken?: string;
}

const AUTH =
  /^AWS4-HMAC-SHA256 Credential=([^/,\s]+)\/(\d{8})\/([^/,\s]+)\/([^/,\s]+)\/aws4_request,\s*SignedHeaders=([a-z0-9;-]+),\s*Signature=([0-9a-f]{64})$/;

export async function sigV4Failure(
  req: Recorded,
  lookup: (accessKeyId: string) => KnownKey | undefined,
  expect: { service: string; region: string },
): Promise<string | undefined> {
  const m = AUTH.exec(String(req.headers.authorization ?? ''));
  if (!m) return 'no SigV4 Authorization header';
  const [, accessKeyId, , region, service, signedList, signature] = m as unknown as string[];
  if (region !== expect.region || service !== expect.service) return `scope ${region}/${service}`;
  const key = lookup(accessKeyId!);
  if (!key) return 'unknown access key';
  if (key.sessionToken !== undefined && req.headers['x-amz-security-token'] !== key.sessionToken)
    return 'wrong session token';
  const bodyHash = createHash('sha256').update(req.body).digest('hex');
  if (req.headers['x-amz-content-sha256'] !== bodyHash) return 'the declared body hash is not the body’s';
  const signed = signedList!.split(';');
  for (const required of ['host', 'x-amz-date', 'x-amz-content-sha256', 'x-amz-security-token'])
    if (!signed.includes(required)) return `${required} is not signed`;
  const headers: Record<string, string> = {};
  for (const name of signed) {
    const value = req.headers[name];
    if (value === undefined) return `signed header ${name} missing`;
    headers[name] = Array.isArray(value) ? value.join(',') : value;
  }
  const amzDate = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(headers['x-amz-date'] ?? '');
  if (!amzDate) return 'bad x-amz-date';
  const [, y, mo, d, h, mi, s] = amzDate.map(Number) as number[];
  const signingDate = new Date(Date.UTC(y!, mo! - 1, d!, h!, mi!, s!));
  const q = req.url.indexOf('?');
  const query: Record<string, string | string[]> = {};
  for (const [k, v] of new URLSearchParams(q >= 0 ? req.url.slice(q + 1) : '')) {
    const prev = query[k];
    query[k] = prev === undefined ? v : [...(Array.isArray(prev) ? prev : [prev]), v];
  }
  const signer = new SignatureV4({
    credentials: { accessKeyId: accessKeyId!, secretAccessKey: key.secretAccessKey },
    region: region!,
    service: service!,
    sha256: Hash.bind(null, 'sha256'),
  });
  const again = await signer.sign(
    {
      method: req.method,
      protocol: 'http:',
      hostname: headers.host ?? '',
      path: q >= 0 ? req.url.slice(0, q) : req.url,
      query,
      headers,
      body: req.body,
    },
    { signingDate },
  );
  const expected = AUTH.exec(String(again.headers.authorization))?.[6] ?? '';
  const a = Buffer.from(expected);
  const b = Buffer.from(signature!);
  return a.length === b.length && timingSafeEqual(a, b) ? undefined : 'signature mismatch';
}
