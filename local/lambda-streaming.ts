import type { Writable } from 'node:stream';

/**
 * The two pieces of the Lambda Node.js runtime that response-streaming handlers use, for the local
 * mode: `awslambda.streamifyResponse` (marks a handler as streaming, as the runtime does) and
 * `awslambda.HttpResponseStream.from` (writes the HTTP metadata prelude — JSON, then 8 NUL bytes —
 * before the body, the wire format function URLs and API Gateway read). The local front decodes
 * that same format (http-front.ts), so `npm start` streams through exactly the code path Lambda
 * runs. Installed only where the runtime's own members are missing.
 */
export const STREAMING_MARK = Symbol.for('aws.lambda.runtime.handler.streaming');
export const PRELUDE_DELIMITER = Buffer.alloc(8);

export type StreamingHandler = ((
  event: unknown,
  responseStream: Writable,
  context: unknown,
) => Promise<void>) & {
  [STREAMING_MARK]?: string;
};

interface LambdaGlobal {
  streamifyResponse(handler: StreamingHandler): StreamingHandler;
  HttpResponseStream: { from(stream: Writable, prelude: Record<string, unknown>): Writable };
}

const runtime: LambdaGlobal = {
  streamifyResponse(handler) {
    handler[STREAMING_MARK] = 'response';
    return handler;
  },
  HttpResponseStream: {
    from(stream, prelude) {
      (stream as Writable & { setContentType?(type: string): void }).setContentType?.(
        'application/vnd.awslambda.http-integration-response',
      );
      stream.write(JSON.stringify(prelude));
      stream.write(PRELUDE_DELIMITER);
      return stream;
    },
  },
};

// Member by member: other libraries (the SDK's invoke store) also hang things on this global.
const scope = globalThis as unknown as { awslambda?: Partial<LambdaGlobal> };
scope.awslambda ??= {};
scope.awslambda.streamifyResponse ??= runtime.streamifyResponse;
scope.awslambda.HttpResponseStream ??= runtime.HttpResponseStream;

export function isStreamingHandler(handler: unknown): handler is StreamingHandler {
  return typeof handler === 'function' && (handler as StreamingHandler)[STREAMING_MARK] === 'response';
}
