/**
 * Masking of what the request log keeps. A masked value is always the fixed string `****`, so no
 * record, log line or API answer reveals a secret or its length. What is kept is only what helps a
 * reader without helping an attacker: the auth scheme (`Bearer ****`) and cookie names.
 */
export const MASK = '****';

/** Headers whose whole value is a secret, or whose value is `<scheme> <secret>`. */
const SCHEME_HEADERS = new Set(['authorization', 'proxy-authorization']);
const COOKIE_HEADERS = new Set(['cookie', 'set-cookie']);

/**
 * Header names that carry secrets whatever their value looks like: API keys (`X-Api-Key`,
 * `Ocp-Apim-Subscription-Key`…), tokens, passwords, signatures, session material, and the SigV4 /
 * STS ones (`X-Amz-Security-Token`, `X-Amz-Signature`, `X-Amz-Credential`). Matched lower-cased.
 */
const SECRET_HEADER_NAME =
  /api-?key|apikey|(?:^|[-_])key(?:$|[-_])|token|secret|passw|pwd|auth|signature|session|credential|private|jwt|csrf|xsrf|^x-amz-(?:security-token|signature|credential)$/;

/** Query parameter names that look like they carry a secret (also the SigV4 presigned-URL ones). */
const SECRET_PARAM_NAME =
  /api[-_]?key|key$|token|secret|passw|pwd|auth|signature|^sig$|session|credential|^code$|jwt|^x-amz-|private|access[-_]?key|otp/i;

/** Values that are secrets whatever the name they come under: JWTs, well-known key formats. */
const SECRET_VALUE =
  /^(?:eyJ[\w-]+\.[\w-]+\.[\w-]*|(?:sk|pk|rk)_(?:live|test)_\w+|kg_(?:live|test|user)_\w+|rr_(?:live|test)_\w+|gh[pousr]_\w{20,}|xox[abpr]-[\w-]+|AKIA[0-9A-Z]{16}|ASIA[0-9A-Z]{16}|AIza[\w-]{30,})/;

function lower(names: string[] | undefined): Set<string> {
  return new Set((names ?? []).map((n) => n.toLowerCase()));
}

/** `Bearer abc` → `Bearer ****`; a value without a scheme → `****`. */
function maskSchemeValue(value: string): string {
  const m = /^\s*([A-Za-z][\w.+-]{0,31})\s+\S/.exec(value);
  // SigV4's value is `AWS4-HMAC-SHA256 Credential=AKIA…/scope, SignedHeaders=…, Signature=…`:
  // the credential names the access key, so nothing after the scheme is kept.
  return m ? `${m[1]} ${MASK}` : MASK;
}

/** `a=1; b=2` → `a=****; b=****` (cookie names kept, values masked). */
function maskCookies(value: string): string {
  return value
    .split(';')
    .map((part) => part.trim())
    .filter((part) => part.length > 0)
    .map((part) => {
      const eq = part.indexOf('=');
      if (eq < 0) return part.length <= 64 && /^[\w.-]+$/.test(part) ? part : MASK;
      const name = part.slice(0, eq).trim();
      return `${/^[\w.!#$%&'*+^`|~-]{1,64}$/.test(name) ? name : MASK}=${MASK}`;
    })
    .join('; ');
}

/** True when a header with this (lower-cased) name carries a secret. */
export function isSecretHeaderName(name: string, extra?: Set<string>): boolean {
  const n = name.toLowerCase();
  return SCHEME_HEADERS.has(n) || !!extra?.has(n) || SECRET_HEADER_NAME.test(n);
}

/** True when a query parameter with this name may carry a secret. */
export function isSecretParamName(name: string, extra?: Set<string>): boolean {
  return !!extra?.has(name.toLowerCase()) || SECRET_PARAM_NAME.test(name);
}

/**
 * Masks request headers for the request log: `Authorization`/`Proxy-Authorization` keep their
 * scheme, cookies keep their names, every secret-looking header name (API keys, tokens, SigV4 and
 * `X-Amz-Security-Token`, the configured credential header names) and every value that looks like
 * a key or JWT becomes `****`. Names are lower-cased.
 */
export function maskHeaders(
  headers: Record<string, string>,
  secretHeaderNames?: string[],
): Record<string, string> {
  const extra = lower(secretHeaderNames);
  const out: Record<string, string> = {};
  for (const [rawName, rawValue] of Object.entries(headers)) {
    const name = rawName.toLowerCase();
    const value = String(rawValue ?? '');
    if (SCHEME_HEADERS.has(name)) out[name] = maskSchemeValue(value);
    else if (COOKIE_HEADERS.has(name)) out[name] = maskCookies(value);
    else if (isSecretHeaderName(name, extra)) out[name] = MASK;
    else if (SECRET_VALUE.test(value.trim()) || /\b(?:bearer|basic)\s+\S/i.test(value))
      out[name] = /^\s*(?:bearer|basic)\s/i.test(value) ? maskSchemeValue(value) : MASK;
    else out[name] = value;
  }
  return out;
}

/**
 * Masks a raw query string (without `?`): values of secret-looking parameters (and of the
 * configured credential parameter names) and values that look like keys or JWTs become `****`.
 * Names and the order of parameters are kept; the rest of the string is left byte-for-byte.
 */
export function maskQuery(rawQuery: string, secretParamNames?: string[]): string {
  if (!rawQuery) return '';
  const extra = lower(secretParamNames);
  return rawQuery
    .replace(/^\?/, '')
    .split('&')
    .map((pair) => {
      if (pair === '') return pair;
      const eq = pair.indexOf('=');
      const rawName = eq < 0 ? pair : pair.slice(0, eq);
      if (eq < 0) return SECRET_VALUE.test(safeDecode(rawName)) ? MASK : pair;
      const name = safeDecode(rawName);
      const value = safeDecode(pair.slice(eq + 1));
      const secret = isSecretParamName(name, extra) || SECRET_VALUE.test(value);
      return secret ? `${rawName}=${MASK}` : pair;
    })
    .join('&');
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return s;
  }
}

/**
 * Masks path segments that are themselves keys or JWTs (some APIs put the key in the path). The
 * rest of the path is kept as the rules saw it.
 */
export function maskPath(path: string): string {
  return path
    .split('/')
    .map((seg) => (SECRET_VALUE.test(safeDecode(seg)) ? MASK : seg))
    .join('/');
}
