import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import type { IncomingMessage, RequestListener, Server, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { SignatureV4 } from '@smithy/signature-v4';

/**
 * Who may call the embedded stand-ins (DynamoDB, Kinesis, KMS): only this local gateway.
 *
 * Each data directory holds a random access key pair (`local-credentials.json`, mode 0600, inside the
 * 0700 data dir); the gateway's AWS SDK clients are configured with it and sign every call with
 * SigV4, as they do in AWS. Every stand-in VERIFIES that signature (the SDK's own signer recomputes
 * it over the method, path, query, the signed headers and the body hash) before the service sees a
 * byte. A request without a valid signature by that key gets 403 and nothing else: no body read, no
 * operation run. Another OS user cannot read the key (directory 0700, file 0600), and the proxy
 * never presents it upstream (it signs nothing with it), so neither can reach the data.
 *
 * Signatures are accepted within 5 minutes of the stand-in's clock (AWS allows 15; both ends are on
 * this machine).
 */
export interface LocalCredentials {
  accessKeyId: string;
  secretAccessKey: string;
}

export const CREDENTIALS_FILE = 'local-credentials.json';
const MAX_SKEW_MS = 5 * 60_000;
/** Largest signed body a stand-in reads (dynalite's own cap is 16 MB; KMS and Kinesis are smaller). */
const MAX_SIGNED_BODY_BYTES = 16 * 1024 * 1024;

function randomCredentials(): LocalCredentials {
  return {
    accessKeyId: `KGLOCAL${randomBytes(8).toString('hex').toUpperCase()}`,
    secretAccessKey: randomBytes(30).toString('base64url'),
  };
}

/**
 * The data directory's key pair, created (mode 0600) on first start; without a data directory
 * (tests, in memory) a fresh pair per start.
 */
export function loadLocalCredentials(dataDir?: string): LocalCredentials {
  if (!dataDir) return randomCredentials();
  const file = join(dataDir, CREDENTIALS_FILE);
  if (!existsSync(file)) {
    writeFileSync(file, JSON.stringify(randomCredentials()), { mode: 0o600, flag: 'wx' });
  }
  chmodSync(file, 0o600);
  const parsed = JSON.parse(readFileSync(file, 'utf8')) as Partial<LocalCredentials>;
  if (typeof parsed.accessKeyId !== 'string' || typeof parsed.secretAccessKey !== 'string')
    throw new Error(`${file} does not hold an access key pair`);
  return { accessKeyId: parsed.accessKeyId, secretAccessKey: parsed.secretAccessKey };
}

/** SHA-256 in the shape the SDK's signer takes (a hash, or an HMAC when given a key). */
type SourceData = string | ArrayBuffer | ArrayBufferView;
const bytes = (data: SourceData): string | Uint8Array =>
  typeof data === 'string'
    ? data
    : ArrayBuffer.isView(data)
      ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
      : new Uint8Array(data);

class NodeSha256 {
  private readonly hash;
  constructor(secret?: SourceData) {
    this.hash = secret === undefined ? createHash('sha256') : createHmac('sha256', bytes(secret));
  }
  update(data: SourceData) {
    this.hash.update(bytes(data));
  }
  async digest(): Promise<Uint8Array> {
    return this.hash.digest();
  }
}

interface SignedScope {
  accessKeyId: string;
  date: string;
  region: string;
  service: string;
  signedHeaders: string[];
  signature: string;
}

const AUTH =
  /^AWS4-HMAC-SHA256 Credential=([^/,\s]+)\/(\d{8})\/([^/,\s]+)\/([^/,\s]+)\/aws4_request,\s*SignedHeaders=([a-z0-9;-]+),\s*Signature=([0-9a-f]{64})$/;

function parseAuthorization(header: string | undefined): SignedScope | undefined {
  const m = header === undefined ? null : AUTH.exec(header);
  if (!m) return undefined;
  return {
    accessKeyId: m[1]!,
    date: m[2]!,
    region: m[3]!,
    service: m[4]!,
    signedHeaders: m[5]!.split(';'),
    signature: m[6]!,
  };
}

function parseAmzDate(value: unknown): Date | undefined {
  const m = typeof value === 'string' ? /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(value) : null;
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s] = m.map(Number) as number[];
  return new Date(Date.UTC(y!, mo! - 1, d!, h!, mi!, s!));
}

function sameText(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function deny(res: ServerResponse) {
  res.writeHead(403, { 'content-type': 'application/x-amz-json-1.0', connection: 'close' });
  res.end(JSON.stringify({ __type: 'AccessDeniedException', message: 'Access denied' }));
}

async function readCapped(req: IncomingMessage): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_SIGNED_BODY_BYTES) return undefined;
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/**
 * One signer per credentials, region and service: a signer keeps the signing keys it derived (four
 * HMACs per day and scope), so verifying a request costs the canonical request and one HMAC.
 */
