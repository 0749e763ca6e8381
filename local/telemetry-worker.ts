import { parentPort, workerData } from 'node:worker_threads';
import { errorChain } from './start-errors.ts';
import {
  type FromWorker,
  lowerThreadPriority,
  startTelemetrySide,
  type TelemetrySide,
  type TelemetrySideOptions,
  type ToWorker,
} from './telemetry-side.ts';

/**
 * The telemetry worker thread (started by ./telemetry-side.ts `startTelemetryWorker`): the telemetry
 * consumer on its own event loop, at a lower priority than the thread serving the store. Answers
 * `drain`, `poller-close` and `close`; reports the poller's counters whenever they change (at most
 * every 100 ms) and with every reply.
 */
const STATS_EVERY_MS = 100;
const port = parentPort!;
const send = (message: FromWorker) => port.postMessage(message);

lowerThreadPriority();
let side: TelemetrySide | undefined;
try {
  side = startTelemetrySide(workerData as TelemetrySideOptions);
} catch (error) {
  send({ type: 'failed', message: `the telemetry consumer failed to start: ${errorChain(error)}` });
  process.exit(1);
}
const started = side;
const stats = () => started.poller.stats();
let last = '';
const timer = setInterval(() => {
  const now = stats();
  const text = JSON.stringify(now);
  if (text === last) return;
  last = text;
  send({ type: 'stats', stats: now });
}, STATS_EVERY_MS);
timer.unref();

port.on('message', (message: ToWorker) => {
  if (message.type !== 'call') return;
  const done = (error?: unknown) =>
    send({
      type: 'reply',
      id: message.id,
      stats: stats(),
      ...(error ? { error: error instanceof Error ? error.message : String(error) } : {}),
    });
  const run = async () => {
    if (message.op === 'drain') return started.poller.drain(message.timeoutMs);
    if (message.op === 'poller-close') return started.poller.close();
    clearInterval(timer);
    await started.close();
  };
  run().then(
    () => {
      done();
      if (message.op === 'close') port.close();
    },
    (error: unknown) => done(error),
  );
});
send({ type: 'ready' });
