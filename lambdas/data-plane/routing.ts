/**
 * Where a data-plane request goes, and the proxy's public URL as the caller sees it (docs/sdks.md).
 *
 * Two forms name a proxy by its id or its `proxyAlias`:
 *  - path form: `{proxyBase}/api/{proxyId or alias}/{target path}`;
 *  - host form, for SDKs that take a host but no base path (Stripe's): `{proxyId or alias}.{proxy
 *    domain}/{target path}`. The proxy domain is `KEYGATE_PROXY_DOMAIN` (in AWS a wildcard custom
 *    domain, `*.proxy.example.com`); its default, `localhost`, makes `{alias}.localhost:4001` work
 *    locally wherever `*.localhost` resolves to loopback (RFC 6761).
 * The host form wins when the Host header is exactly one label under the proxy domain. Locally,
 * where Node cannot resolve `*.localhost`, an alias port (`KEYGATE_ALIAS_PORTS=stripe:4011`) routes
 * every request it receives to that alias: `http://127.0.0.1:4011/…` (docs/sdks.md).
 *
 * The public base (what Link/Location rewriting points at) is `{scheme}://{Host}` plus, in the
 * path form, `/api/{ref}`; the scheme is `X-Forwarded-Proto`, which API Gateway sets and the local
 * front sets to `http` (a consumer's own copy is overwritten by both), `https` when absent.
 */
export interface Route {
  /** The proxy id or alias the request names. */
  ref: string;
  /** True when `ref` is an alias (read under keys.aliasSnapshot), false for an id. */
  byAlias: boolean;
  /** The target path, raw (canonicalised later). */
  targetRawPath: string;
  /** The proxy's public URL for this request, no trailing slash. */
  publicBase: string;
}

const ROUTE_PREFIX = '/api/';
/** Aliases: lower-case letters, digits, inner hyphens (control-plane/schemas.ts). */
const ALIAS = /^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** True when a route segment is an alias: alias-shaped and not an id (ids are UUIDs; aliases never are). */
export function isAliasRef(ref: string): boolean {
  return ALIAS.test(ref) && !UUID.test(ref);
}

/**
 * The route of an origin-form path; undefined when it names no proxy. `fixedRef`: every path goes
 * to that proxy, as a whole target path (a local alias port, ProxyHandlerOptions.fixedRoute).
 */
export function routeOf(
  path: string,
  headers: Record<string, string | undefined>,
  proxyDomain: string,
  fixedRef?: string,
): Route | undefined {
  const host = (headers.host ?? '').trim().toLowerCase();
  const scheme = headers['x-forwarded-proto'] === 'http' ? 'http' : 'https';
  const whole = (ref: string): Route => ({
    ref,
    byAlias: isAliasRef(ref),
    targetRawPath: path === '/' ? '' : path,
    publicBase: `${scheme}://${host}`,
  });
  if (fixedRef) return whole(fixedRef);
  const hostName = host.replace(/:\d+$/, '');
  const suffix = `.${proxyDomain.toLowerCase()}`;
  if (proxyDomain && hostName.endsWith(suffix)) {
    const label = hostName.slice(0, -suffix.length);
    if (label && !label.includes('.')) return whole(label);
  }
  if (!path.startsWith(ROUTE_PREFIX)) return undefined;
  const rest = path.slice(ROUTE_PREFIX.length);
  const slash = rest.indexOf('/');
  const ref = slash >= 0 ? rest.slice(0, slash) : rest;
  return {
    ref,
    byAlias: isAliasRef(ref),
    targetRawPath: slash >= 0 ? rest.slice(slash) : '',
    publicBase: `${scheme}://${host}${ROUTE_PREFIX}${ref}`,
  };
}

const LINK_HEADERS = ['link', 'location', 'content-location'];

/**
 * Rewrites absolute URLs in the vendor's Link, Location and Content-Location that point at the
 * target's base URL (same origin, path under the base path) to the proxy's public URL, so
 * pagination and redirects go through keygate (which still never follows them). Anything else —
 * relative URLs, other hosts, other base paths — passes unchanged. In place.
 */
export function rewriteLinks(headers: Record<string, string>, targetBase: URL, publicBase: string): void {
  const basePath = targetBase.pathname.replace(/\/$/, '');
  const rewrite = (raw: string): string => {
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      return raw;
    }
    if (url.origin !== targetBase.origin) return raw;
    if (basePath && url.pathname !== basePath && !url.pathname.startsWith(`${basePath}/`)) return raw;
    return `${publicBase}${url.pathname.slice(basePath.length)}${url.search}${url.hash}`;
  };
  for (const name of LINK_HEADERS) {
    const value = headers[name];
    if (value === undefined) continue;
    headers[name] =
      name === 'link'
        ? value.replace(/<([^>]*)>/g, (_, u: string) => `<${rewrite(u)}>`)
        : rewrite(value.trim());
  }
}
