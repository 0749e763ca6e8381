import { createHash, timingSafeEqual } from 'node:crypto';
import type { ProxyCredentialView } from '../storage/snapshot-types.ts';

/**
 * Authentication of the consumer against the proxy credential in the snapshot.
 *
 * Every failure — unknown proxy, no credential on the proxy, missing, wrong, revoked or expired key
 * — is the same `false`, and every path does the same work: one SHA-256 of what was presented (the
 * empty string when nothing was) and one constant-time comparison of 32-byte digests (against a
 * fixed decoy digest when there is nothing real to compare with). So neither the answer nor its
 * timing tells an unknown proxy from a wrong key. jwtVerify credentials are verified separately
 * (./verify-jwt.ts) because a JWT is checked by signature, not by hash.
 */
const DECOY_DIGEST = createHash('sha256').update('keygate decoy digest').digest();

export type ConsumerAuth = { ok: true; credentialId: string } | { ok: false };

/**
 * The secret a credential of this type expects in `Authorization`: apiKey raw or after `Bearer `
 * or `token ` (GitHub's scheme, Octokit's default);
 * bearer after its prefix (default `Bearer `); basicAuth as `username:password` from `Basic …`.
 */
export function presentedSecret(authType: string | undefined, authorization: string): string {
  switch (authType) {
    case 'apiKey':
    case 'key':
      if (/^bearer /i.test(authorization)) return authorization.slice(7);
      return /^token /i.test(authorization) ? authorization.slice(6) : authorization;
    case 'bearer':
      return authorization;
    case 'basicAuth': {
      if (!/^basic /i.test(authorization)) return '';
      const encoded = authorization.slice(6).trim();
      if (!/^[A-Za-z0-9+/]*={0,2}$/.test(encoded)) return '';
      return Buffer.from(encoded, 'base64').toString('utf8');
    }
    default:
      return authorization;
  }
}

/** True when `expiresAt` is set and not in the future (an unparseable date counts as expired). */
export function isExpired(expiresAt: string | undefined, now: Date): boolean {
  if (expiresAt === undefined) return false;
  const t = Date.parse(expiresAt);
  return !(t > now.getTime());
}

/**
 * Checks the presented `Authorization` value against a hashed proxy credential (apiKey, bearer,
 * basicAuth). `credential` is undefined when the proxy is unknown or its credential was deleted.
 * With `bare`, the value is the key itself, found in another listed location (key-locations.ts):
 * no scheme or prefix is read off it, and it never matches a basicAuth credential.
 */
export function authenticateByHash(
  credential: ProxyCredentialView | undefined,
  authorization: string | undefined,
  now: Date,
  bare = false,
): ConsumerAuth {
  const type = credential?.credentialAuthType;
  let presented = bare ? (authorization ?? '') : presentedSecret(type, authorization ?? '');
  let prefixOk = !(bare && type === 'basicAuth');
  if (type === 'bearer' && !bare) {
    const prefix = credential?.prefix ?? 'Bearer ';
    prefixOk = presented.startsWith(prefix);
    presented = prefixOk ? presented.slice(prefix.length) : presented;
  }
  const digest = createHash('sha256').update(presented, 'utf8').digest();
  const stored =
    credential?.secretHash && /^[0-9a-f]{64}$/.test(credential.secretHash) ? credential.secretHash : '';
  const expected = stored ? Buffer.from(stored, 'hex') : DECOY_DIGEST;
  const same = timingSafeEqual(digest, expected);
  const usable =
    credential !== undefined &&
    stored !== '' &&
    ['apiKey', 'key', 'bearer', 'basicAuth'].includes(type ?? '') &&
    prefixOk &&
    authorization !== undefined &&
    presented.length > 0 &&
    !isExpired(credential.expiresAt, now);
  return same && usable ? { ok: true, credentialId: credential.credentialId } : { ok: false };
}
