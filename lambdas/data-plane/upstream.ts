import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns';
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import { isPublicIp } from '../net/address-policy.ts';
import { allowlistHint, isAllowlisted, isOwnPort } from '../net/target-allowlist.ts';

/**
 * The call out. Connects only where the address policy allows: the target's name is resolved when
 * a connection is opened, EVERY resolved address is checked, and the socket connects to the checked
 * addresses themselves (the lookup hands them to the socket), so there is no window for DNS
 * rebinding between check and connect. TLS keeps the name for SNI and certificate checks; `Host`
 * is the name. Host:port pairs on the deployment's allowlist may be private and plain http (local
 * use); keygate's own ports (local mode) are refused on any host before any connection.
 * Redirects are never followed (3xx goes back to the consumer as is). `openUpstream` hands the
 * answer back as soon as its headers arrive (the proxy streams the body); `callUpstream` buffers a
 * small answer within a deadline and a size cap (token endpoints, JWKS).
 */
export type UpstreamFailure = 'timeout' | 'unreachable' | 'address_refused' | 'too_large';

export class UpstreamError extends Error {
  readonly kind: UpstreamFailure;
  /** What the local operator can set to lift the refusal (local mode only); safe to show. */
  readonly hint?: string;
  constructor(kind: UpstreamFailure, message: string, hint?: string) {
    super(message);
    this.name = 'UpstreamError';
    this.kind = kind;
    this.hint = hint;
  }
}

export interface UpstreamPolicy {
  /** `host:port` / bare `host` entries that may be private and plain http (../net/target-allowlist.ts). */
  allowlist: readonly string[];
  /** Ports keygate itself listens on (local mode): never called, on any host. */
  ownPorts?: readonly number[];
  /** Deadline for the whole exchange (connect, send, receive), in ms. */
  timeoutMs: number;
  /** Largest response body accepted, in bytes. */
  maxResponseBytes: number;
}

export interface UpstreamRequest {
  /** Scheme, host and port are taken from here; its path and query are ignored. */
  url: URL;
  /**
   * Path and query exactly as they go on the request line. Not re-parsed through WHATWG URL, which
   * would re-encode some bytes (`'` in a query, for one): what the rules checked is what is sent.
   */
  pathAndQuery: string;
  method: string;
  /** Lower-case names; `host` is set here from the URL. */
  headers: Record<string, string>;
  body?: Buffer;
}

export interface UpstreamResponse {
  status: number;
  /** Raw header pairs in the order received (duplicates kept). */
  rawHeaders: string[];
  body: Buffer;
}

const agentOptions = { keepAlive: true, keepAliveMsecs: 1000, maxSockets: 256, maxFreeSockets: 64 };
const httpAgent = new http.Agent(agentOptions);
const httpsAgent = new https.Agent(agentOptions);

function hostOf(url: URL): string {
  return url.hostname.replace(/^\[(.*)\]$/, '$1').toLowerCase();
}

function refused(message: string, hint?: string): UpstreamError {
  return new UpstreamError('address_refused', message, hint);
}

type LookupCallback = (
  err: NodeJS.ErrnoException | null,
  address: string | LookupAddress[],
  family?: number,
) => void;

/** A socket lookup that resolves, checks every address, and yields only checked addresses. */
function checkedLookup(allowPrivate: boolean) {
  return (hostname: string, options: LookupOptions, callback: LookupCallback) => {
    const family = options.family === 'IPv4' ? 4 : options.family === 'IPv6' ? 6 : (options.family ?? 0);
    dnsLookup(hostname, { all: true, family }, (err, addresses) => {
      if (err) return callback(err, '');
      if (addresses.length === 0) return callback(refused('the target name has no address'), '');
      if (!allowPrivate && addresses.some((a) => !isPublicIp(a.address)))
        return callback(refused('the target resolves to a non-public address'), '');
      if (options.all) return callback(null, addresses);
      const first = addresses[0]!;
      return callback(null, first.address, first.family);
    });
  };
}
const lookupPublic = checkedLookup(false);
const lookupAny = checkedLookup(true);

/** Why a URL may not be called at all, before any connection; undefined when it may. */
export function urlRefusal(
  url: URL,
  allowlist: readonly string[],
  ownPorts?: readonly number[],
): string | undefined {
  const host = hostOf(url);
  if (isOwnPort(url, ownPorts)) return "the target port is one of keygate's own services";
  const allowed = isAllowlisted(url, allowlist);
  if (url.protocol !== 'https:' && !(allowed && url.protocol === 'http:')) return 'targets must use https';
  if (!allowed && isIP(host) !== 0 && !isPublicIp(host)) return 'the target address is not public';
  return undefined;
}

/** The deadlines of one streamed exchange, in ms (see docs/streaming.md). */
export interface StreamDeadlines {
  /** From the request sent to the vendor's status line and headers. */
  firstByteMs: number;
  /** Longest silence between two body chunks (and between the headers and the first chunk). */
  idleMs: number;
  /** The whole exchange, from the call out to the last byte. */
  totalMs: number;
}

