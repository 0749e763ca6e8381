import { createHash } from 'node:crypto';
import { request } from 'node:http';
import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import OpenAI from 'openai';
import type { ProxyOutcome } from '../../lambdas/data-plane/outcome.ts';
import type { ProxySnapshot } from '../../lambdas/storage/snapshot-types.ts';
import { type LocalStack, startLocalStack } from '../../local/stack.ts';
import {
  completionChunk,
  deferred,
  type FakeMcp,
  type FakeVendor,
  startFakeMcp,
  startFakeVendor,
  startSse,
} from '../helpers/fake-vendors.ts';
import { captureLogs } from '../helpers/logs.ts';
import { buildSnapshot, putSnapshot } from '../helpers/proxy-fixtures.ts';

// Failures are provoked on purpose here: their ERROR lines go to a capture, not the output.
const logs = captureLogs();
afterAll(() => logs.restore());

/**
 * The streaming data plane through `npm start`'s own stack (the proxy's Lambda wrapper driven
 * through a response stream by the local front), with the official OpenAI and MCP SDKs against
 * local fake vendors. Liveness is proven with barriers, not clocks: the vendor sends its next chunk
 * only once the consumer saw the previous one, so any buffering hop deadlocks the test.
 */
const VENDOR_TOKEN = 'sk-vendor-secret-token';

let stack: LocalStack;
let vendor: FakeVendor;
let mcp: FakeMcp;
const outcomes: ProxyOutcome[] = [];
const outcomeWaiters = new Map<string, (o: ProxyOutcome) => void>();

function outcomeOf(requestId: string): Promise<ProxyOutcome> {
  const done = outcomes.find((o) => o.requestId === requestId);
  if (done) return Promise.resolve(done);
  return new Promise((resolve) => outcomeWaiters.set(requestId, resolve));
}

beforeAll(async () => {
  vendor = await startFakeVendor();
  mcp = await startFakeMcp();
  stack = await startLocalStack({
    targetAllowlist: [new URL(vendor.url).host, new URL(mcp.url).host],
    telemetryPoller: false,
    proxyOptions: {
      onOutcome: (o) => {
        outcomes.push(o);
        outcomeWaiters.get(o.requestId)?.(o);
      },
    },
  });
});

afterAll(async () => {
  await vendor.close();
  await mcp.close();
  await stack.close();
});

beforeEach(() => {
  outcomes.length = 0;
});

async function proxyTo(base: string, timeouts?: ProxySnapshot['proxyTimeouts']) {
  const written = await buildSnapshot(stack.deps, {
    targetBaseURL: base,
    target: { type: 'bearer', secret: { token: VENDOR_TOKEN, prefix: 'Bearer ' } },
    proxyDefaultRuleEffect: 'allow',
    targetDefaultRuleEffect: 'allow',
  });
  if (timeouts) written.snapshot.proxyTimeouts = timeouts;
  await putSnapshot(stack.deps, written.snapshot);
  return { ...written, base: `${stack.proxyUrl}/api/${written.proxyId}` };
}

function openai(baseURL: string, apiKey: string) {
  return new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 60_000 });
}

/** Reads a raw streamed answer through keygate, recording each chunk's arrival. */
function readStream(url: string, headers: Record<string, string>, onChunk?: (chunk: Buffer) => void) {
  return new Promise<{ status: number; headers: Record<string, unknown>; body: Buffer; error?: Error }>(
    (resolve, reject) => {
      const req = request(url, { headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => {
          chunks.push(c);
          onChunk?.(c);
        });
        const done = (error?: Error) =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), error });
        res.on('end', () => done());
        res.on('error', (e) => done(e));
        res.on('aborted', () => done(new Error('aborted')));
      });
      req.on('error', reject);
      req.end();
    },
  );
}

