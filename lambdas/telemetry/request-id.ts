import { randomBytes } from 'node:crypto';

/**
 * Request ids are time-ordered (ULID layout: 10 Crockford base32 characters of milliseconds since
 * the epoch, then 16 of randomness), so the request log can be keyed by id and still be read by time
 * range, and an id alone names its day partition.
 */
const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
export const REQUEST_ID_PATTERN = /^[0-9A-HJKMNP-TV-Z]{26}$/;

function encodeTime(ms: number): string {
  let out = '';
  let n = ms;
  for (let i = 0; i < 10; i++) {
    out = CROCKFORD[n % 32] + out;
    n = Math.floor(n / 32);
  }
  return out;
}

export function newRequestId(now: Date = new Date()): string {
  const random = randomBytes(16);
  let tail = '';
  for (let i = 0; i < 16; i++) tail += CROCKFORD[random[i]! % 32];
  return encodeTime(now.getTime()) + tail;
}

/** The smallest id at or after `time` (for range queries by time). */
export function requestIdLowerBound(time: Date): string {
  return `${encodeTime(time.getTime())}${'0'.repeat(16)}`;
}

/** The largest id at or before `time`. */
export function requestIdUpperBound(time: Date): string {
  return `${encodeTime(time.getTime())}${'Z'.repeat(16)}`;
}

/** The time an id was issued, or undefined when it is not a request id. */
export function requestIdTime(id: string): Date | undefined {
  if (!REQUEST_ID_PATTERN.test(id)) return undefined;
  let ms = 0;
  for (const c of id.slice(0, 10)) ms = ms * 32 + CROCKFORD.indexOf(c);
  return new Date(ms);
}
