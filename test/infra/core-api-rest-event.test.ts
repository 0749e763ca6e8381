import { describe, expect, it } from '@jest/globals';
import type { APIGatewayProxyEvent } from 'aws-lambda';
import { createCoreApiHandler } from '../../lambdas/control-plane/core-api.ts';
import { configFromEnv } from '../../lambdas/shared/config.ts';
import { createDeps } from '../../lambdas/shared/deps.ts';
import { cellsEnvironment } from '../../lib/cell-names.ts';

// The deployed Core API sits behind a REST API (lib/core-api.ts: WAF needs a REST stage), which
// sends payload format 1.0 events; the local front and the other tests send 2.0. These calls need
// no store (public route, refusals before any lookup), so nothing here reaches the network.
const handler = createCoreApiHandler(
  createDeps(
    configFromEnv({
      AWS_REGION: 'us-east-1',
      KEYGATE_TABLE_NAME: 'keygate-us-east-1',
      KEYGATE_CELLS: cellsEnvironment(['us-east-1']),
    }),
    { dynamodb: 'http://127.0.0.1:9', kms: 'http://127.0.0.1:9' },
  ),
);

/** A REST API (payload 1.0) Lambda proxy event, as API Gateway builds it for `/{proxy+}`. */
function restEvent(method: string, path: string, headers: Record<string, string> = {}, body?: string) {
  return {
    resource: '/{proxy+}',
    path,
    httpMethod: method,
    headers: { Host: 'abc.execute-api.us-east-1.amazonaws.com', ...headers },
    multiValueHeaders: {},
    queryStringParameters: null,
    multiValueQueryStringParameters: null,
    pathParameters: { proxy: path.slice(1) },
    stageVariables: null,
    requestContext: { stage: 'v1', httpMethod: method, path: `/v1${path}` },
    body: body ?? null,
    isBase64Encoded: false,
  } as unknown as APIGatewayProxyEvent;
}

async function call(event: APIGatewayProxyEvent) {
  const result = (await handler(event as never, {} as never)) as { statusCode: number; body?: string };
  return { status: result.statusCode, body: result.body ? JSON.parse(result.body) : undefined };
}

describe('Core API behind a REST API (payload 1.0 events)', () => {
  it('routes a public route by the 1.0 path and method', async () => {
    const res = await call(restEvent('GET', '/openapi.json'));
    expect(res.status).toBe(200);
    expect(res.body.openapi).toMatch(/^3\./);
  });

  it('matches routes with path parameters, and refuses a missing token with 401 JSON', async () => {
    const res = await call(restEvent('GET', '/clients/cl_123'));
    expect(res.status).toBe(401);
    expect(res.body.code).toBe('unauthorized');
  });

  it('reads the header whatever its case (REST APIs keep the caller’s casing)', async () => {
    const res = await call(restEvent('GET', '/users/me', { AUTHORIZATION: 'Bearer kg_user_notvalid' }));
    expect(res.status).toBe(401);
  });

  it('an unknown route is a 404 JSON error, not a 500', async () => {
    const res = await call(restEvent('GET', '/no/such/route'));
    expect(res.status).toBe(404);
    expect(res.body.code).toBe('route_not_found');
  });
});
