import { request } from 'node:http';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import type { HttpEvent } from '../../lambdas/shared/http.ts';
import { type HttpFront, MAX_PAYLOAD_BYTES, startHttpFront } from '../../local/http-front.ts';
import { type LocalStack, startLocalStack } from '../../local/stack.ts';

// The local HTTP front refuses what it never serves before any handler runs: unrouted methods
// (CONNECT, TRACE, …) with 405 and a JSON body, oversized bodies with 413 without reading them
// whole; and nothing parses a body before the caller is authenticated.

let front: HttpFront;
const calls: HttpEvent[] = [];

beforeAll(async () => {
  front = await startHttpFront({
    port: 0,
    functionName: 'test',
    handler: async (event: HttpEvent) => {
      calls.push(event);
      return { statusCode: 200, body: String(event.body?.length ?? 0) };
    },
  });
});
afterAll(() => front.close());

/** Sends raw bytes and collects everything the server answers until it closes (or `untilBody`). */
function raw(bytes: string, untilBody = false): Promise<{ status: number; headers: string; body: string }> {
  const { port } = new URL(front.url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1');
    let text = '';
    const done = () => {
      const [head = '', body = ''] = text.split('\r\n\r\n');
      resolve({ status: Number(head.split(' ')[1]), headers: head.toLowerCase(), body });
      socket.destroy();
    };
    socket.on('data', (d) => {
      text += d;
      const length = /content-length: (\d+)/i.exec(text);
      const split = text.indexOf('\r\n\r\n');
      if (untilBody && length && split >= 0 && text.length - split - 4 >= Number(length[1])) done();
    });
    socket.on('end', done);
    socket.on('error', reject);
    socket.write(bytes);
  });
}

describe('methods the front does not route', () => {
  it('answers CONNECT with 405 and a JSON body', async () => {
    const res = await raw('CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n');
    expect(res.status).toBe(405);
    expect(res.headers).toContain('content-type: application/json');
    expect(JSON.parse(res.body)).toEqual({ message: 'Method Not Allowed' });
    expect(calls).toHaveLength(0);
  });

  it.each(['TRACE', 'PROPFIND', 'MKCOL', 'LINK'])(
    'answers %s with 405 and an Allow header',
    async (method) => {
      const res = await raw(`${method} /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc`);
      expect(res.status).toBe(405);
      expect(res.headers).toMatch(/allow: get, head, post, put, patch, delete, options/);
      expect(JSON.parse(res.body)).toEqual({ message: 'Method Not Allowed' });
      expect(calls).toHaveLength(0);
    },
  );

  it('still serves the routed methods', async () => {
    for (const method of ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']) {
      const res = await fetch(`${front.url}/x`, { method, body: method === 'GET' ? undefined : 'abc' });
      expect(res.status).toBe(200);
    }
    expect(calls).toHaveLength(6);
    calls.length = 0;
  });
});

describe('requests the HTTP parser refuses', () => {
  it.each([
    [
      'a raw … in the URL (a pagination URL pasted from docs)',
      'GET /x?nextToken=… HTTP/1.1\r\nHost: a\r\n\r\n',
      400,
    ],
    ['a space in the URL', 'GET /a b HTTP/1.1\r\nHost: a\r\n\r\n', 400],
    ['a header line without a colon', 'GET /x HTTP/1.1\r\nHost a\r\n\r\n', 400],
    [
      'headers over the size limit',
      `GET /x HTTP/1.1\r\nHost: a\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`,
      431,
    ],
  ])('answers %s with a JSON error body, never an empty one', async (_what, bytes, status) => {
    const res = await raw(bytes);
    expect(res.status).toBe(status);
    expect(res.headers).toContain('content-type: application/json');
    expect(JSON.parse(res.body)).toEqual({ message: expect.any(String) });
    expect(calls).toHaveLength(0);
  });
});

describe('bodies over the cap', () => {
  it('answers 413 on a declared Content-Length over the cap without waiting for the body', async () => {
    // Only the headers and 5 bytes are ever sent: an answer proves the front did not wait for more.
    const res = await raw(
      `POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: ${60 * 1024 * 1024}\r\n\r\nhello`,
      true,
    );
    expect(res.status).toBe(413);
    expect(JSON.parse(res.body)).toEqual({ message: 'Request Entity Too Large' });
    expect(calls).toHaveLength(0);
  });

  it('answers 413 to Expect: 100-continue over the cap, without asking for the body', async () => {
    const res = await raw(
      `PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: ${MAX_PAYLOAD_BYTES + 1}\r\n\r\n`,
      true,
    );
    expect(res.status).toBe(413);
    expect(calls).toHaveLength(0);
  });

  it('answers 413 as soon as a streamed (chunked) body passes the cap, and stops reading', async () => {
    const total = 60 * 1024 * 1024;
    const chunk = Buffer.alloc(256 * 1024, 0x61);
    let sent = 0;
    const { port } = new URL(front.url);
    const status = await new Promise<number>((resolve, reject) => {
      let answered = false;
      const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/x' }, (res) => {
        answered = true;
        resolve(res.statusCode ?? 0);
        res.resume();
        req.destroy();
      });
      req.on('error', (e) => (answered ? undefined : reject(e)));
      const pump = () => {
        while (!answered && sent < total) {
          sent += chunk.length;
          if (!req.write(chunk)) return void req.once('drain', pump);
        }
        if (!answered) req.end();
      };
      pump();
    });
    expect(status).toBe(413);
    expect(calls).toHaveLength(0);
    // The client could only push the cap plus what socket buffers hold before the answer came: the
    // front stopped reading long before the 60 MB were through.
    expect(sent).toBeLessThan(MAX_PAYLOAD_BYTES + 24 * 1024 * 1024);
    expect(sent).toBeLessThan(total);
  });

  it('passes a body under the cap whole to the handler', async () => {
    const body = 'b'.repeat(2 * 1024 * 1024);
    const res = await fetch(`${front.url}/x`, {
      method: 'POST',
      body,
      headers: { 'content-type': 'text/plain' },
    });
    expect(await res.text()).toBe(String(body.length));
    expect(calls.at(-1)?.body).toBe(body);
    calls.length = 0;
  });
});

describe('nothing parsed before authentication (Core API through the front)', () => {
  let stack: LocalStack;
  beforeAll(async () => {
    stack = await startLocalStack({ telemetryPoller: false });
  });
  afterAll(() => stack.close());

  it('refuses an unauthenticated large JSON body with 401 without parsing it', async () => {
    const big = JSON.stringify({
      name: 'x'.repeat(200_000),
      nested: Array.from({ length: 5000 }, (_, i) => ({ i })),
    });
    const parse = jest.spyOn(JSON, 'parse');
    try {
      for (const authorization of [undefined, 'Bearer kg_not-a-real-token', 'Basic Zm9vOmJhcg==']) {
        const res = await fetch(`${stack.apiUrl}/users`, {
          method: 'POST',
          body: big,
          headers: { 'content-type': 'application/json', ...(authorization ? { authorization } : {}) },
        });
        expect(res.status).toBe(401);
        expect((await res.json()) as unknown).toMatchObject({ code: expect.any(String) });
      }
      const largest = Math.max(0, ...parse.mock.calls.map(([text]) => String(text).length));
      expect(largest).toBeLessThan(10_000);
    } finally {
      parse.mockRestore();
    }
  });
});
