import type { CanonicalRequest } from '../rules/types.ts';

/**
 * Canonical form of a request target, computed once: the rules see exactly this path, and exactly
 * this path is sent upstream. Anything a server could read in two ways is refused rather than
 * guessed (every gateway bypass of recent years — Envoy, Traefik, APISIX, Kong — checked one form
 * and sent another).
 *
 * Path:
 *  - percent-encoded unreserved characters (ALPHA DIGIT - . _ ~) are decoded; every other escape
 *    is kept, upper-cased, and must form valid UTF-8;
 *  - refused: encoded `/` `\` `?` `#` `;` `%` (double encoding), encoded non-ASCII characters that
 *    compatibility normalisation (NFKC) turns into one of those or a dot, encoded or raw control characters
 *    (NUL, CR, LF…), raw `\`, `;` parameters, empty segments (`//`), malformed escapes, and raw
 *    characters outside RFC 3986's pchar set (spaces, quotes, non-ASCII…);
 *  - dot segments are then removed per RFC 3986 §5.2.4; climbing above the root is refused.
 * Query: kept byte-for-byte for the upstream; refused when it holds raw characters outside RFC
 * 3986's query set, control characters or malformed escapes; decoded into ordered pairs for rules.
 */
export type Canonical<T> = { ok: true; value: T } | { ok: false; reason: string };

