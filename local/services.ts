import { createDeps } from '../lambdas/shared/deps.ts';
import { createAggregatorHandler } from '../lambdas/telemetry/aggregator.ts';
import { sweepUnknownCalls } from '../lambdas/telemetry/unknown-calls.ts';
import type { LocalCredentials } from './caller-auth.ts';
import { type LocalConfigOptions, localConfig } from './config.ts';
import { type EmbeddedServices, type EmbeddedServicesOptions, startEmbeddedServices } from './embedded.ts';
import { type KinesisPoller, startKinesisPoller } from './kinesis-poller.ts';
import { ensureStream, ensureTable } from './provision.ts';

/**
 * The services side of local mode: the embedded stand-ins (./embedded.ts), the table and stream
 * the CDK app would create, and the telemetry pipeline's consumer — the poller standing in for the
 * event source mapping, the aggregator behind it, and the sweep that turns calls with no
 * completion into `unknown` records. Everything here is reached by the proxy over loopback HTTP
 * (or not at all), so it can run in this process (tests) or in its own (./services-process.ts,
 * what `npm start` does), off the event loop that serves the proxy.
 */
/** Records per aggregator batch at most (Lambda's mapping allows up to 10,000). */
const POLLER_BATCH_SIZE = 1000;
/** How long records may wait to be batched (Lambda's MaximumBatchingWindowInSeconds). */
const POLLER_BATCH_WINDOW_MS = 1000;

export interface ServicesSideOptions extends LocalConfigOptions, EmbeddedServicesOptions {
  /** Where data lives; absent: in memory. */
  dataDir?: string;
  credentials: LocalCredentials;
  /** Run the telemetry poller, aggregator and sweep (default true). */
  telemetryPoller?: boolean;
  /** When a call with no completion on record becomes `unknown` (LocalStackOptions.unknownAfterMs). */
  unknownAfterMs?: number;
}

export interface ServicesSide {
  services: EmbeddedServices;
  poller?: KinesisPoller;
  /** Stops the sweep and the poller (each finishes what it is doing), then the stand-ins. */
  close(): Promise<void>;
}

export async function startServicesSide(options: ServicesSideOptions): Promise<ServicesSide> {
  const services = await startEmbeddedServices(options.dataDir, options);
  let poller: KinesisPoller | undefined;
  let sweepTimer: NodeJS.Timeout | undefined;
  let sweeping: Promise<void> = Promise.resolve();
  let stopped = false;
  const config = localConfig(options);
  // The telemetry consumer's store calls go behind the proxy's (embedded.ts, backgroundDoor).
  const deps = createDeps(config, {
    dynamodb: services.dynamodbBackgroundEndpoint,
    kinesis: services.kinesisEndpoint,
    kms: services.kms.endpoint,
    credentials: services.credentials,
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
  const destroyClients = () => {
    for (const cell of Object.values(deps.cells)) {
      cell.ddb.destroy();
      cell.kms.destroy();
      cell.sts.destroy();
      cell.kinesis.destroy();
    }
    deps.home.ddb.destroy();
  };
  const close = async () => {
    stopped = true;
    clearTimeout(sweepTimer);
    await sweeping;
    await poller?.close();
    destroyClients();
    await services.close();
  };
  try {
    const tables = new Set([config.homeTableName, ...Object.values(config.cells).map((c) => c.tableName)]);
    for (const table of tables) await ensureTable(deps.home.ddb, table);
    const firstCell = Object.values(deps.cells)[0]!;
    await ensureStream(firstCell.kinesis, firstCell.streamName!);
    if (options.telemetryPoller !== false) {
      const started = startKinesisPoller({
        kinesis: firstCell.kinesis,
        streamName: firstCell.streamName!,
        region: firstCell.region,
        table: firstCell,
        // Swept on the timer below, traffic or not.
        handler: createAggregatorHandler(deps, { sweep: false, transactions: true }),
        // Larger, fewer batches: the aggregator's rollup writes are per bucket and batch, and the
        // stand-ins they load are the ones the proxy reads its snapshots from.
        batchSize: POLLER_BATCH_SIZE,
        batchWindowMs: POLLER_BATCH_WINDOW_MS,
      });
      poller = { ...started, stats: () => ({ ...started.stats(), storeCalls: { ...storeCalls } }) };
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
    }
    return { services, poller, close };
  } catch (error) {
    await close();
    throw error;
  }
}
