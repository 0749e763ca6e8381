import { workerData } from 'node:worker_threads';
import { startTelemetrySide, TELEMETRY_WORKER_NICE, type TelemetrySideOptions } from './telemetry-side.ts';
import { lowerThreadPriority, serveWorkerThread } from './worker-thread.ts';

/**
 * The telemetry worker thread (./telemetry-side.ts `startTelemetryWorker`): the telemetry consumer
 * on its own event loop, at a lower priority than the threads serving the store and the stream.
 * Calls: `drain`, `poller-close`, `close`; stats: the poller's counters.
 */
lowerThreadPriority(TELEMETRY_WORKER_NICE);
await serveWorkerThread(() => {
  const side = startTelemetrySide(workerData as TelemetrySideOptions);
  return {
    ready: null,
    stats: () => side.poller.stats(),
    calls: {
      drain: (timeoutMs) => side.poller.drain(timeoutMs as number | undefined),
      'poller-close': () => side.poller.close(),
    },
    close: () => side.close(),
  };
});
