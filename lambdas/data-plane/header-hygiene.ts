/**
 * Header hygiene on the way out and on the way back.
 *
 * Out (consumer → vendor): the consumer's Authorization (its proxy key) is dropped; so are the
 * hop-by-hop headers of RFC 9110 §7.6.1 and every header the consumer named in `Connection`,
 * `Proxy-*`, the method-override headers some frameworks obey (a GET that the vendor would run as a
 * DELETE), `X-Original-URL`/`X-Rewrite-URL` (a path the rules never saw), and client-supplied
 * forwarding headers (`X-Forwarded-*`, `Forwarded`, `X-Real-IP`). `Host` and `Content-Length` are
 * set by the call itself. The injected credential is applied after this, so no `Connection` trick
 * can remove it.
 * Back (vendor → consumer): only hop-by-hop headers (and those the vendor named in `Connection`)
 * are dropped; everything else passes unchanged.
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

const DROPPED_FROM_CONSUMER = new Set([
  'authorization',
  'host',
  'content-length',
  'expect',
  'forwarded',
  'x-real-ip',
  'x-http-method-override',
  'x-http-method',
  'x-method-override',
  'x-original-url',
  'x-rewrite-url',
  'x-original-uri',
]);

function connectionNamed(value: string | undefined): Set<string> {
  const names = new Set<string>();
  for (const part of (value ?? '').split(',')) {
    const name = part.trim().toLowerCase();
    if (name) names.add(name);
  }
  return names;
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
    const name = rawName.toLowerCase();
    if (HOP_BY_HOP.has(name) || named.has(name) || DROPPED_FROM_CONSUMER.has(name)) continue;
    if (name.startsWith('proxy-') || name.startsWith('x-forwarded-') || name.startsWith('keygate-')) continue;
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
    if (HOP_BY_HOP.has(name) || named.has(name) || name === 'content-length') continue;
    if (name === 'set-cookie') cookies.push(value);
    else headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
  }
  return { headers, cookies };
}