const signers = new WeakMap<LocalCredentials, Map<string, SignatureV4>>();
const MAX_CACHED_SCOPES = 16;
function signerFor(credentials: LocalCredentials, scope: SignedScope): SignatureV4 {
  let byScope = signers.get(credentials);
  if (!byScope) {
    byScope = new Map();
    signers.set(credentials, byScope);
  }
  const key = `${scope.region}/${scope.service}`;
  let signer = byScope.get(key);
  if (!signer) {
    signer = new SignatureV4({
      credentials,
      region: scope.region,
      service: scope.service,
      sha256: NodeSha256,
      applyChecksum: false,
    });
    // keygate's own clients use a handful of scopes; the scope is not verified yet, so a caller
    // inventing new ones gets a signer of its own, not a place in the map.
    if (byScope.size < MAX_CACHED_SCOPES) byScope.set(key, signer);
  }
  return signer;
}

/** True when `body` and the request's headers carry a valid SigV4 signature by `credentials`. */
async function hasValidSignature(
  req: IncomingMessage,
  body: Buffer,
  scope: SignedScope,
  credentials: LocalCredentials,
  now = Date.now(),
): Promise<boolean> {
  const signingDate = parseAmzDate(req.headers['x-amz-date']);
  if (!signingDate || Math.abs(now - signingDate.getTime()) > MAX_SKEW_MS) return false;
  if (!scope.signedHeaders.includes('host') || !scope.signedHeaders.includes('x-amz-date')) return false;
  // A declared payload hash must be the body's: the signer would otherwise trust the header.
  const declared = req.headers['x-amz-content-sha256'];
  if (declared !== undefined && declared !== createHash('sha256').update(body).digest('hex')) return false;
  const headers: Record<string, string> = {};
  for (const name of scope.signedHeaders) {
    const value = req.headers[name];
    if (value === undefined) return false;
    headers[name] = Array.isArray(value) ? value.join(',') : value;
  }
  const rawUrl = req.url ?? '/';
  const q = rawUrl.indexOf('?');
  const query: Record<string, string | string[]> = {};
  for (const [k, v] of new URLSearchParams(q >= 0 ? rawUrl.slice(q + 1) : '')) {
    const prev = query[k];
    query[k] = prev === undefined ? v : [...(Array.isArray(prev) ? prev : [prev]), v];
  }
  const signed = await signerFor(credentials, scope).sign(
    {
      method: req.method ?? 'GET',
      protocol: 'http:',
      hostname: headers.host ?? '',
      path: decodeURIComponent(q >= 0 ? rawUrl.slice(0, q) : rawUrl),
      query,
      headers,
      body,
    },
    { signingDate, signingRegion: scope.region, signingService: scope.service },
  );
  const expected = parseAuthorization(String(signed.headers.authorization));
  return expected !== undefined && sameText(expected.signature, scope.signature);
}

/**
 * Wraps a stand-in's request listener: only requests signed with `credentials` reach it (with the
 * body replayed); every other request is answered 403 before its body is read.
 */
export function requireGatewayCaller(credentials: LocalCredentials, inner: RequestListener): RequestListener {
  return (req, res) => {
    void (async () => {
      const scope = parseAuthorization(req.headers.authorization);
      if (!scope || !sameText(scope.accessKeyId, credentials.accessKeyId)) return deny(res);
      let body: Buffer | undefined;
      try {
        body = await readCapped(req);
      } catch {
        res.destroy();
        return;
      }
      if (!body || !(await hasValidSignature(req, body, scope, credentials).catch(() => false)))
        return deny(res);
      // The service reads the request as a stream: hand it one that replays the verified body.
      const replay = Object.assign(new PassThrough(), {
        headers: req.headers,
        rawHeaders: req.rawHeaders,
        method: req.method,
        url: req.url,
        httpVersion: req.httpVersion,
        socket: req.socket,
        connection: req.socket,
      }) as unknown as IncomingMessage;
      inner(replay, res);
      (replay as unknown as PassThrough).end(body);
    })();
  };
}

/** Puts `requireGatewayCaller` in front of a server's existing request listener (dynalite, kinesalite). */
export function guardServer(server: Server, credentials: LocalCredentials): void {
  const listeners = server.listeners('request') as RequestListener[];
  if (listeners.length !== 1) throw new Error('expected exactly one request listener to guard');
  server.removeAllListeners('request');
  server.on('request', requireGatewayCaller(credentials, listeners[0]!));
}
