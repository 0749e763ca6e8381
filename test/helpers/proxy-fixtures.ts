import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { DeleteCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import { sealSecret } from '../../lambdas/crypto/envelope.ts';
import { generateSecret, hashSecret } from '../../lambdas/crypto/secrets.ts';
import { createProxyHandler, type ProxyHandlerOptions } from '../../lambdas/data-plane/proxy-api.ts';
import { streamingProxyLambda } from '../../lambdas/data-plane/streaming-lambda.ts';
import type { Effect, Rule } from '../../lambdas/rules/types.ts';
import type { Deps } from '../../lambdas/shared/deps.ts';
import { keys } from '../../lambdas/storage/keys.ts';
import type { ProxyCredentialView, ProxySnapshot } from '../../lambdas/storage/snapshot-types.ts';
import { type HttpFront, startHttpFront } from '../../local/http-front.ts';
import type { StreamingHandler } from '../../local/lambda-streaming.ts';
import { PROXY_FUNCTION_TIMEOUT_MS } from '../../local/stack.ts';

/**
 * Another proxy front over the given dependencies, with its own handler options (faulty clients,
 * outcome capture, deadlines); the caller keeps it and closes it after the test.
 */
export function startProxyFront(deps: Deps, options: ProxyHandlerOptions = {}): Promise<HttpFront> {
  return startHttpFront({
    port: 0,
    functionName: 'keygate-proxy-test',
    timeoutMs: PROXY_FUNCTION_TIMEOUT_MS,
    handler: streamingProxyLambda(createProxyHandler(deps, options)) as unknown as StreamingHandler,
  });
}

/**
 * Writes proxy snapshots straight into the cell table, as the Core API's snapshot writer does:
 * the snapshot item is the contract between the two, and target secrets are sealed through the real
 * KMS client against the KMS stand-in, exactly as the Core API seals them.
 */
export const REGION = 'us-east-1';

export function randomId(prefix: string): string {
  return `${prefix}${randomBytes(9).toString('base64url')}`;
}

export interface SnapshotSpec {
  proxyId?: string;
  clientId?: string;
  targetBaseURL: string;
  /** Proxy credential: apiKey with a fresh kg_live_ key unless given. */
  proxyCredential?: Partial<ProxyCredentialView> | null;
  proxyKey?: string;
  target?: {
    type: string;
    secret: Record<string, unknown>;
    credentialId?: string;
    expiresAt?: string;
  } | null;
  rules?: Partial<ProxySnapshot['rules']>;
  proxyDefaultRuleEffect?: Effect;
  targetDefaultRuleEffect?: Effect;
  proxyActive?: boolean;
  perMinute?: number;
  perDay?: number;
  version?: number;
}

export interface Written {
  proxyId: string;
  clientId: string;
  proxyKey: string;
  snapshot: ProxySnapshot;
}

export async function buildSnapshot(deps: Deps, spec: SnapshotSpec): Promise<Written> {
  const cell = deps.cells[REGION]!;
  const proxyId = spec.proxyId ?? randomId('prx_');
  const clientId = spec.clientId ?? randomId('cli_');
  const proxyKey = spec.proxyKey ?? generateSecret('kg_live_');
  const proxyCredential =
    spec.proxyCredential === null
      ? undefined
      : {
          credentialId: randomId('cred_'),
          credentialAuthType: 'apiKey',
          secretHash: hashSecret(proxyKey),
          ...spec.proxyCredential,
        };
  let targetCredential: ProxySnapshot['targetCredential'];
  if (spec.target !== null) {
    const t = spec.target ?? {
      type: 'apiKey',
      secret: { key: 'sk_live_vendor_secret_1', headerName: 'X-Vendor-Key' },
    };
    const credentialId = t.credentialId ?? randomId('cred_');
    targetCredential = {
      credentialId,
      credentialAuthType: t.type,
      sealedSecret: await sealSecret(cell.kms, cell.kmsKeyId, JSON.stringify(t.secret), {
        clientId,
        credentialId,
      }),
      expiresAt: t.expiresAt,
    };
  }
  const snapshot: ProxySnapshot = {
    proxyId,
    clientId,
    proxyRegion: REGION,
    proxyActive: spec.proxyActive ?? true,
    proxyDefaultRuleEffect: spec.proxyDefaultRuleEffect ?? 'deny',
    proxyMaxRequestsPerMinute: spec.perMinute,
    proxyMaxRequestsPerDay: spec.perDay,
    target: {
      targetId: randomId('tgt_'),
      targetBaseURL: spec.targetBaseURL,
      targetDefaultRuleEffect: spec.targetDefaultRuleEffect ?? 'deny',
    },
    proxyCredential,
    targetCredential,
    rules: { proxyCredential: [], targetCredential: [], proxy: [], target: [], ...spec.rules },
    version: spec.version ?? 1,
    builtAt: new Date().toISOString(),
  };
  return { proxyId, clientId, proxyKey, snapshot };
}

export async function putSnapshot(deps: Deps, snapshot: ProxySnapshot): Promise<void> {
  const cell = deps.cells[REGION]!;
  await cell.ddb.send(
    new PutCommand({
      TableName: cell.tableName,
      Item: { ...keys.proxySnapshot(snapshot.proxyId), type: 'PROXY_SNAPSHOT', ...snapshot },
    }),
  );
}

export async function deleteSnapshot(deps: Deps, proxyId: string): Promise<void> {
  const cell = deps.cells[REGION]!;
  await cell.ddb.send(new DeleteCommand({ TableName: cell.tableName, Key: keys.proxySnapshot(proxyId) }));
}

/** Builds and writes a snapshot in one go. */
export async function writeSnapshot(deps: Deps, spec: SnapshotSpec): Promise<Written> {
  const written = await buildSnapshot(deps, spec);
  await putSnapshot(deps, written.snapshot);
  return written;
}

/** The reference walk-through's rule: GET under /v2/inventory/ only. */
export const INVENTORY_RULE: Rule = {
  ruleId: 'rule_inventory',
  effect: 'allow',
  priority: 10,
  methods: ['GET'],
  path: { path: { pattern: '^/v2/inventory/.*' }, presence: 'must_exist' },
  notes: 'inventory-service reads stock',
};

export interface Recorded {
  method: string;
  /** The request target exactly as it arrived (path and query). */
  url: string;
  headers: Record<string, string | string[] | undefined>;
  rawHeaders: string[];
  body: Buffer;
}

export interface RecordingUpstream {
  url: string;
  port: number;
  received: Recorded[];
  /** Replace to change what the upstream answers. */
  respond: (req: Recorded, res: import('node:http').ServerResponse) => void;
  server: Server;
  close(): Promise<void>;
}

/** A real HTTP server on 127.0.0.1 that records every request it receives. */
export async function startRecordingUpstream(): Promise<RecordingUpstream> {
  const upstream: RecordingUpstream = {
    url: '',
    port: 0,
    received: [],
    respond: (req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': 'yes' });
      res.end(JSON.stringify({ ok: true, path: req.url }));
    },
    server: undefined as unknown as Server,
    close: async () => undefined,
  };
  const server = createServer(async (req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const rec: Recorded = {
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      rawHeaders: req.rawHeaders,
      body: Buffer.concat(chunks),
    };
    upstream.received.push(rec);
    upstream.respond(rec, res);
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  upstream.url = `http://127.0.0.1:${port}`;
  upstream.port = port;
  upstream.server = server;
  upstream.close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  return upstream;
}

export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  body: Buffer;
  json(): any;
}

/** Sends one request with the request target exactly as given (no URL normalisation on the way). */
export async function send(
  base: string,
  options: {
    method?: string;
    path: string;
    headers?: Record<string, string | string[]>;
    body?: string | Buffer;
  },
): Promise<Answer> {
  const { request } = await import('node:http');
  const url = new URL(base);
  return new Promise<Answer>((resolve, reject) => {
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        method: options.method ?? 'GET',
        path: options.path,
        headers: options.headers,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const body = Buffer.concat(chunks);
          const text = body.toString('utf8');
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            text,
            body,
            json: () => JSON.parse(text),
          });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

/** Writes raw bytes to a server and returns the raw answer (for shapes no HTTP client will send). */
export async function sendRaw(base: string, raw: string): Promise<string> {
  const { connect } = await import('node:net');
  const url = new URL(base);
  return new Promise<string>((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname, () => socket.end(raw));
    let out = '';
    socket.on('data', (d) => {
      out += d.toString('latin1');
    });
    socket.on('end', () => resolve(out));
    socket.on('close', () => resolve(out));
    socket.on('error', (e) => (out ? resolve(out) : reject(e)));
    socket.setTimeout(5000, () => {
      socket.destroy();
      resolve(out);
    });
  });
}
