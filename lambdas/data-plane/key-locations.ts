import { headerKey } from './header-hygiene.ts';

/**
 * Where a consumer may present its proxy key (SPEC "Credentials", docs/sdks.md). Vendor SDKs put
 * API keys in different places; a proxy credential lists the ones it accepts in
 * `credentialKeyLocations`:
 *  - `authorization` (the default): the `Authorization` header — raw, `Bearer <key>`, `token <key>`
 *    (Octokit), or for a bearer credential its own prefix; for basicAuth credentials `Basic …`;
 *  - `basic-user`: `Authorization: Basic base64(<key>:)`, the key as user name and an empty
 *    password (Stripe's curl form, `-u sk_…:`);
 *  - `header:<name>`: the whole value of that header (`x-api-key` for Anthropic, `api-key` for
 *    Azure OpenAI, `x-goog-api-key` for Google);
 *  - `query:<name>`: a query parameter (Google's `key`). Off unless listed: a key in a URL ends up
 *    in browser histories and the access logs of every hop.
 * The key must be presented in exactly one listed place: two (or a repeated query parameter) are
 * ambiguous and fail authentication like a wrong key. Every listed place is removed from the
 * request before the rules see it, before the request log records it and before the call out.
 */
export const DEFAULT_KEY_LOCATIONS: readonly string[] = ['authorization'];

export type LocatedKey =
  /** The Authorization header, to be read per the credential type (authenticate-consumer.ts). */
  | { kind: 'authorization'; value: string }
  /** The bare key, from a header, a query parameter or a Basic user name. */
  | { kind: 'bare'; value: string }
  | { kind: 'none' }
  | { kind: 'ambiguous' };

function basicUser(authorization: string): string | undefined {
  if (!/^basic /i.test(authorization)) return undefined;
  const encoded = authorization.slice(6).trim();
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(encoded)) return undefined;
  const pair = Buffer.from(encoded, 'base64').toString('utf8');
  const colon = pair.indexOf(':');
  // The key as user name, and nothing as password: anything else is not this form.
  return colon > 0 && colon === pair.length - 1 ? pair.slice(0, colon) : undefined;
}

function queryValues(rawQuery: string, name: string): string[] {
  if (!rawQuery) return [];
  const values: string[] = [];
  for (const part of rawQuery.split('&')) {
    const eq = part.indexOf('=');
    const rawName = eq >= 0 ? part.slice(0, eq) : part;
    if (safeDecode(rawName) !== name) continue;
    values.push(safeDecode(eq >= 0 ? part.slice(eq + 1) : '') ?? '');
  }
  return values;
}

function safeDecode(s: string): string | undefined {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '));
  } catch {
    return undefined;
  }
}

/** Finds the proxy key among the listed locations (headers keyed lower-case). */
export function locateProxyKey(
  locations: readonly string[],
  headers: Record<string, string | undefined>,
  rawQuery: string,
): LocatedKey {
  const found: LocatedKey[] = [];
  const authorization = headers.authorization;
  if (authorization !== undefined) {
    const user = locations.includes('basic-user') ? basicUser(authorization) : undefined;
    if (user !== undefined) found.push({ kind: 'bare', value: user });
    else if (locations.includes('authorization')) found.push({ kind: 'authorization', value: authorization });
  }
  for (const location of locations) {
    if (location.startsWith('header:')) {
      const value = headers[location.slice(7).toLowerCase()];
      if (value !== undefined) found.push({ kind: 'bare', value });
    } else if (location.startsWith('query:')) {
      for (const value of queryValues(rawQuery, location.slice(6))) found.push({ kind: 'bare', value });
    }
  }
  if (found.length > 1) return { kind: 'ambiguous' };
  return found[0] ?? { kind: 'none' };
}

/** The header names (lower case) that carry a key for these locations, besides Authorization. */
export function keyHeaders(locations: readonly string[]): string[] {
  return locations.filter((l) => l.startsWith('header:')).map((l) => headerKey(l.slice(7)));
}

/** The raw query minus every parameter named by a `query:` location, byte-for-byte otherwise. */
export function withoutKeyParams(locations: readonly string[], rawQuery: string): string {
  const names = new Set(locations.filter((l) => l.startsWith('query:')).map((l) => l.slice(6)));
  if (names.size === 0 || !rawQuery) return rawQuery;
  return rawQuery
    .split('&')
    .filter((part) => {
      const eq = part.indexOf('=');
      const name = safeDecode(eq >= 0 ? part.slice(0, eq) : part);
      return name === undefined || !names.has(name);
    })
    .join('&');
}

/** Removes key-carrying headers (any spelling a server folds together, see headerKey) in place. */
export function removeKeyHeaders(locations: readonly string[], headers: Record<string, string>): boolean {
  const names = new Set(keyHeaders(locations));
  let removed = false;
  for (const name of Object.keys(headers))
    if (names.has(headerKey(name))) {
      delete headers[name];
      removed = true;
    }
  return removed;
}
