import { headerKey } from './header-hygiene.ts';

/**
 * Injection of the vendor secret per target credential type (SPEC "Credentials"):
 * apiKey → header `headerName` (default X-API-Key) or query parameter `queryParam`; bearer →
 * `Authorization: <prefix><token>`; basicAuth → `Authorization: Basic …`; custom → its headers;
 * oauth2 → `Authorization: Bearer <access token>`; customToken → its `injectAs`; none → nothing.
 * Consumer-sent copies of an injected header or query parameter are removed first: the vendor sees
 * exactly one value, ours — never a merge a vendor might read the consumer's half of.
 */
export interface Injection {
  /** Lower-case header names → values. */
  headers: Record<string, string>;
  query?: { name: string; value: string };
}

export class InjectionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InjectionError';
  }
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what we refuse
const UNSENDABLE = /[\u0000-\u0008\u000a-\u001f\u007f]/;

function str(secret: Record<string, unknown>, field: string, optional = false): string | undefined {
  const v = secret[field];
  if (v === undefined && optional) return undefined;
  if (typeof v !== 'string' || (!optional && v === ''))
    throw new InjectionError(`target credential lacks ${field}`);
  return v;
}

function header(name: string, value: string): [string, string] {
  if (!TOKEN.test(name) || UNSENDABLE.test(value))
    throw new InjectionError('target credential holds an unsendable header');
  return [name.toLowerCase(), value];
}

/** What to add to the outgoing request for a target credential; `accessToken` is for oauth2. */
export function injectionFor(
  authType: string,
  secret: Record<string, unknown>,
  accessToken?: string,
): Injection {
  switch (authType) {
    case 'apiKey':
    case 'key': {
      const key = str(secret, 'key')!;
      const queryParam = str(secret, 'queryParam', true);
      if (queryParam) return { headers: {}, query: { name: queryParam, value: key } };
      return { headers: Object.fromEntries([header(str(secret, 'headerName', true) || 'X-API-Key', key)]) };
    }
    case 'bearer': {
      const prefix = str(secret, 'prefix', true) ?? 'Bearer ';
      return { headers: Object.fromEntries([header('authorization', prefix + str(secret, 'token')!)]) };
    }
    case 'basicAuth': {
      const pair = `${str(secret, 'username')}:${str(secret, 'password', true) ?? ''}`;
      return {
        headers: Object.fromEntries([
          header('authorization', `Basic ${Buffer.from(pair).toString('base64')}`),
        ]),
      };
    }
    case 'custom': {
      const headers = secret.headers;
      if (headers === null || typeof headers !== 'object' || Array.isArray(headers))
        throw new InjectionError('target credential lacks headers');
      const out: Record<string, string> = {};
      for (const [name, value] of Object.entries(headers)) {
        if (typeof value !== 'string')
          throw new InjectionError('target credential holds an unsendable header');
        const [n, v] = header(name, value);
        out[n] = v;
      }
      return { headers: out };
    }
    case 'oauth2':
      if (!accessToken) throw new InjectionError('no access token');
      return { headers: Object.fromEntries([header('authorization', `Bearer ${accessToken}`)]) };
    case 'customToken': {
      // injectAs: a header (default `Authorization: Bearer <token>`) or a query parameter.
      if (!accessToken) throw new InjectionError('no access token');
      const injectAs = (secret.injectAs ?? {}) as Record<string, unknown>;
      const queryParam = str(injectAs, 'queryParam', true);
      if (queryParam) return { headers: {}, query: { name: queryParam, value: accessToken } };
      const name = str(injectAs, 'headerName', true) || 'Authorization';
      const prefix =
        str(injectAs, 'prefix', true) ?? (name.toLowerCase() === 'authorization' ? 'Bearer ' : '');
      return { headers: Object.fromEntries([header(name, prefix + accessToken)]) };
    }
    case 'none':
      return { headers: {} };
    default:
      throw new InjectionError('unknown target credential type');
  }
}

/**
 * Sets the injected headers on `headers` (in place), replacing every consumer copy under any
 * spelling a server may fold into the same name (`X_Api_Key` for `X-Api-Key`, see headerKey).
 */
export function applyHeaders(headers: Record<string, string>, injection: Injection): void {
  for (const [name, value] of Object.entries(injection.headers)) {
    for (const existing of Object.keys(headers))
      if (headerKey(existing) === headerKey(name)) delete headers[existing];
    headers[name] = value;
  }
}

function decodedName(part: string): string | undefined {
  const eq = part.indexOf('=');
  const raw = eq >= 0 ? part.slice(0, eq) : part;
  try {
    return decodeURIComponent(raw.replace(/\+/g, ' '));
  } catch {
    return undefined;
  }
}

/**
 * The raw query to send: byte-for-byte as received, minus every consumer parameter with the
 * injected name, plus the injected parameter at the end.
 */
export function applyQuery(rawQuery: string, injection: Injection): string {
  if (!injection.query) return rawQuery;
  const { name, value } = injection.query;
  const kept = rawQuery === '' ? [] : rawQuery.split('&').filter((part) => decodedName(part) !== name);
  kept.push(`${encodeURIComponent(name)}=${encodeURIComponent(value)}`);
  return kept.join('&');
}
