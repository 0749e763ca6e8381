import { createServer, type Server, type Socket } from 'node:net';
import { GetCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { isAwsDependencyError } from '../../lambdas/shared/errors.ts';
import { errorToResult } from '../../lambdas/shared/http.ts';
import { createDocumentClient } from '../../lambdas/storage/dynamodb-client.ts';

describe('AWS clients against a dependency that accepts and never answers', () => {
  let server: Server;
  let endpoint: string;
  const sockets = new Set<Socket>();
  beforeAll(async () => {
    // Accepts, reads nothing, answers nothing.
    server = createServer((socket) => {
      sockets.add(socket);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    endpoint = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });

  it('time out with an error the Core API answers as 503 (fail closed), instead of hanging', async () => {
    const ddb = createDocumentClient({
      region: 'us-east-1',
      endpoint,
      credentials: { accessKeyId: 'x', secretAccessKey: 'y' },
      requestTimeoutMs: 200,
      maxAttempts: 1,
    });
    const error = await ddb
      .send(new GetCommand({ TableName: 'kg', Key: { pk: 'a', sk: 'b' } }))
      .catch((e) => e);
    ddb.destroy();
    expect(error).toBeInstanceOf(Error);
    expect(isAwsDependencyError(error)).toBe(true);
    expect(errorToResult(error, 'r1')).toMatchObject({ statusCode: 503 });
  });
});

describe('Core API answers when a dependency fails', () => {
  it('names the store in its one log line (StoreErrors) and answers a bare 503', () => {
    const lines: string[] = [];
    const original = { out: process.stdout.write, err: process.stderr.write };
    const capture = ((chunk: unknown) => {
      lines.push(String(chunk));
      return true;
    }) as typeof process.stdout.write;
    process.stdout.write = capture;
    process.stderr.write = capture;
    let result: ReturnType<typeof errorToResult>;
    try {
      const throttled = Object.assign(new Error('Rate exceeded'), {
        name: 'ProvisionedThroughputExceededException',
        $metadata: { httpStatusCode: 400 },
      });
      result = errorToResult(throttled, 'r2');
    } finally {
      process.stdout.write = original.out;
      process.stderr.write = original.err;
    }
    expect(result.statusCode).toBe(503);
    expect(JSON.parse(result.body!)).toEqual({
      message: 'A backing service is unavailable; try again later',
      code: 'service_unavailable',
      requestId: 'r2',
    });
    const line = JSON.parse(lines.find((l) => l.includes('dependency unavailable'))!);
    expect(line).toMatchObject({ dependency: 'store', errorName: 'ProvisionedThroughputExceededException' });
  });
});
