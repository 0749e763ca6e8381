import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns';
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import { isPublicIp } from '../net/address-policy.ts';
import { isAllowlisted, isOwnPort } from '../net/target-allowlist.ts';

/**
 * The call out. Connects only where the address policy allows: the target's name is resolved when
 * a connection is opened, EVERY resolved address is checked, and the socket connects to the checked
 * addresses themselves (the lookup hands them to the socket), so there is no window for DNS
 * rebinding between check and connect. TLS keeps the name for SNI and certificate checks; `Host`
 * is the name. Host:port pairs on the deployment's allowlist may be private and plain http (local
 * use); keygate's own ports (local mode) are refused on any host before any connection.
 * Redirects are never followed (3xx goes back to the consumer as is), the whole exchange has a
 * deadline, and a response larger than the cap is abandoned.
 */
export type UpstreamFailure = 'timeout' | 'unreachable' | 'address_refused' | 'too_large';

export class UpstreamError extends Error {
  readonly kind: UpstreamFailure;
  constructor(kind: UpstreamFailure, message: string) {
    super(message);
    this.name = 'UpstreamError';
    this.kind = kind;
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

function refused(message: string): UpstreamError {
  return new UpstreamError('address_refused', message);
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

/** Sends one request and buffers the answer, within the policy's deadline and size cap. */
export function callUpstream(req: UpstreamRequest, policy: UpstreamPolicy): Promise<UpstreamResponse> {
  const refusal = urlRefusal(req.url, policy.allowlist, policy.ownPorts);
  if (refusal) return Promise.reject(refused(refusal));
  const allowPrivate = isAllowlisted(req.url, policy.allowlist);
  const secure = req.url.protocol === 'https:';
  const headers: Record<string, string | number> = { ...req.headers, host: req.url.host };
  if (req.body && req.body.length > 0) headers['content-length'] = req.body.length;
  else if (!['GET', 'HEAD', 'OPTIONS', 'DELETE'].includes(req.method)) headers['content-length'] = 0;

  return new Promise<UpstreamResponse>((resolve, reject) => {
    let settled = false;
    const finish = (error: Error | undefined, value?: UpstreamResponse) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (error) reject(error);
      else resolve(value!);
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
      const declared = Number(res.headers['content-length']);
      if (Number.isFinite(declared) && declared > policy.maxResponseBytes) {
        finish(new UpstreamError('too_large', 'the upstream answer is over the size cap'));
        res.destroy();
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > policy.maxResponseBytes) {
          finish(new UpstreamError('too_large', 'the upstream answer is over the size cap'));
          res.destroy();
          return;
        }
        chunks.push(chunk);
      });
      res.on('end', () =>
        finish(undefined, {
          status: res.statusCode ?? 502,
          rawHeaders: res.rawHeaders,
          body: Buffer.concat(chunks),
        }),
      );
      res.on('error', () => finish(new UpstreamError('unreachable', 'the upstream answer was cut off')));
      res.on('aborted', () => finish(new UpstreamError('unreachable', 'the upstream answer was cut off')));
    });
    const timer = setTimeout(() => {
      finish(new UpstreamError('timeout', 'the upstream did not answer in time'));
      outgoing.destroy();
    }, policy.timeoutMs);
    outgoing.on('error', (error) => {
      if (error instanceof UpstreamError) return finish(error);
      finish(new UpstreamError('unreachable', 'the upstream could not be reached'));
    });
    outgoing.end(req.body && req.body.length > 0 ? req.body : undefined);
  });
}
