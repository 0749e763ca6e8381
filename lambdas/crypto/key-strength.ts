import type { ZxcvbnFactory } from '@zxcvbn-ts/core';

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

/**
 * How much of a secret zxcvbn must find unpredictable: its structure-aware guess count (dictionary
 * words, repeats like `Password1Password1…`, keyboard rows, sequences, dates, l33t) must be at least
 * this share of what a random string of the same length would need (10^length guesses). Random hex
 * and base64url keys score 0.9–1.0; human-made ones (`Password1Password1Password1` 0.12, keyboard
 * rows 0.3–0.6) fall far below.
 */
export const MIN_UNPREDICTABLE_SHARE = 0.75;
/** zxcvbn's cost grows fast with length; the first 64 characters after the prefix are judged. */
const JUDGED_CHARS = 64;

/**
 * zxcvbn (its matchers and 1.6 MB of word lists), loaded on the first check only: just a credential
 * created with a user-supplied proxy secret needs it, so it stays out of the Core API's bundle and
 * its cold start (docs/core-api-bundle.md). The construct marks these packages external and ships
 * them, with what they depend on, beside the bundle in `node_modules` (lib/core-api.ts); without a
 * bundle (`npm start`, tests) the same imports load them from the checkout.
 */
export const ZXCVBN_PACKAGES = ['@zxcvbn-ts/core', '@zxcvbn-ts/language-common', '@zxcvbn-ts/language-en'];

let estimator: Promise<ZxcvbnFactory> | undefined;
function zxcvbn(): Promise<ZxcvbnFactory> {
  estimator ??= loadEstimator().catch((error: unknown) => {
    estimator = undefined; // the next check tries again
    throw error;
  });
  return estimator;
}

async function loadEstimator(): Promise<ZxcvbnFactory> {
  const [{ ZxcvbnFactory }, common, en] = await Promise.all([
    import('@zxcvbn-ts/core'),
    import('@zxcvbn-ts/language-common'),
    import('@zxcvbn-ts/language-en'),
  ]);
  return new ZxcvbnFactory({
    maxLength: JUDGED_CHARS,
    // No l33t table: it multiplies the cost ~5x (≈100 ms → 20 ms a check) and the common-password
    // list already holds the usual l33t spellings (`p@ssw0rd`).
    l33tTable: {},
    dictionary: { ...common.dictionary, ...en.dictionary },
    graphs: common.adjacencyGraphs,
    translations: en.translations,
  });
}

/**
 * Why a user-supplied secret is predictable despite its length, in words; undefined when it is
 * not. The readable prefix is not judged (it is meant to be predictable). The first call loads
 * zxcvbn (see `ZXCVBN_PACKAGES`).
 */
export async function predictability(secret: string): Promise<string | undefined> {
  const prefix = readablePrefix(secret) ?? '';
  const body = (secret.length - prefix.length >= 16 ? secret.slice(prefix.length) : secret).slice(
    0,
    JUDGED_CHARS,
  );
  const result = (await zxcvbn()).check(body);
  if (result.guessesLog10 >= MIN_UNPREDICTABLE_SHARE * body.length) return undefined;
  const patterns = [...new Set(result.sequence.map((m) => m.pattern))].filter((p) => p !== 'bruteforce');
  return `it is predictable (${patterns.join(', ') || 'structure'} found: about ${Math.floor(result.guessesLog10 * Math.log2(10))} bits)`;
}

/** Printable ASCII, no spaces: what a key may be made of. */
export const KEY_CHARSET = /^[\x21-\x7e]+$/;