describe('OpenAI chat completions with stream: true', () => {
  it('delivers every chunk live: the vendor sends the next only after the SDK saw the previous', async () => {
    const p = await proxyTo(vendor.url);
    const acks: Array<() => void> = [];
    let vendorSawToken = '';
    vendor.handle = async (req, res) => {
      vendorSawToken = String(req.headers.authorization);
      startSse(res);
      for (let i = 0; i < 20; i++) {
        const ack = deferred();
        acks[i] = ack.resolve;
        res.write(completionChunk(i, `tok${i} `));
        await ack.promise;
      }
      res.end('data: [DONE]\n\n');
    };
    const stream = await openai(`${p.base}/v1`, p.proxyKey).chat.completions.create({
      model: 'fake-model',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
    });
    const got: string[] = [];
    for await (const chunk of stream) {
      got.push(chunk.choices[0]?.delta.content ?? '');
      acks[got.length - 1]?.();
    }
    expect(got).toEqual(Array.from({ length: 20 }, (_, i) => `tok${i} `));
    expect(vendorSawToken).toBe(`Bearer ${VENDOR_TOKEN}`);
  });

  it('keeps the chunk spacing the vendor sent (20 chunks, 50 ms apart)', async () => {
    const p = await proxyTo(vendor.url);
    const sentAt: number[] = [];
    vendor.handle = async (_req, res) => {
      startSse(res);
      for (let i = 0; i < 20; i++) {
        if (i > 0) await new Promise((r) => setTimeout(r, 50));
        sentAt.push(performance.now());
        res.write(completionChunk(i, `t${i}`));
      }
      res.end('data: [DONE]\n\n');
    };
    const stream = await openai(`${p.base}/v1`, p.proxyKey).chat.completions.create({
      model: 'fake-model',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
    });
    const arrivedAt: number[] = [];
    for await (const _chunk of stream) arrivedAt.push(performance.now());
    expect(arrivedAt).toHaveLength(20);
    // Never ahead of the vendor, and spread as it was sent: a buffered answer arrives as one burst.
    for (let i = 0; i < 20; i++) expect(arrivedAt[i]!).toBeGreaterThanOrEqual(sentAt[i]!);
    const sentSpan = sentAt[19]! - sentAt[0]!;
    const arrivedSpan = arrivedAt[19]! - arrivedAt[0]!;
    expect(arrivedSpan / sentSpan).toBeGreaterThan(0.5);
  });

  it('the first chunk reaches the client while the vendor still holds the rest (nothing waits for more)', async () => {
    // An invariant instead of a timing bound: the vendor sends the rest only once the client has
    // the first chunk. A gateway that buffered before the first byte could only pass the safety net.
    const p = await proxyTo(vendor.url);
    const firstSeen = deferred();
    let released = '';
    vendor.handle = async (_req, res) => {
      startSse(res);
      res.write(completionChunk(0, 'first'));
      released = await Promise.race([
        firstSeen.promise.then(() => 'by the client'),
        new Promise<string>((r) => setTimeout(() => r('by the safety timeout'), 20_000)),
      ]);
      res.write(completionChunk(1, 'second'));
      res.end('data: [DONE]\n\n');
    };
    const stream = await openai(`${p.base}/v1`, p.proxyKey).chat.completions.create({
      model: 'fake-model',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
    });
    const got: string[] = [];
    for await (const chunk of stream) {
      got.push(chunk.choices[0]?.delta.content ?? '');
      if (got.length === 1) firstSeen.resolve();
    }
    expect(got).toEqual(['first', 'second']);
    expect(released).toBe('by the client');
  }, 60_000);

  it('the status and headers reach the client while the vendor still holds every body byte', async () => {
    // Same invariant for the head: the vendor sends its first body byte only once the client has
    // the status. A front that held the headers back for the first body chunk deadlocks here.
    const p = await proxyTo(vendor.url);
    const statusSeen = deferred();
    let released = '';
    vendor.handle = async (_req, res) => {
      startSse(res);
      released = await Promise.race([
        statusSeen.promise.then(() => 'by the client'),
        new Promise<string>((r) => setTimeout(() => r('by the safety timeout'), 20_000)),
      ]);
      res.end('data: [DONE]\n\n');
    };
    const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request(
        `${p.base}/v1/chat/completions`,
        { headers: { authorization: p.proxyKey } },
        (r) => {
          statusSeen.resolve();
          let body = '';
          r.on('data', (c: Buffer) => (body += c));
          r.on('end', () => resolve({ status: r.statusCode ?? 0, body }));
        },
      );
      req.on('error', reject);
      req.end();
    });
    expect(res).toEqual({ status: 200, body: 'data: [DONE]\n\n' });
    expect(released).toBe('by the client');
  }, 60_000);
});

