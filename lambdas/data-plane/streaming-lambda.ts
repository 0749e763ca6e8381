import middy from '@middy/core';
import { executionModeStreamifyResponse } from '@middy/core/StreamifyResponse';
import type { APIGatewayProxyEvent, Context } from 'aws-lambda';
import type { HttpEvent } from '../shared/http.ts';
import type { ProxyResult } from './proxy-api.ts';

/**
 * The proxy as a response-streaming Lambda function (`awslambda.streamifyResponse`, through middy's
 * streaming execution mode): the handler resolves as soon as the vendor's status and headers are
 * in; they go out at once as the response's metadata prelude, then the body is piped as it arrives.
 * When the consumer goes away the runtime's response stream fails, the pipe destroys the body, and
 * the vendor call is aborted (stream-answer.ts).
 *
 * The deployed endpoint is an API Gateway REST API in STREAM transfer mode, whose Lambda proxy
 * integration delivers the REST (1.0) event; the handler speaks the HTTP API (2.0) event, which the
 * local front produces. `toHttpEvent` maps the one onto the other, and the answer's cookies become
 * the `multiValueHeaders` the REST format reads.
 */
export type ProxyFunction = (event: HttpEvent, context?: Context) => Promise<ProxyResult>;

export function streamingProxyLambda(proxy: ProxyFunction) {
  return middy<HttpEvent | APIGatewayProxyEvent, ProxyResult>({
    executionMode: executionModeStreamifyResponse,
  })
    .use(restEvents())
    .handler((event, context) => proxy(event as HttpEvent, context));
}

/** middy middleware: REST (1.0) events in, REST-shaped metadata out; HTTP API (2.0) events untouched. */
function restEvents() {
  const rest = new WeakSet<object>();
  return {
    before: (request: { event: HttpEvent | APIGatewayProxyEvent }) => {
      const event = request.event;
      if (!('httpMethod' in event)) return;
      request.event = toHttpEvent(event);
      rest.add(request.event);
    },
    after: (request: { event: unknown; response: ProxyResult | undefined }) => {
      const response = request.response;
      if (!rest.has(request.event as object) || !response?.cookies?.length) return;
      const { cookies, ...others } = response;
      request.response = { ...others, multiValueHeaders: { 'set-cookie': cookies } } as ProxyResult;
    },
  };
}

/**
 * A REST API proxy event as the HTTP API event the handler reads. The REST format has no raw query
 * string: it is rebuilt from the multi-value parameters (percent-encoded again, in their order).
 */
export function toHttpEvent(event: APIGatewayProxyEvent): HttpEvent {
  const headers: Record<string, string> = {};
  const cookies: string[] = [];
  const multi = event.multiValueHeaders ?? {};
  const names = new Set([...Object.keys(event.headers ?? {}), ...Object.keys(multi)]);
  for (const original of names) {
    const values = multi[original] ?? [event.headers?.[original] ?? ''];
    const name = original.toLowerCase();
    if (name === 'cookie') {
      for (const v of values) cookies.push(...(v ?? '').split(/;\s*/).filter(Boolean));
      continue;
    }
    const joined = values.filter((v) => v !== undefined).join(',');
    headers[name] = name in headers ? `${headers[name]},${joined}` : joined;
  }
  const query: string[] = [];
  const params = event.multiValueQueryStringParameters ?? {};
  for (const [k, vs] of Object.entries(params))
    for (const v of vs ?? []) query.push(`${encodeURIComponent(k)}=${encodeURIComponent(v)}`);
  const rawQueryString = query.join('&');
  const ctx = event.requestContext;
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath: event.path,
    rawQueryString,
    cookies: cookies.length > 0 ? cookies : undefined,
    headers,
    queryStringParameters: undefined,
    requestContext: {
      accountId: ctx.accountId,
      apiId: ctx.apiId,
      domainName: ctx.domainName ?? headers.host ?? '',
      domainPrefix: ctx.domainPrefix ?? '',
      http: {
        method: event.httpMethod.toUpperCase(),
        path: event.path,
        protocol: ctx.protocol,
        sourceIp: ctx.identity.sourceIp,
        userAgent: ctx.identity.userAgent ?? '',
      },
      requestId: ctx.requestId,
      routeKey: '$default',
      stage: ctx.stage,
      time: new Date(ctx.requestTimeEpoch).toUTCString(),
      timeEpoch: ctx.requestTimeEpoch,
    },
    body: event.body ?? undefined,
    isBase64Encoded: event.isBase64Encoded,
  };
}
