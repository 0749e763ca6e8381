import { randomUUID } from 'node:crypto';
import {
  createServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
  STATUS_CODES,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Duplex, Writable } from 'node:stream';
import type { Context } from 'aws-lambda';
import type { HttpEvent, HttpResult } from '../lambdas/shared/http.ts';
import { isStreamingHandler, PRELUDE_DELIMITER, type StreamingHandler } from './lambda-streaming.ts';

/**
 * The local stand-in for API Gateway (HTTP API, payload format 2.0) and Lambda function URLs: each
 * HTTP request becomes the event the deployed handler receives, and the handler's result becomes
 * the HTTP answer. The path and query string reach the handler byte-for-byte as sent.
 *
 * What the front refuses itself, before any handler runs (as API Gateway does): methods it does
 * not route (`CONNECT`, `TRACE`, anything outside `SERVED_METHODS`) with 405 and a JSON body; bodies
 * over `MAX_PAYLOAD_BYTES` with 413 — at once when `Content-Length` says so (the body is not read,
 * and `Expect: 100-continue` gets no 100), or as soon as the streamed body passes the cap (the rest
 * is not read; the connection is closed). The front never parses a body: the handlers do, after
 * authenticating the caller.
 *
 * A handler marked as response-streaming (`awslambda.streamifyResponse`, see lambda-streaming.ts)
 * is driven as Lambda drives it: it gets a writable response stream, whose metadata prelude becomes
 * the status and headers and whose bytes go to the client as they are written; a client that goes
 * away destroys that stream.
 */
export type LambdaHttpHandler = (
  event: HttpEvent,
  context: Context,
) => Promise<HttpResult | string | undefined>;

export interface HttpFront {
  server: Server;
  url: string;
  /**
   * Stops accepting at once. With `drainMs` > 0 (graceful shutdown), requests already in the
   * handler may finish and be answered for up to that long; requests arriving meanwhile on open
   * connections get a 503. Then every connection is closed.
   */
  close(drainMs?: number): Promise<void>;
}

/** API Gateway's own payload cap. */
export const MAX_PAYLOAD_BYTES = 10 * 1024 * 1024;

/** The methods API Gateway routes (`ANY`); everything else is answered 405 by the front. */
export const SERVED_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

const TEXT_TYPES = /^(?:text\/|application\/(?:json|[\w.+-]+\+json|x-www-form-urlencoded|xml|javascript))/i;

