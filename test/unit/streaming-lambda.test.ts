import { describe, expect, it } from '@jest/globals';
import type { APIGatewayProxyEvent } from 'aws-lambda';
import { DEFAULT_DEADLINES, deadlinesFor } from '../../lambdas/data-plane/proxy-api.ts';
import { toHttpEvent } from '../../lambdas/data-plane/streaming-lambda.ts';

describe('deadlinesFor', () => {
  it('uses the documented defaults when the proxy sets none', () => {
    expect(deadlinesFor({}, DEFAULT_DEADLINES)).toEqual({
      firstByteMs: 60_000,
      idleMs: 300_000,
      totalMs: 900_000,
    });
  });

  it("takes the proxy's own values over the defaults, each on its own", () => {
    expect(deadlinesFor({ proxyTimeouts: { idleMs: 5000 } }, DEFAULT_DEADLINES)).toEqual({
      firstByteMs: 60_000,
      idleMs: 5000,
      totalMs: 900_000,
    });
  });

  it("caps the total (and the first byte) at the function's remaining time, less a margin", () => {
    expect(deadlinesFor({ proxyTimeouts: { totalMs: 900_000 } }, DEFAULT_DEADLINES, 30_000)).toEqual({
      firstByteMs: 29_000,
      idleMs: 300_000,
      totalMs: 29_000,
    });
  });

  it('ignores stored values that are not positive numbers', () => {
    const odd = { proxyTimeouts: { firstByteMs: -1, idleMs: Number.NaN, totalMs: '5' as unknown as number } };
    expect(deadlinesFor(odd, DEFAULT_DEADLINES)).toEqual(DEFAULT_DEADLINES);
  });
});

describe('toHttpEvent (REST API proxy event → HTTP API event)', () => {
  const rest = {
    resource: '/api/{proxyId}/{proxy+}',
    path: '/api/prx_1/v1/chat/completions',
    httpMethod: 'post',
    headers: { Host: 'x.example', Cookie: 'a=1; b=2', 'X-Multi': 'last' },
    multiValueHeaders: { Host: ['x.example'], Cookie: ['a=1; b=2'], 'X-Multi': ['one', 'two'] },
    queryStringParameters: { q: 'b' },
    multiValueQueryStringParameters: { q: ['a b', 'c&d'], k: ['1'] },
    pathParameters: null,
    stageVariables: null,
    requestContext: {
      accountId: '1',
      apiId: 'api',
      protocol: 'HTTP/1.1',
      httpMethod: 'POST',
      identity: { sourceIp: '203.0.113.9', userAgent: 'sdk/1' },
      path: '/v1/api/prx_1/v1/chat/completions',
      stage: 'v1',
      requestId: 'req-1',
      requestTimeEpoch: 1_700_000_000_000,
      resourcePath: '/api/{proxyId}/{proxy+}',
    },
    body: 'eyJhIjoxfQ==',
    isBase64Encoded: true,
  } as unknown as APIGatewayProxyEvent;

  it('keeps method, path, every header value, cookies apart, the query re-encoded and the body as is', () => {
    const e = toHttpEvent(rest);
    expect(e.requestContext.http).toMatchObject({
      method: 'POST',
      path: '/api/prx_1/v1/chat/completions',
      sourceIp: '203.0.113.9',
      userAgent: 'sdk/1',
    });
    expect(e.rawPath).toBe('/api/prx_1/v1/chat/completions');
    expect(e.headers).toEqual({ host: 'x.example', 'x-multi': 'one,two' });
    expect(e.cookies).toEqual(['a=1', 'b=2']);
    expect(e.rawQueryString).toBe('q=a%20b&q=c%26d&k=1');
    expect([e.body, e.isBase64Encoded]).toEqual(['eyJhIjoxfQ==', true]);
  });
});