describe('large and long answers', () => {
  it('passes a 50 MB answer whole, with a matching checksum, and counts its bytes', async () => {
    const p = await proxyTo(vendor.url);
    const block = Buffer.alloc(64 * 1024);
    const total = 50 * 1024 * 1024;
    const sent = createHash('sha256');
    vendor.handle = async (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      for (let off = 0, n = 0; off < total; off += block.length, n++) {
        block.fill(n % 251);
        block.writeUInt32BE(n, 0);
        sent.update(block);
        if (!res.write(block)) await new Promise((r) => res.once('drain', r));
      }
      res.end();
    };
    const got = createHash('sha256');
    let size = 0;
    const res = await readStream(`${p.base}/embeddings`, { authorization: p.proxyKey }, (c) => {
      got.update(c);
      size += c.length;
    });
    expect([res.status, size, res.error]).toEqual([200, total, undefined]);
    expect(got.digest('hex')).toBe(sent.digest('hex'));
    const o = await outcomeOf(String(res.headers['keygate-request-id']));
    expect([o.end, o.bytes.out]).toEqual(['complete', total]);
    expect(o.durations.ttfbMs).toBeGreaterThanOrEqual(0);
  });

  it('holds a long, mostly idle stream to its end: no cut before the configured deadlines', async () => {
    // The 60 s stream, compressed: gaps just under the proxy's idle deadline, a span well
    // past it; the same code path serves the default deadlines (5 min idle, 15 min total).
    const p = await proxyTo(vendor.url, { idleMs: 2000, totalMs: 20_000 });
    vendor.handle = async (_req, res) => {
      startSse(res);
      for (let i = 0; i < 4; i++) {
        if (i > 0) await new Promise((r) => setTimeout(r, 1500));
        res.write(`data: ${i}\n\n`);
      }
      res.end();
    };
    const res = await readStream(`${p.base}/long`, { authorization: p.proxyKey });
    expect(res.body.toString()).toBe('data: 0\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\n');
    const o = await outcomeOf(String(res.headers['keygate-request-id']));
    expect(o.end).toBe('complete');
  });
});

describe('deadlines and aborts', () => {
  it('answers 504 when the vendor sends nothing before the first-byte deadline, and aborts it', async () => {
    const p = await proxyTo(vendor.url, { firstByteMs: 1000 });
    const vendorClosed = deferred();
    vendor.handle = (req) => {
      req.on('close', () => vendorClosed.resolve());
    };
    const res = await readStream(`${p.base}/slow`, { authorization: p.proxyKey });
    expect(res.status).toBe(504);
    expect(res.headers['keygate-proxy-code']).toBe('proxy-upstream-timeout');
    await vendorClosed.promise;
  });

  it('ends the stream cleanly at the idle deadline, after what was sent, and records why', async () => {
    const p = await proxyTo(vendor.url, { idleMs: 1000 });
    const vendorClosed = deferred();
    vendor.handle = (req, res) => {
      req.socket.on('close', () => vendorClosed.resolve());
      startSse(res);
      res.write('data: one\n\n');
    };
    const res = await readStream(`${p.base}/idle`, { authorization: p.proxyKey });
    expect([res.status, res.body.toString(), res.error]).toEqual([200, 'data: one\n\n', undefined]);
    const o = await outcomeOf(String(res.headers['keygate-request-id']));
    expect([o.end, o.status, o.bytes.out]).toEqual(['deadline', 200, 11]);
    await vendorClosed.promise;
  });

  it('ends a stream that never goes idle at the total deadline', async () => {
    const p = await proxyTo(vendor.url, { idleMs: 1000, totalMs: 2000 });
    let timer: NodeJS.Timeout | undefined;
    vendor.handle = (req, res) => {
      startSse(res);
      timer = setInterval(() => res.write('data: tick\n\n'), 200);
      req.socket.on('close', () => clearInterval(timer));
    };
    const start = performance.now();
    const res = await readStream(`${p.base}/ticks`, { authorization: p.proxyKey });
    clearInterval(timer);
    expect(performance.now() - start).toBeGreaterThanOrEqual(1900);
    expect(res.error).toBeUndefined();
    const o = await outcomeOf(String(res.headers['keygate-request-id']));
    expect(o.end).toBe('deadline');
    expect(o.bytes.out).toBe(res.body.length);
  });

  it('aborts the vendor call when the client goes away, and records client_abort', async () => {
    const p = await proxyTo(vendor.url);
    const vendorClosed = deferred();
    vendor.handle = (req, res) => {
      startSse(res);
      res.write('data: first\n\n');
      // Never ends by itself: only the abort can close it.
      req.socket.on('close', () => vendorClosed.resolve());
    };
    const requestId = await new Promise<string>((resolve, reject) => {
      const req = request(`${p.base}/generate`, { headers: { authorization: p.proxyKey } }, (res) => {
        res.once('data', () => {
          resolve(String(res.headers['keygate-request-id']));
          req.destroy();
        });
      });
      req.on('error', () => undefined);
      req.on('close', () => undefined);
      req.end();
      setTimeout(() => reject(new Error('no first chunk')), 10_000).unref();
    });
    await vendorClosed.promise;
    const o = await outcomeOf(requestId);
    expect(o.end).toBe('client_abort');
  });

  it('ends the stream when the vendor cuts its answer, and records vendor_abort', async () => {
    const p = await proxyTo(vendor.url);
    vendor.handle = (_req, res) => {
      startSse(res);
      res.write('data: partial\n\n');
      setTimeout(() => res.socket?.destroy(), 50);
    };
    const res = await readStream(`${p.base}/cut`, { authorization: p.proxyKey });
    expect(res.body.toString()).toBe('data: partial\n\n');
    const o = await outcomeOf(String(res.headers['keygate-request-id']));
    expect(o.end).toBe('vendor_abort');
  });
});