/** An answer whose status and headers arrived; its body is still coming. */
export interface UpstreamStream {
  status: number;
  /** Raw header pairs in the order received (duplicates kept). */
  rawHeaders: string[];
  /** The body as it arrives. Destroying it aborts the vendor call (the socket is closed). */
  body: IncomingMessage;
}

/**
 * The headers `openUpstream` puts on the wire for `req`: its own, plus `host` (from the URL) and
 * `content-length` (the body's, or 0 for a method that carries one). A request signer signs these.
 */
export function wireHeaders(req: UpstreamRequest): Record<string, string | number> {
  const headers: Record<string, string | number> = { ...req.headers, host: req.url.host };
  if (req.body && req.body.length > 0) headers['content-length'] = req.body.length;
  else if (!['GET', 'HEAD', 'OPTIONS', 'DELETE'].includes(req.method)) headers['content-length'] = 0;
  return headers;
}

/**
 * Sends one request and resolves as soon as the status line and headers arrive, within
 * `firstByteMs`; the body is left to the caller, unread. `signal` aborts the call at any point.
 */
export function openUpstream(
  req: UpstreamRequest,
  policy: Pick<UpstreamPolicy, 'allowlist' | 'ownPorts'> & { firstByteMs: number },
  signal?: AbortSignal,
): Promise<UpstreamStream> {
  const refusal = urlRefusal(req.url, policy.allowlist, policy.ownPorts);
  if (refusal) {
    // Local mode (own ports known): the target was saved under another allowlist; say what to set.
    const local = policy.ownPorts && !isOwnPort(req.url, policy.ownPorts);
    return Promise.reject(refused(refusal, local ? allowlistHint(req.url) : undefined));
  }
  const allowPrivate = isAllowlisted(req.url, policy.allowlist);
  const secure = req.url.protocol === 'https:';
  const headers = wireHeaders(req);

  return new Promise<UpstreamStream>((resolve, reject) => {
    let settled = false;
    const fail = (error: UpstreamError) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      reject(error);
      outgoing.destroy();
    };
    const options = {
      method: req.method,
      hostname: req.url.hostname.replace(/^\[(.*)\]$/, '$1'),
      port: req.url.port || (secure ? 443 : 80),
      path: req.pathAndQuery,
      headers,
      agent: secure ? httpsAgent : httpAgent,
      lookup: allowPrivate ? lookupAny : lookupPublic,
      servername: secure && isIP(hostOf(req.url)) === 0 ? hostOf(req.url) : undefined,
    };
    const outgoing = (secure ? https : http).request(options, (res: IncomingMessage) => {
      if (settled) {
        res.destroy();
        return;
      }
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      // A late failure of the socket surfaces on the body (the caller's concern from here on).
      outgoing.on('error', () => undefined);
      resolve({ status: res.statusCode ?? 502, rawHeaders: res.rawHeaders, body: res });
    });
    const onAbort = () => fail(new UpstreamError('unreachable', 'the call was abandoned'));
    signal?.addEventListener('abort', onAbort, { once: true });
    const timer = setTimeout(
      () => fail(new UpstreamError('timeout', 'the upstream did not answer in time')),
      policy.firstByteMs,
    );
    outgoing.on('error', (error) => {
      if (error instanceof UpstreamError) return fail(error);
      fail(new UpstreamError('unreachable', 'the upstream could not be reached'));
    });
    if (signal?.aborted) return onAbort();
    outgoing.end(req.body && req.body.length > 0 ? req.body : undefined);
  });
}

/** Sends one request and buffers the answer, within the policy's deadline and size cap. */
export async function callUpstream(req: UpstreamRequest, policy: UpstreamPolicy): Promise<UpstreamResponse> {
  const started = Date.now();
  const res = await openUpstream(req, {
    allowlist: policy.allowlist,
    ownPorts: policy.ownPorts,
    firstByteMs: policy.timeoutMs,
  });
  const declared = Number(res.body.headers['content-length']);
  if (Number.isFinite(declared) && declared > policy.maxResponseBytes) {
    res.body.destroy();
    throw new UpstreamError('too_large', 'the upstream answer is over the size cap');
  }
  return new Promise<UpstreamResponse>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const finish = (error: UpstreamError | undefined) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (!error)
        return resolve({ status: res.status, rawHeaders: res.rawHeaders, body: Buffer.concat(chunks) });
      res.body.destroy();
      reject(error);
    };
    const timer = setTimeout(
      () => finish(new UpstreamError('timeout', 'the upstream did not answer in time')),
      Math.max(0, policy.timeoutMs - (Date.now() - started)),
    );
    res.body.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > policy.maxResponseBytes)
        return finish(new UpstreamError('too_large', 'the upstream answer is over the size cap'));
      chunks.push(chunk);
    });
    res.body.on('end', () => finish(undefined));
    res.body.on('error', () => finish(new UpstreamError('unreachable', 'the upstream answer was cut off')));
    res.body.on('aborted', () => finish(new UpstreamError('unreachable', 'the upstream answer was cut off')));
  });
}
