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

/**
 * Short names that carry secrets by convention (`x-pw`, `x-sess`, `x-otp`, `x-sig`, `pw=`, `sid=`,
 * `k=`…): matched as a whole word of the name, where words are split at `-`, `_`, `.` and
 * lower→upper case changes, so `x-sig` and `sessId` match but `x-signal` or `kind` do not.
 */
const SHORT_SECRET_WORDS = new Set([
  'k',
  'pw',
  'pwd',
  'pass',
  'passwd',
  'pin',
  'sess',
  'sid',
  'ssid',
  'otp',
  'totp',
  'hotp',
  'mfa',
  'sig',
  'sign',
  'hmac',
  'tok',
  'tkn',
  'nonce',
  'cred',
  'creds',
  'priv',
  'ticket',
  'cookie',
]);

function hasShortSecretWord(name: string): boolean {
  return name
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .toLowerCase()
    .split(/[\s._-]+/)
    .some((word) => SHORT_SECRET_WORDS.has(word));
}

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
  return SCHEME_HEADERS.has(n) || !!extra?.has(n) || SECRET_HEADER_NAME.test(n) || hasShortSecretWord(name);
}

/** True when a query parameter with this name may carry a secret. */
export function isSecretParamName(name: string, extra?: Set<string>): boolean {
  return !!extra?.has(name.toLowerCase()) || SECRET_PARAM_NAME.test(name) || hasShortSecretWord(name);
}

const ABSOLUTE_URL = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/\S+$/;

/**
 * Masks the credentials a URL carries: a password (and user name) in its userinfo, and the values
 * of secret-looking query parameters (`?token=`, `?key=`, `?sig=`, a JWT-looking value…). Anything
 * that is not an absolute URL is answered unchanged; the rest of the URL is kept as it was.
 */
export function maskUrl(value: string): string {
  if (!ABSOLUTE_URL.test(value.trim())) return value;
  const trimmed = value.trim();
  const scheme = trimmed.indexOf('://') + 3;
  const end = trimmed.slice(scheme).search(/[/?#]/);
  const authorityEnd = end < 0 ? trimmed.length : scheme + end;
  let authority = trimmed.slice(scheme, authorityEnd);
  const at = authority.lastIndexOf('@');
  if (at >= 0) authority = `${MASK}@${authority.slice(at + 1)}`;
  let rest = trimmed.slice(authorityEnd);
  const q = rest.indexOf('?');
  if (q >= 0) {
    const hash = rest.indexOf('#', q);
    const query = hash < 0 ? rest.slice(q + 1) : rest.slice(q + 1, hash);
    rest = `${rest.slice(0, q + 1)}${maskQuery(query)}${hash < 0 ? '' : rest.slice(hash)}`;
  }
  return `${trimmed.slice(0, scheme)}${authority}${rest}`;
}

/**
 * Masks every absolute URL found in string fields of an answer, at any depth (a `jwksUrl` with
 * `?token=`, a base URL with a password): what the Core API shows members never holds a credential
 * that a URL happened to carry. The stored value is untouched (the data plane needs it).
 */
export function maskUrlsDeep<T>(value: T): T {
  if (typeof value === 'string') return maskUrl(value) as T;
  if (Array.isArray(value)) return value.map(maskUrlsDeep) as T;
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = maskUrlsDeep(v);
    return out as T;
  }
  return value;
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
    else if (ABSOLUTE_URL.test(value.trim())) out[name] = maskUrl(value);
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
      if (secret) return `${rawName}=${MASK}`;
      // A URL as a value (`?redirect=https://u:p@h/?token=…`) keeps its shape, minus its credentials.
      if (ABSOLUTE_URL.test(value)) {
        const masked = maskUrl(value);
        return masked === value ? pair : `${rawName}=${encodeURIComponent(masked)}`;
      }
      return pair;
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