function lambdaContext(requestId: string, functionName: string, timeoutMs: number): Context {
  const deadline = Date.now() + timeoutMs;
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:local:000000000000:function:${functionName}`,
    memoryLimitInMB: '1024',
    awsRequestId: requestId,
    logGroupName: `/aws/lambda/${functionName}`,
    logStreamName: 'local',
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}

/** Builds the HTTP API v2 event for a request whose body has been read. */
export function toEvent(req: IncomingMessage, body: Buffer, requestId: string): HttpEvent {
  const rawUrl = req.url ?? '/';
  const q = rawUrl.indexOf('?');
  const rawPath = q >= 0 ? rawUrl.slice(0, q) : rawUrl;
  const rawQueryString = q >= 0 ? rawUrl.slice(q + 1) : '';
  const headers: Record<string, string> = {};
  const cookies: string[] = [];
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i]!.toLowerCase();
    const value = req.rawHeaders[i + 1]!;
    if (name === 'cookie') cookies.push(...value.split(/;\s*/).filter(Boolean));
    else headers[name] = name in headers ? `${headers[name]},${value}` : value;
  }
  // As API Gateway does: the scheme the client used, whatever the client claimed (routing.ts).
  headers['x-forwarded-proto'] = 'http';
  const queryStringParameters: Record<string, string> = {};
  if (rawQueryString) {
    for (const [k, v] of new URLSearchParams(rawQueryString)) {
      queryStringParameters[k] = k in queryStringParameters ? `${queryStringParameters[k]},${v}` : v;
    }
  }
  // A content-encoded body is bytes whatever its media type (gzip'd JSON is not UTF-8 text).
  const isText =
    body.length === 0 || (TEXT_TYPES.test(headers['content-type'] ?? '') && !headers['content-encoding']);
  const now = new Date();
  const method = (req.method ?? 'GET').toUpperCase();
  const sourceIp = req.socket.remoteAddress?.replace(/^::ffff:/, '') ?? '127.0.0.1';
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath,
    rawQueryString,
    cookies: cookies.length > 0 ? cookies : undefined,
    headers,
    queryStringParameters: rawQueryString ? queryStringParameters : undefined,
    requestContext: {
      accountId: '000000000000',
      apiId: 'local',
      domainName: headers.host ?? 'localhost',
      domainPrefix: 'local',
      http: {
        method,
        path: rawPath,
        protocol: `HTTP/${req.httpVersion}`,
        sourceIp,
        userAgent: headers['user-agent'] ?? '',
      },
      requestId,
      routeKey: '$default',
      stage: '$default',
      time: now.toUTCString(),
      timeEpoch: now.getTime(),
    },
    body: body.length > 0 ? (isText ? body.toString('utf8') : body.toString('base64')) : undefined,
    isBase64Encoded: body.length > 0 && !isText,
  };
}

function writeResult(res: ServerResponse, result: HttpResult | string | undefined, requestId: string) {
  if (result === undefined || typeof result === 'string' || !('statusCode' in result)) {
    // Payload 2.0: a bare value is a 200 JSON answer.
    res.writeHead(200, { 'content-type': 'application/json', 'apigw-requestid': requestId });
    res.end(typeof result === 'string' ? result : JSON.stringify(result ?? null));
    return;
  }
  const headers: Record<string, string | string[]> = { 'apigw-requestid': requestId };
  for (const [k, v] of Object.entries(result.headers ?? {})) headers[k.toLowerCase()] = String(v);
  if (result.cookies?.length) headers['set-cookie'] = result.cookies;
  const body =
    result.body === undefined
      ? undefined
      : Buffer.from(result.body, result.isBase64Encoded ? 'base64' : 'utf8');
  res.writeHead(result.statusCode ?? 200, headers);
  res.end(body);
}

function gatewayError(res: ServerResponse, status: number, message: string, headers = {}) {
  const body = JSON.stringify({ message });
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    ...headers,
  });
  res.end(body);
}

/** How long a refused client may keep the half-closed connection to read its answer. */
const LINGER_MS = 1000;

/**
 * Answers and closes a connection whose request body is left unread. Node would destroy the socket
 * right after the answer, and a peer still sending would then get a reset instead of the answer:
 * send FIN instead (the answer is complete), stop reading, and destroy the socket shortly after.
 */
function answerAndClose(
  req: IncomingMessage,
  res: ServerResponse,
  status: number,
  message: string,
  headers = {},
) {
  const socket = req.socket;
  socket.destroySoon = () => {
    socket.end();
    setTimeout(() => socket.destroy(), LINGER_MS).unref();
  };
  req.pause();
  gatewayError(res, status, message, { ...headers, connection: 'close' });
}

const ALLOW = { allow: [...SERVED_METHODS].join(', ') };

/**
 * Refuses what the front never serves, before reading any body; true when it answered. Unread
 * bodies cannot be skipped on a kept-alive connection, so those answers close it.
 */
function refusedUpfront(req: IncomingMessage, res: ServerResponse): boolean {
  if (!SERVED_METHODS.has((req.method ?? '').toUpperCase())) {
    answerAndClose(req, res, 405, 'Method Not Allowed', ALLOW);
    return true;
  }
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > MAX_PAYLOAD_BYTES) {
    answerAndClose(req, res, 413, 'Request Entity Too Large');
    return true;
  }
  return false;
}

/** Reads the body up to the cap; undefined (and a 413 sent, the connection closing) past it. */
function readBodyCapped(req: IncomingMessage, res: ServerResponse): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_PAYLOAD_BYTES) return void chunks.push(chunk);
      // Answer now and stop reading: the rest of the body is never buffered, and the connection
      // closes once the answer is out.
      req.off('data', onData);
      answerAndClose(req, res, 413, 'Request Entity Too Large');
      resolve(undefined);
    };
    req.on('data', onData);
    req.once('end', () => resolve(Buffer.concat(chunks)));
    req.once('error', reject);
    req.once('aborted', () => reject(new Error('aborted')));
  });
}

/** A JSON error written straight to a socket no request object stands for; the connection closes. */
function answerOnSocket(socket: Duplex, status: number, message: string, headers = '') {
  const body = JSON.stringify({ message });
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json\r\n${headers}` +
      `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}

/** `CONNECT` never reaches a handler (Node hands it over as a raw socket): a 405 on that socket. */
function refuseConnect(_req: IncomingMessage, socket: Duplex) {
  answerOnSocket(socket, 405, 'Method Not Allowed', `allow: ${ALLOW.allow}\r\n`);
}

/**
 * A request Node's parser refuses (a raw `…` or a space in the URL, a malformed header, headers
 * too large) never reaches a handler either. Node's own answer is a 400 with an EMPTY body; answer
 * with the JSON form every other error has.
 */
function refuseMalformed(error: Error & { code?: string }, socket: Duplex) {
  if (!socket.writable || error.code === 'ECONNRESET') return void socket.destroy();
  if (error.code === 'HPE_HEADER_OVERFLOW')
    return answerOnSocket(socket, 431, 'Request Header Fields Too Large');
  if (error.code === 'ERR_HTTP_REQUEST_TIMEOUT') return answerOnSocket(socket, 408, 'Request Timeout');
  answerOnSocket(
    socket,
    400,
    'Bad Request: the request is not valid HTTP (a URL must be percent-encoded: no spaces, no raw non-ASCII characters such as …)',
  );
}

const PRELUDE_TYPE = 'application/vnd.awslambda.http-integration-response';

/**
 * The response stream a streaming handler writes to: with the HTTP integration content type, the
 * first bytes up to 8 NUL bytes are the JSON metadata (statusCode, headers, multiValueHeaders,
 * cookies); everything after is the body, written through to the client with its backpressure.
 */
class LocalResponseStream extends Writable {
  private contentType = 'application/octet-stream';
  private pending: Buffer = Buffer.alloc(0);
  private started = false;
  /** A body byte (or the end) went to the response: the headers went with it. */
  private bodyWritten = false;
  private readonly res: ServerResponse;
  private readonly requestId: string;

  constructor(res: ServerResponse, requestId: string) {
    super();
    this.res = res;
    this.requestId = requestId;
    res.on('close', () => {
      if (!res.writableFinished) this.destroy(new Error('the client went away'));
    });
    // The handler learns of a failed stream through its own writes and pipes; nothing else listens.
    this.on('error', () => undefined);
  }

  setContentType(type: string): void {
    this.contentType = type;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    let body = chunk;
    if (!this.started) {
      if (this.contentType === PRELUDE_TYPE) {
        this.pending = Buffer.concat([this.pending, chunk]);
        const at = this.pending.indexOf(PRELUDE_DELIMITER);
        if (at < 0) {
          callback();
          return;
        }
        try {
          this.writeHead(JSON.parse(this.pending.subarray(0, at).toString('utf8')) as Prelude);
        } catch {
          callback(new Error('malformed response metadata'));
          return;
        }
        body = this.pending.subarray(at + PRELUDE_DELIMITER.length);
        this.pending = Buffer.alloc(0);
      } else {
        this.writeHead({ statusCode: 200, headers: { 'content-type': this.contentType } });
      }
    }
    if (body.length === 0) {
      callback();
      return;
    }
    this.bodyWritten = true;
    if (this.res.write(body)) callback();
    else this.res.once('drain', () => callback());
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (!this.started) this.writeHead({ statusCode: 200, headers: { 'content-type': this.contentType } });
    this.res.end(() => callback());
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.res.writableFinished) {
      if (!this.res.headersSent && !this.res.destroyed) gatewayError(this.res, 502, 'Bad Gateway');
      else this.res.destroy();
    }
    callback(error);
  }

  private writeHead(prelude: Prelude): void {
    this.started = true;
    const headers: Record<string, string | string[]> = { 'apigw-requestid': this.requestId };
    for (const [k, v] of Object.entries(prelude.headers ?? {})) headers[k.toLowerCase()] = String(v);
    for (const [k, v] of Object.entries(prelude.multiValueHeaders ?? {}))
      headers[k.toLowerCase()] = v.map(String);
    if (prelude.cookies?.length) headers['set-cookie'] = prelude.cookies;
    this.res.writeHead(prelude.statusCode ?? 200, headers);
    // Headers go out within this turn of the event loop, not later with the first body byte: the
    // client sees the status at once. A small answer whose body is written in the same turn takes
    // the headers with its first chunk (one write(2) instead of two).
    setImmediate(() => {
      if (!this.bodyWritten && !this.res.writableEnded && !this.res.destroyed) this.res.flushHeaders();
    });
  }
}

interface Prelude {
  statusCode?: number;
  headers?: Record<string, unknown>;
  multiValueHeaders?: Record<string, unknown[]>;
  cookies?: string[];
}

async function invokeStreaming(
  handler: StreamingHandler,
  event: HttpEvent,
  context: Context,
  res: ServerResponse,
  requestId: string,
): Promise<void> {
  const stream = new LocalResponseStream(res, requestId);
  try {
    await handler(event, stream, context);
    if (!stream.writableEnded && !stream.destroyed) stream.end();
  } catch {
    if (!res.headersSent && !res.destroyed) gatewayError(res, 500, 'Internal Server Error');
    else res.destroy();
  }
}

/** Serves `handler` on 127.0.0.1:`port` (0 picks a free port). */
export async function startHttpFront(options: {
  port: number;
  host?: string;
  functionName: string;
  handler: LambdaHttpHandler | StreamingHandler;
  /** The function's timeout as the handler's context reports it; default 30 s. */
  timeoutMs?: number;
}): Promise<HttpFront> {
  let draining = false;
  let inFlight = 0;
  let drained: (() => void) | undefined;
  const timeoutMs = options.timeoutMs ?? 30_000;
  const server = createServer(async (req, res) => {
    if (draining) {
      res.shouldKeepAlive = false;
      return gatewayError(res, 503, 'Service Unavailable');
    }
    inFlight++;
    res.once('close', () => {
      inFlight--;
      if (inFlight === 0) drained?.();
    });
    const requestId = randomUUID();
    if (refusedUpfront(req, res)) return;
    let body: Buffer | undefined;
    try {
      body = await readBodyCapped(req, res);
    } catch {
      // The client went away mid-body (or sent a malformed one): nothing to answer, nothing to call.
      res.destroy();
      return;
    }
    if (!body) return;
    try {
      const event = toEvent(req, body, requestId);
      const context = lambdaContext(requestId, options.functionName, timeoutMs);
      if (draining) res.shouldKeepAlive = false;
      if (isStreamingHandler(options.handler))
        return await invokeStreaming(options.handler, event, context, res, requestId);
      const result = await (options.handler as LambdaHttpHandler)(event, context);
      writeResult(res, result, requestId);
    } catch {
      // What API Gateway answers when the function itself fails.
      if (!res.headersSent) gatewayError(res, 500, 'Internal Server Error');
      else res.destroy();
    }
  });
  server.keepAliveTimeout = 65_000;
  server.on('connect', refuseConnect);
  server.on('clientError', refuseMalformed);
  // `Expect: 100-continue` with a body over the cap: 413 instead of asking for the body.
  server.on('checkContinue', (req, res) => {
    if (refusedUpfront(req, res)) return;
    res.writeContinue();
    server.emit('request', req, res);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host ?? '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    server,
    url: `http://127.0.0.1:${port}`,
    close: (drainMs = 0) =>
      new Promise<void>((resolve) => {
        draining = true;
        server.close(() => resolve());
        server.closeIdleConnections();
        if (drainMs <= 0 || inFlight === 0) return server.closeAllConnections();
        const deadline = setTimeout(() => server.closeAllConnections(), drainMs);
        drained = () => {
          clearTimeout(deadline);
          server.closeAllConnections();
        };
      }),
  };
}
