import { createHash, randomInt, timingSafeEqual } from 'node:crypto';
import { crc32 } from 'node:zlib';

/**
 * Bearer secrets keygate issues: user tokens (`kg_user_`) and proxy keys (`kg_live_`, `kg_test_`).
 *
 * Format: `<prefix><30 base62 chars of CSPRNG output><6 base62 chars of CRC32(prefix + random)>`.
 * 30 base62 characters carry 30·log2(62) ≈ 178.6 bits; the checksum lets a secret scanner tell a
 * real key from a typo offline. Scanner regex: `\bkg_(?:live|test|user)_[0-9A-Za-z]{36}\b`.
 * Stored only as a SHA-256 hash: the inputs have ≥128 bits of entropy, so a slow hash adds nothing.
 */
const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const RANDOM_CHARS = 30;
const CHECKSUM_CHARS = 6;

export type SecretPrefix = 'kg_user_' | 'kg_live_' | 'kg_test_';
export const SECRET_PATTERN = /^kg_(?:live|test|user)_[0-9A-Za-z]{36}$/;

function base62(value: number, width: number): string {
  let out = '';
  let n = value;
  for (let i = 0; i < width; i++) {
    out = BASE62[n % 62] + out;
    n = Math.floor(n / 62);
  }
  return out;
}

function checksum(body: string): string {
  return base62(crc32(body) >>> 0, CHECKSUM_CHARS);
}

/** A new secret with the given prefix; `randomInt` draws from the CSPRNG without modulo bias. */
export function generateSecret(prefix: SecretPrefix): string {
  let random = '';
  for (let i = 0; i < RANDOM_CHARS; i++) random += BASE62[randomInt(62)];
  const body = prefix + random;
  return body + checksum(body);
}

/** True when the string has keygate's format and its checksum holds (no I/O, no secret needed). */
export function hasValidChecksum(secret: string): boolean {
  if (!SECRET_PATTERN.test(secret)) return false;
  const body = secret.slice(0, -CHECKSUM_CHARS);
  return checksum(body) === secret.slice(-CHECKSUM_CHARS);
}

/** SHA-256 hex of a secret: what is stored and looked up, never the secret itself. */
export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** Constant-time comparison of two hex digests of equal length. */
export function digestsEqual(a: string, b: string): boolean {
  const ab = Buffer.from(a, 'hex');
  const bb = Buffer.from(b, 'hex');
  return ab.length === bb.length && ab.length > 0 && timingSafeEqual(ab, bb);
}

/** What may be shown of a secret after creation: its prefix and last four characters. */
export function secretHint(secret: string): string {
  const prefix = /^[A-Za-z]+_(?:[A-Za-z]+_)?/.exec(secret)?.[0] ?? '';
  return `${prefix}…${secret.slice(-4)}`;
}