const UNRESERVED = /[A-Za-z0-9\-._~]/;
// pchar minus ';' (refused as a parameter delimiter), plus '/' as the segment separator.
const RAW_PATH_CHAR = /[A-Za-z0-9\-._~!$&'()*+,=:@/]/;
const RAW_QUERY_CHAR = /[A-Za-z0-9\-._~!$&'()*+,;=:@/?]/;
const FORBIDDEN_ESCAPES: Record<string, string> = {
  '2F': 'encoded "/"',
  '5C': 'encoded "\\"',
  '3F': 'encoded "?"',
  '23': 'encoded "#"',
  '3B': 'encoded ";"',
  '25': 'double encoding ("%25")',
};

function fail<T>(reason: string): Canonical<T> {
  return { ok: false, reason };
}

/** Checks that a run of %XX escapes (as byte values) is valid UTF-8 with no control characters. */
function validUtf8(bytes: number[]): boolean {
  try {
    const text = new TextDecoder('utf-8', { fatal: true }).decode(Uint8Array.from(bytes));
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what we look for
    if (/[\u0000-\u001f\u007f-\u009f]/.test(text)) return false;
    // Look-alikes that compatibility normalisation (NFKC, "best fit") turns into a separator or a
    // dot — fullwidth solidus U+FF0F, fullwidth full stop U+FF0E, … — would let a server that
    // normalises read `/v2/x／..／admin` as `/v2/admin`: ambiguous, so refused.
    return !/[/\\.?#;%]/.test(text.normalize('NFKC'));
  } catch {
    return false;
  }
}

// Characters servers trim or ignore in a segment: white space (Unicode) and the default-ignorable
// code points (zero-width space, joiners, BOM, soft hyphen, variation selectors, Hangul fillers…).
const IGNORABLE = /[\s\p{Zs}\p{Cf}\p{Default_Ignorable_Code_Point}]/gu;

/**
 * A segment other than `.`/`..` that some server would still read as one: only dots once decoded,
 * folded (NFKC) and stripped of ignorable characters (`..%20`, `%20..`, `..%C2%A0`, `...`, which
 * Windows trims to `..`).
 */
function isDisguisedDotSegment(segment: string): boolean {
  if (segment === '.' || segment === '..' || !segment.includes('.')) return false;
  let text: string;
  try {
    text = decodeURIComponent(segment);
  } catch {
    return true;
  }
  return /^\.+$/.test(text.normalize('NFKC').replace(IGNORABLE, ''));
}

/** RFC 3986 §5.2.4 on a path whose segments are already validated; undefined when it climbs above the root. */
function removeDotSegments(path: string): string | undefined {
  const segments = path.split('/').slice(1);
  const out: string[] = [];
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i]!;
    const last = i === segments.length - 1;
    if (seg === '.') {
      if (last) out.push('');
    } else if (seg === '..') {
      if (out.length === 0) return undefined;
      out.pop();
      if (last) out.push('');
    } else {
      out.push(seg);
    }
  }
  return `/${out.join('/')}`;
}

/** The canonical form of a path that starts with '/', or why it is refused. */
export function canonicalizePath(rawPath: string): Canonical<string> {
  if (rawPath === '') return { ok: true, value: '/' };
  if (!rawPath.startsWith('/')) return fail('path must start with "/"');
  let out = '';
  let pending: number[] = [];
  let pendingText = '';
  const flushEscapes = (): boolean => {
    if (pending.length === 0) return true;
    if (!validUtf8(pending)) return false;
    out += pendingText;
    pending = [];
    pendingText = '';
    return true;
  };
  for (let i = 0; i < rawPath.length; i++) {
    const c = rawPath[i]!;
    if (c === '%') {
      const hex = rawPath.slice(i + 1, i + 3).toUpperCase();
      if (!/^[0-9A-F]{2}$/.test(hex)) return fail('malformed percent-encoding');
      const forbidden = FORBIDDEN_ESCAPES[hex];
      if (forbidden) return fail(forbidden);
      const byte = Number.parseInt(hex, 16);
      i += 2;
      if (byte < 0x80 && UNRESERVED.test(String.fromCharCode(byte))) {
        if (!flushEscapes())
          return fail('invalid UTF-8, a control character or a separator look-alike in an escape');
        out += String.fromCharCode(byte);
      } else {
        pending.push(byte);
        pendingText += `%${hex}`;
      }
      continue;
    }
    if (!flushEscapes())
      return fail('invalid UTF-8, a control character or a separator look-alike in an escape');
    if (c === '\\') return fail('backslash in path');
    if (c === ';') return fail('";" parameters are not accepted');
    if (!RAW_PATH_CHAR.test(c)) return fail(`character ${JSON.stringify(c)} must be percent-encoded`);
    out += c;
  }
  if (!flushEscapes())
    return fail('invalid UTF-8, a control character or a separator look-alike in an escape');
  if (out.includes('//')) return fail('empty path segment ("//")');
  if (out.split('/').some(isDisguisedDotSegment))
    return fail('a segment that reads as "." or ".." once spaces or invisible characters are trimmed');
  const resolved = removeDotSegments(out);
  if (resolved === undefined) return fail('dot segments climb above the root');
  return { ok: true, value: resolved };
}

/**
 * Validates a raw query string (kept byte-for-byte for the upstream) and decodes it into ordered
 * name/value pairs for the rules.
 */
export function parseQuery(rawQuery: string): Canonical<Array<[string, string]>> {
  return parseUrlEncoded(rawQuery, 'query', CONTROL);
}

/**
 * Strict application/x-www-form-urlencoded fields of a body, for body checks: the query's grammar
 * (raw characters of RFC 3986's query set only, valid escapes, UTF-8), where decoded tabs and line
 * breaks are allowed (a text field may hold them) but no other control character.
 */
export function parseFormFields(body: string): Canonical<Array<[string, string]>> {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what we look for
  return parseUrlEncoded(body, 'form body', /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/);
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what we look for
const CONTROL = /[\u0000-\u001f\u007f]/;

// Form bodies also carry raw brackets (`items[0][price]=…`, as curl and Stripe's SDKs send them).
const RAW_FORM_CHAR = /[A-Za-z0-9\-._~!$&'()*+,;=:@/?[\]]/;

function parseUrlEncoded(raw: string, what: string, control: RegExp): Canonical<Array<[string, string]>> {
  const allowed = what === 'query' ? RAW_QUERY_CHAR : RAW_FORM_CHAR;
  if (raw === '') return { ok: true, value: [] };
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (c === '%') {
      const hex = raw.slice(i + 1, i + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return fail(`malformed percent-encoding in ${what}`);
      i += 2;
    } else if (!allowed.test(c)) {
      return fail(`character ${JSON.stringify(c)} must be percent-encoded in the ${what}`);
    }
  }
  const pairs: Array<[string, string]> = [];
  for (const part of raw.split('&')) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const [name, value] = eq >= 0 ? [part.slice(0, eq), part.slice(eq + 1)] : [part, ''];
    const decoded = [name, value].map((s) => decodeComponent(s, control));
    if (decoded[0] === undefined || decoded[1] === undefined)
      return fail(`invalid UTF-8 or control character in ${what}`);
    pairs.push([decoded[0], decoded[1]]);
  }
  return { ok: true, value: pairs };
}

function decodeComponent(s: string, control: RegExp): string | undefined {
  try {
    const text = decodeURIComponent(s.replace(/\+/g, ' '));
    return control.test(text) ? undefined : text;
  } catch {
    return undefined;
  }
}

/** Methods the gateway forwards; TRACE and CONNECT (and anything unknown) never are. */
export const FORWARDED_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

export interface RawRequest {
  method: string;
  /** The target path (after `/api/{proxyId}`), exactly as received. */
  rawPath: string;
  rawQuery: string;
  headers: Record<string, string | undefined>;
  /** The body as received; read strictly (rules/request-body.ts) only when a rule has a body check. */
  body?: string | Buffer;
}

/**
 * The one canonical request both the data plane and the simulate endpoint evaluate rules on.
 * Methods are compared exactly: `get` is not `GET`.
 */
export function canonicalRequest(raw: RawRequest): Canonical<CanonicalRequest> {
  if (!FORWARDED_METHODS.has(raw.method))
    return fail(`method ${JSON.stringify(raw.method)} is not forwarded`);
  const path = canonicalizePath(raw.rawPath);
  if (!path.ok) return path;
  const query = parseQuery(raw.rawQuery);
  if (!query.ok) return query;
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(raw.headers))
    if (value !== undefined) headers[name.toLowerCase()] = value;
  const rawBody = typeof raw.body === 'string' ? Buffer.from(raw.body, 'utf8') : raw.body;
  return {
    ok: true,
    value: {
      method: raw.method,
      path: path.value,
      headers,
      query: query.value,
      ...(rawBody && rawBody.length > 0 ? { rawBody } : {}),
    },
  };
}
