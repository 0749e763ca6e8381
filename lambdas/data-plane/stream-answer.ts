import type { IncomingMessage } from 'node:http';
import { performance } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import type { StreamEnd } from '../telemetry/record.ts';

/**
 * The vendor's answer body on its way back to the consumer, byte for byte and unbuffered: every
 * chunk is handed on as it arrives (an SSE event reaches the consumer when the vendor sends it),
 * with backpressure (a slow consumer pauses the vendor socket, nothing piles up in memory) and no
 * size cap (bytes are counted). It enforces the idle and total deadlines and tells once, when it
 * closes, how the exchange ended:
 *  - `complete`: the vendor's last byte was handed on;
 *  - `client_abort`: the consumer went away first — the vendor call is aborted at once (its socket
 *    closed), so an abandoned generation is not paid for to the end;
 *  - `vendor_abort`: the vendor cut its answer short (reset, truncated body);
 *  - `deadline`: the idle or total deadline passed — the vendor call is aborted.
 * On a vendor abort or a deadline the consumer's stream is ended cleanly (headers went out long
 * ago, so no error status can be sent any more); an answer with a Content-Length shows the
 * shortfall, and the telemetry record says why.
 */
export interface StreamSummary {
  end: StreamEnd;
  bytes: number;
  /** From the call out to the close of the stream. */
  durationMs: number;
}

export interface StreamAnswerOptions {
  idleMs: number;
  /** Left of the total deadline when the headers arrived. */
  remainingMs: number;
  /** `performance.now()` when the call went out. */
  startedAt: number;
  /** Sees every chunk as it passes (meter values, meter-values.ts); synchronous, must not throw. */
  onChunk?(chunk: Buffer): void;
  onEnd(summary: StreamSummary): void;
}

export function streamAnswer(upstream: IncomingMessage, options: StreamAnswerOptions): Readable {
  let bytes = 0;
  let end: StreamEnd | undefined;
  let idle: NodeJS.Timeout | undefined;
  let finished = false;

  const stopVendor = () => {
    clearTimeout(idle);
    clearTimeout(total);
    upstream.removeAllListeners('data');
    upstream.destroy();
  };
  /** A failure after the headers went out: the consumer's stream ends cleanly, the vendor's is cut. */
  const cut = (reason: StreamEnd) => {
    if (end) return;
    end = reason;
    stopVendor();
    out.push(null);
  };
  const armIdle = () => {
    clearTimeout(idle);
    idle = setTimeout(() => cut('deadline'), options.idleMs);
  };

  const out = new Readable({
    read() {
      upstream.resume();
    },
    destroy(error, callback) {
      // The consumer went away (or the runtime gave up on the stream) before the end.
      if (!end && !finished) end = 'client_abort';
      stopVendor();
      callback(error);
    },
  });
  const total = setTimeout(() => cut('deadline'), Math.max(0, options.remainingMs));
  armIdle();
  upstream.on('data', (chunk: Buffer) => {
    bytes += chunk.length;
    armIdle();
    options.onChunk?.(chunk);
    if (!out.push(chunk)) upstream.pause();
  });
  upstream.on('end', () => {
    if (end) return;
    finished = true;
    end = 'complete';
    clearTimeout(idle);
    clearTimeout(total);
    out.push(null);
  });
  upstream.on('error', () => cut('vendor_abort'));
  upstream.on('aborted', () => cut('vendor_abort'));
  // An IncomingMessage closed before its end (socket reset) emits only 'close' on recent Node.
  upstream.on('close', () => {
    if (!upstream.complete) cut('vendor_abort');
  });
  out.once('close', () => {
    options.onEnd({
      end: end ?? 'client_abort',
      bytes,
      durationMs: performance.now() - options.startedAt,
    });
  });
  return out;
}
