/**
 * How many bits a user-supplied proxy secret (key, bearer token, basicAuth password) carries, judged
 * by length and alphabet, as the reference post counts them: 32 hex characters or 22 base64url
 * characters are 128 bits. A readable prefix such as `rr_live_` or `sk_` carries no entropy and is
 * not counted; a string with fewer than 8 distinct characters (`xxxx…`) counts as nothing.
 */
export const MIN_KEY_BITS = 128;
const MIN_DISTINCT = 8;

// A second segment counts as prefix only when it is an environment word: base64url bodies contain
// '_' themselves, and must not lose characters to a greedy prefix.
const PREFIX =
  /^[A-Za-z][A-Za-z0-9]{0,11}_(?:(?:live|test|prod|dev|stage|sandbox|pub|sec|secret|key|user)_)?/;

/** The readable prefix of a key (`rr_live_`, `sk_`, `kg_test_`), if it has one. */
export function readablePrefix(secret: string): string | undefined {
  return PREFIX.exec(secret)?.[0];
}

function bitsPerChar(body: string): number {
  if (/^[0-9]+$/.test(body)) return Math.log2(10);
  if (/^[0-9a-f]+$/.test(body) || /^[0-9A-F]+$/.test(body)) return 4;
  if (/^[0-9a-z]+$/.test(body) || /^[0-9A-Z]+$/.test(body)) return Math.log2(36);
  if (/^[0-9A-Za-z_-]+$/.test(body)) return 6;
  // Printable ASCII: 94 symbols.
  return Math.log2(94);
}

/** Estimated bits of entropy of a secret, not counting a readable prefix. */
export function estimateKeyBits(secret: string): number {
  const prefix = readablePrefix(secret) ?? '';
  const body = secret.length - prefix.length >= 16 ? secret.slice(prefix.length) : secret;
  if (new Set(body).size < MIN_DISTINCT) return 0;
  return Math.floor(body.length * bitsPerChar(body));
}

/** Printable ASCII, no spaces: what a key may be made of. */
export const KEY_CHARSET = /^[\x21-\x7e]+$/;