describe('MCP Streamable HTTP through keygate', () => {
  it('streams POST answers as SSE, holds the GET stream live, resumes after Last-Event-ID, forwards DELETE', async () => {
    const p = await proxyTo(mcp.url);
    const transport = new StreamableHTTPClientTransport(new URL(`${p.base}/mcp`), {
      requestInit: { headers: { authorization: p.proxyKey } },
    });
    const client = new Client({ name: 'keygate-test', version: '1.0.0' });
    const notified = [deferred(), deferred()];
    let listChanged = 0;
    client.setNotificationHandler(ToolListChangedNotificationSchema, async () => {
      notified[listChanged++]?.resolve();
    });
    await client.connect(transport);
    const sessionId = transport.sessionId!;
    expect(sessionId).toBeTruthy();
    expect((await client.listTools()).tools.map((t) => t.name)).toEqual(['count']);

    // Progress notifications on the POST's SSE answer, each seen before the tool goes on.
    const progress: number[] = [];
    const result = await client.callTool({ name: 'count', arguments: { n: 3 } }, undefined, {
      onprogress: (p) => {
        progress.push(p.progress);
        mcp.progressAcks.get(p.progress)?.();
      },
    });
    expect(progress).toEqual([1, 2, 3]);
    expect(result.content).toEqual([{ type: 'text', text: 'counted to 3' }]);

    // A notification on the standalone GET stream arrives while that stream is still open.
    await mcp.getStream(sessionId);
    const server = mcp.sessions.get(sessionId)!.server;
    server.sendToolListChanged();
    await notified[0]!.promise;
    expect(listChanged).toBe(1);

    // keygate passed the session id on every call after initialize.
    const afterInit = mcp.seen.slice(1);
    expect(afterInit.length).toBeGreaterThan(0);
    expect(afterInit.every((s) => s.sessionId === sessionId)).toBe(true);

    // Reconnect: a GET with Last-Event-ID gets what was sent after that event, replayed.
    server.sendToolListChanged();
    await notified[1]!.promise;
    const stored = mcp.events.filter(
      (e) => 'method' in e.message && e.message.method === 'notifications/tools/list_changed',
    );
    expect(stored).toHaveLength(2);
    const [firstEvent, secondEvent] = stored.slice(-2);
    const replay = await new Promise<string>((resolve, reject) => {
      const req = request(
        `${p.base}/mcp`,
        {
          headers: {
            authorization: p.proxyKey,
            accept: 'text/event-stream',
            'mcp-session-id': sessionId,
            'mcp-protocol-version': String(transport.protocolVersion ?? '2025-06-18'),
            'last-event-id': firstEvent!.id,
          },
        },
        (res) => {
          let text = '';
          res.on('data', (c: Buffer) => {
            text += c.toString();
            if (text.includes(secondEvent!.id)) {
              resolve(text);
              req.destroy();
            }
          });
          res.on('end', () => resolve(text));
        },
      );
      req.on('error', reject);
      req.end();
    });
    expect(replay).toContain(`id: ${secondEvent!.id}`);
    expect(mcp.seen.some((s) => s.method === 'GET' && s.lastEventId === firstEvent!.id)).toBe(true);

    // DELETE ends the session at the vendor.
    await transport.terminateSession();
    expect(mcp.closedSessions).toContain(sessionId);
    await client.close();
  });
});
