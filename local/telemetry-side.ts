import { createDeps, destroyDeps } from '../lambdas/shared/deps.ts';
import { createAggregatorHandler } from '../lambdas/telemetry/aggregator.ts';
import { sweepUnknownCalls } from '../lambdas/telemetry/unknown-calls.ts';
import type { LocalCredentials } from './caller-auth.ts';
import { type LocalConfigOptions, localConfig } from './config.ts';
import { type KinesisPoller, startKinesisPoller } from './kinesis-poller.ts';
import { startWorkerThread } from './worker-thread.ts';

type PollerStats = ReturnType<KinesisPoller['stats']>;

/**
 * The telemetry consumer of local mode: the poller standing in for the event source mapping, the
 * aggregator behind it, and the sweep that turns calls with no completion into `unknown` records.
 * It reads the embedded Kinesis and reaches the store through its background door (./embedded.ts).
 *
 * `npm start` runs it on a worker thread of the services process at a lower scheduling priority
 * (`startTelemetryWorker`): its own event loop, so a batch being decoded and aggregated never holds
 * up a snapshot read the store has to answer, and on a busy machine the proxy and the store get the
 * cores first — the consumer catches up when they are idle (records wait in the stream, never
 * lost). The stream itself stays on the store's thread at full priority: a completion must be in
 * the stream before the sweep could take its call for `unknown` (lambdas/telemetry/unknown-calls.ts).
 * Tests may run the consumer on the calling thread (`startTelemetrySide`).
 */
export interface TelemetrySideOptions extends LocalConfigOptions {
  credentials: LocalCredentials;
  /** The store's background door. */
  dynamodbEndpoint: string;
  kinesisEndpoint: string;
  kmsEndpoint: string;
  /** When a call with no completion on record becomes `unknown` (LocalStackOptions.unknownAfterMs). */
  unknownAfterMs?: number;
}

export interface TelemetrySide {
  poller: KinesisPoller;
  /** Stops the sweep and the poller (each finishes what it is doing). */
  close(): Promise<void>;
}

/**
 * Kinesis records per aggregator batch at most (Lambda's mapping allows up to 10,000). The
 * write-ahead file packs up to 200 telemetry lines into one Kinesis record (~40 under heavy load,
 * one per 50 ms), so a batch holds up to 20,000 lines — a bound on the memory a backlog can take.
 */
const POLLER_BATCH_SIZE = 100;
/** Kinesis records per GetRecords while a batch is gathered. */
const POLLER_PAGE_SIZE = 25;
/** How long records may wait to be batched (Lambda's MaximumBatchingWindowInSeconds). */
const POLLER_BATCH_WINDOW_MS = 1000;
/** The telemetry worker's nice value (Linux: per thread). The proxy and the store keep 0. */
export const TELEMETRY_WORKER_NICE = 10;

/** The telemetry consumer on the calling thread. */
export function startTelemetrySide(options: TelemetrySideOptions): TelemetrySide {
  let sweepTimer: NodeJS.Timeout | undefined;
  let sweeping: Promise<void> = Promise.resolve();
  let stopped = false;
  const config = localConfig(options);
  const deps = createDeps(config, {
    dynamodb: options.dynamodbEndpoint,
    kinesis: options.kinesisEndpoint,
    kms: options.kmsEndpoint,
    credentials: options.credentials,
  });
  // What the telemetry consumer costs the store, by operation (PutItem, UpdateItem, …), counted
  // at the SDK (each counted call is one request into dynalite); `npm run bench` reports it.
  const storeCalls: Record<string, number> = {};
  for (const client of new Set([deps.home.ddb, ...Object.values(deps.cells).map((c) => c.ddb)]))
    client.middlewareStack.add(
      (next, context) => (args) => {
        const name = context.commandName ?? 'unknown';
        storeCalls[name] = (storeCalls[name] ?? 0) + 1;
        return next(args);
      },
      { step: 'initialize', name: 'keygateCountStoreCalls' },
    );
  const firstCell = Object.values(deps.cells)[0]!;
  const started = startKinesisPoller({
    kinesis: firstCell.kinesis,
    streamName: firstCell.streamName!,
    region: firstCell.region,
    table: firstCell,
    // Swept on the timer below, traffic or not.
    handler: createAggregatorHandler(deps, { sweep: false, transactions: true }),
    // Larger, fewer batches: the aggregator's rollup writes are per bucket and batch, and the
    // store they load is the one the proxy reads its snapshots from.
    batchSize: POLLER_BATCH_SIZE,
    batchWindowMs: POLLER_BATCH_WINDOW_MS,
    // kinesalite builds each GetRecords answer in one stall of the store's thread (1,000 single
    // records: ~20 ms; 250: ~8 ms): smaller pages, shorter stalls.
    pageSize: POLLER_PAGE_SIZE,
  });
  const poller: KinesisPoller = {
    ...started,
    stats: () => ({ ...started.stats(), storeCalls: { ...storeCalls } }),
  };
  const graceMs = options.unknownAfterMs ?? 60_000;
  const sweepEvery = Math.min(5000, Math.max(250, graceMs / 4));
  const sweep = () => {
    sweeping = sweepUnknownCalls(deps, firstCell, { graceMs }).then(
      () => undefined,
      // The stand-ins are closing, or busy: the next sweep takes the pending calls.
      () => undefined,
    );
    void sweeping.then(() => {
      if (!stopped) sweepTimer = setTimeout(sweep, sweepEvery).unref();
    });
  };
  sweepTimer = setTimeout(sweep, sweepEvery).unref();
  return {
    poller,
    close: async () => {
      stopped = true;
      clearTimeout(sweepTimer);
      await sweeping;
      await poller.close();
      destroyDeps(deps);
    },
  };
}

/**
 * The telemetry consumer on a worker thread (./telemetry-worker.ts) at a lower priority. `onCrash`
 * is called if the worker dies while running (the services process then fails and is restarted by
 * its supervisor, local/services-client.ts).
 */
export async function startTelemetryWorker(
  options: TelemetrySideOptions,
  onCrash: (error: Error) => void,
): Promise<TelemetrySide> {
  const worker = await startWorkerThread<null, PollerStats>(
    new URL('./telemetry-worker.ts', import.meta.url),
    options,
    onCrash,
  );
  return {
    poller: {
      stats: () => ({ delivered: 0, batches: 0, failedBatches: 0, ...worker.stats() }),
      drain: (timeoutMs) => worker.call('drain', timeoutMs),
      close: () => worker.call('poller-close'),
    },
    close: () => worker.close(),
  };
}
