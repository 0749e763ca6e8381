import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import {
  type EventStore,
  StreamableHTTPServerTransport,
} from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';

/**
 * Local fake vendors for the streaming tests and the bench: an HTTP server whose behaviour a test
 * swaps per request, and an MCP server (the official SDK's Streamable HTTP transport, stateful, with
 * an event store so reconnects resume after Last-Event-ID).
 */
export interface FakeVendor {
  url: string;
  server: Server;
  handle: (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;
  close(): Promise<void>;
}

export async function startFakeVendor(): Promise<FakeVendor> {
  const vendor: FakeVendor = {
    url: '',
    server: createServer((req, res) => {
      Promise.resolve(vendor.handle(req, res)).catch(() => res.destroy());
    }),
    handle: (_req, res) => {
      res.end();
    },
    close: () =>
      new Promise<void>((resolve) => {
        vendor.server.close(() => resolve());
        vendor.server.closeAllConnections();
      }),
  };
  await new Promise<void>((r) => vendor.server.listen(0, '127.0.0.1', r));
  vendor.url = `http://127.0.0.1:${(vendor.server.address() as AddressInfo).port}`;
  return vendor;
}

/** One OpenAI chat-completion chunk as an SSE event. */
export function completionChunk(i: number, content: string): string {
  const chunk = {
    id: 'chatcmpl-fake',
    object: 'chat.completion.chunk',
    created: 0,
    model: 'fake-model',
    choices: [{ index: 0, delta: { content }, finish_reason: null }],
  };
  return `id: ${i}\ndata: ${JSON.stringify(chunk)}\n\n`;
}

export function startSse(res: ServerResponse): void {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  res.flushHeaders();
}

/** A promise with its resolver, for barriers between the fake vendor and the test's consumer. */
export function deferred<T = void>() {
  let resolve!: (value: T | PromiseLike<T>) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

export interface FakeMcp {
  url: string;
  /** Open sessions by id, with their server (to send notifications on the standalone GET stream). */
  sessions: Map<string, { server: McpServer; transport: StreamableHTTPServerTransport }>;
  /** Event ids stored for resumability, in order, with their message. */
  events: { id: string; streamId: string; message: JSONRPCMessage }[];
  closedSessions: string[];
  /** Requests as they arrived (method and the MCP headers), to check what keygate passed. */
  seen: { method: string; sessionId?: string; lastEventId?: string }[];
  /** Resolved when a standalone GET stream of the session was handed to the transport. */
  getStream(sessionId: string): Promise<void>;
  /** Barriers the `count` tool waits on between its progress notifications. */
  progressAcks: Map<number, () => void>;
  close(): Promise<void>;
}

export async function startFakeMcp(): Promise<FakeMcp> {
  const events: FakeMcp['events'] = [];
  // The SDK example store parses stream ids out of event ids and cannot parse its own standalone
  // stream's ('_GET_stream'): a plain ordered list does the same job without parsing.
  const eventStore: EventStore = {
    async storeEvent(streamId, message) {
      const id = `${streamId}|${String(events.length).padStart(6, '0')}`;
      events.push({ id, streamId, message });
      return id;
    },
    async replayEventsAfter(lastEventId, { send }) {
      const at = events.findIndex((e) => e.id === lastEventId);
      if (at < 0) return '';
      const streamId = events[at]!.streamId;
      for (const e of events.slice(at + 1)) if (e.streamId === streamId) await send(e.id, e.message);
      return streamId;
    },
  };
  const sessions: FakeMcp['sessions'] = new Map();
  const getStreams = new Map<string, ReturnType<typeof deferred<void>>>();
  const streamFor = (id: string) => {
    if (!getStreams.has(id)) getStreams.set(id, deferred());
    return getStreams.get(id)!;
  };
  const progressAcks = new Map<number, () => void>();
  const closedSessions: string[] = [];
  const seen: FakeMcp['seen'] = [];

  const newSession = () => {
    const server = new McpServer(
      { name: 'fake-mcp', version: '1.0.0' },
      { capabilities: { tools: { listChanged: true } } },
    );
    server.registerTool(
      'count',
      { description: 'Counts to n, one progress notification per step', inputSchema: { n: z.number() } },
      async ({ n }, extra) => {
        const token = extra._meta?.progressToken;
        for (let i = 1; i <= n; i++) {
          if (token !== undefined) {
            const ack = deferred();
            progressAcks.set(i, ack.resolve);
            await extra.sendNotification({
              method: 'notifications/progress',
              params: { progressToken: token, progress: i, total: n },
            });
            // The next step only once the client saw this one: a buffering hop deadlocks here.
            await ack.promise;
          }
        }
        return { content: [{ type: 'text', text: `counted to ${n}` }] };
      },
    );
    const transport: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      eventStore,
      onsessioninitialized: (id) => {
        sessions.set(id, { server, transport });
      },
      onsessionclosed: (id) => {
        closedSessions.push(id);
        sessions.delete(id);
      },
    });
    return { server, transport };
  };

  const http = createServer(async (req, res) => {
    const sessionId = req.headers['mcp-session-id'] as string | undefined;
    seen.push({
      method: req.method ?? '',
      sessionId,
      lastEventId: req.headers['last-event-id'] as string | undefined,
    });
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = chunks.length > 0 ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : undefined;
    const existing = sessionId ? sessions.get(sessionId) : undefined;
    if (existing) {
      const handled = existing.transport.handleRequest(req, res, body);
      if (req.method === 'GET') setImmediate(() => streamFor(sessionId!).resolve());
      await handled;
      return;
    }
    if (req.method === 'POST' && !sessionId) {
      const { server, transport } = newSession();
      await server.connect(transport);
      await transport.handleRequest(req, res, body);
      return;
    }
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message: 'unknown session' }, id: null }),
    );
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(http.address() as AddressInfo).port}`,
    sessions,
    events,
    closedSessions,
    seen,
    getStream: (id) => streamFor(id).promise,
    progressAcks,
    close: () =>
      new Promise<void>((resolve) => {
        http.close(() => resolve());
        http.closeAllConnections();
      }),
  };
}
