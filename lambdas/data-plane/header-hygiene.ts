/**
 * Header hygiene on the way out and on the way back.
 *
 * Out (consumer → vendor): the consumer's Authorization (its proxy key) is dropped; so are the
 * hop-by-hop headers of RFC 9110 §7.6.1 and every header the consumer named in `Connection`,
 * `Proxy-*`, the method-override headers some frameworks obey (a GET that the vendor would run as a
 * DELETE), `X-Original-URL`/`X-Rewrite-URL` (a path the rules never saw), client-supplied client-IP
 * and forwarding headers of every family (`X-Forwarded-*`, `Forwarded`, `X-Real-IP`,
 * `True-Client-IP`, `CF-Connecting-IP`, `Via`, …) and server internals (`X-Envoy-*`,
 * `X-Middleware-*`). Every header whose name holds `_` is dropped too, and names are compared after
 * folding case and `_`→`-` (see `headerKey`). `Host` and `Content-Length` are set by the call
 * itself. The injected credential is applied after this, so no `Connection` trick can remove it.
 * Back (vendor → consumer): only hop-by-hop headers (and those the vendor named in `Connection`)
 * are dropped; everything else passes unchanged — `Content-Length` too, so a HEAD answer keeps the
 * size the vendor announced (the body passes byte for byte, so on other answers it is exact).
 */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'proxy-authenticate',
  'proxy-authorization',
]);

/**
 * Headers a consumer never sends on: who the client is (IP and forwarding headers of every proxy and
 * CDN family), which host or path it "really" asked for (rewrite and override headers a framework or
 * a second proxy may obey), and the internal headers of well-known servers and meshes
 * (`X-Middleware-Subrequest` skips Next.js middleware, CVE-2025-29927; `X-Envoy-*` steers Envoy).
 */
const DROPPED_FROM_CONSUMER = new Set([
  'authorization',
  'host',
  'content-length',
  'expect',
  'via',
  'forwarded',
  'x-real-ip',
  'true-client-ip',
  'cf-connecting-ip',
  'cf-connecting-ipv6',
  'cf-ipcountry',
  'cf-ray',
  'cf-visitor',
  'cf-worker',
  'fastly-client-ip',
  'x-client-ip',
  'client-ip',
  'x-cluster-client-ip',
  'x-originating-ip',
  'x-remote-ip',
  'x-remote-addr',
  'x-proxyuser-ip',
  'cdn-loop',
  'x-host',
  'x-original-host',
  'x-http-host-override',
  'x-http-method-override',
  'x-http-method',
  'x-method-override',
  'x-original-url',
  'x-rewrite-url',
  'x-original-uri',
  'x-override-url',
  'x-proxy-url',
  'x-now-route-matches',
]);

/** Whole families: forwarding (`X-Forwarded-*`), proxies, Envoy, Next.js internals, our own. */
const DROPPED_PREFIXES = ['proxy-', 'x-forwarded-', 'x-envoy-', 'x-middleware-', 'x-invoke-', 'keygate-'];

/**
 * A header name as servers compare it: case-insensitive, and `_` read as `-` (CGI/WSGI/PHP, many
 * frameworks and some proxies turn `X_Api_Key` into `X-Api-Key`). Every list here is matched on
 * this form, and so is the injected credential's name (inject-credential.ts).
 */
export function headerKey(name: string): string {
  return name.toLowerCase().replace(/_/g, '-');
}

/** True when a consumer header (any spelling) is one the gateway never forwards. */
export function isDroppedConsumerHeader(name: string): boolean {
  const key = headerKey(name);
  return (
    HOP_BY_HOP.has(key) ||
    DROPPED_FROM_CONSUMER.has(key) ||
    key === 'x-forwarded' ||
    DROPPED_PREFIXES.some((prefix) => key.startsWith(prefix))
  );
}

function connectionNamed(value: string | undefined): Set<string> {
  const names = new Set<string>();
  for (const part of (value ?? '').split(',')) {
    const name = headerKey(part.trim());
    if (name) names.add(name);
  }
  return names;
}

/**
 * Why the request's Host is ambiguous; undefined when it is not. Two `Host` headers arrive joined by
 * a comma (API Gateway and the local front both join repeated headers), and no host name holds one;
 * an absolute-form request target (`GET http://a/…`) must name the same authority as `Host`
 * (RFC 9112 §3.2.2 lets a server prefer either, so a disagreement is refused rather than guessed).
 */
export function hostRefusal(rawPath: string, host: string | undefined): string | undefined {
  if (host !== undefined && (host.includes(',') || host.trim() === ''))
    return 'more than one Host header (or an empty one)';
  const absolute = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/([^/?#]*)/.exec(rawPath);
  if (absolute && (host === undefined || absolute[1]!.toLowerCase() !== host.trim().toLowerCase()))
    return 'the request target names another host than the Host header';
  return undefined;
}

/** Why the request is a smuggling shape or carries an unsendable header; undefined when clean. */
export function headerRefusal(headers: Record<string, string | undefined>): string | undefined {
  const te = headers['transfer-encoding'];
  const cl = headers['content-length'];
  if (te !== undefined && cl !== undefined) return 'Transfer-Encoding together with Content-Length';
  if (cl !== undefined && !/^\d+$/.test(cl.trim())) return 'malformed or repeated Content-Length';
  for (const [name, value] of Object.entries(headers)) {
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what we look for
    if (value !== undefined && /[\r\n\u0000]/.test(value)) return `control character in header ${name}`;
  }
  return undefined;
}

/** The consumer's headers as they may go to the vendor (lower-case names). */
export function cleanConsumerHeaders(
  headers: Record<string, string | undefined>,
  cookies: string[] | undefined,
): Record<string, string> {
  const named = connectionNamed(headers.connection);
  const out: Record<string, string> = {};
  for (const [rawName, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    // Underscore names are dropped outright (nginx's `underscores_in_headers off`): a vendor may
    // read `X_Role` as `X-Role` while the rules, matching names, would not have seen an `X-Role`.
    if (rawName.includes('_')) continue;
    const name = rawName.toLowerCase();
    if (isDroppedConsumerHeader(name) || named.has(headerKey(name))) continue;
    out[name] = value;
  }
  // API Gateway (payload 2.0) lifts cookies out of the headers; they go back as one Cookie header.
  if (cookies && cookies.length > 0 && !named.has('cookie')) out.cookie = cookies.join('; ');
  return out;
}

/**
 * The vendor's answer headers minus hop-by-hop ones, duplicates joined with ", " except
 * Set-Cookie, which API Gateway carries as a list.
 */
export function cleanUpstreamHeaders(rawHeaders: string[]): {
  headers: Record<string, string>;
  cookies: string[];
} {
  let connection: string | undefined;
  for (let i = 0; i < rawHeaders.length; i += 2)
    if (rawHeaders[i]!.toLowerCase() === 'connection') connection = rawHeaders[i + 1];
  const named = connectionNamed(connection);
  const headers: Record<string, string> = {};
  const cookies: string[] = [];
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!.toLowerCase();
    const value = rawHeaders[i + 1]!;
    if (HOP_BY_HOP.has(name) || named.has(headerKey(name))) continue;
    if (name === 'set-cookie') cookies.push(value);
    else headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
  }
  return { headers, cookies };
}
