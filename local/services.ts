import { createDeps, destroyDeps } from '../lambdas/shared/deps.ts';
import type { LocalCredentials } from './caller-auth.ts';
import { type LocalConfigOptions, localConfig } from './config.ts';
import { type EmbeddedServices, type EmbeddedServicesOptions, startEmbeddedServices } from './embedded.ts';
import type { KinesisPoller } from './kinesis-poller.ts';
import { ensureStream, ensureTable } from './provision.ts';
import {
  startTelemetrySide,
  startTelemetryWorker,
  type TelemetrySide,
  type TelemetrySideOptions,
} from './telemetry-side.ts';

/**
 * The services side of local mode: the embedded stand-ins (./embedded.ts), the table and stream
 * the CDK app would create, and the telemetry consumer (./telemetry-side.ts). Everything here is
 * reached by the proxy over loopback HTTP (or not at all), so it can run in this process (tests) or
 * in its own (./services-process.ts, what `npm start` does), off the event loop that serves the
 * proxy.
 */
export interface ServicesSideOptions extends LocalConfigOptions, EmbeddedServicesOptions {
  /** Where data lives; absent: in memory. */
  dataDir?: string;
  credentials: LocalCredentials;
  /** Run the telemetry poller, aggregator and sweep (default true). */
  telemetryPoller?: boolean;
  /** When a call with no completion on record becomes `unknown` (LocalStackOptions.unknownAfterMs). */
  unknownAfterMs?: number;
  /**
   * Run the telemetry consumer on a worker thread at a lower priority (what the services process of
   * `npm start` does); default: on this thread.
   */
  telemetryWorker?: boolean;
}

export interface ServicesSide {
  services: EmbeddedServices;
  poller?: KinesisPoller;
  /** Stops the sweep and the poller (each finishes what it is doing), then the stand-ins. */
  close(): Promise<void>;
}

export async function startServicesSide(options: ServicesSideOptions): Promise<ServicesSide> {
  const services = await startEmbeddedServices(options.dataDir, options);
  let telemetry: TelemetrySide | undefined;
  const close = async () => {
    await telemetry?.close();
    await services.close();
  };
  try {
    const config = localConfig(options);
    // The tables and the stream the CDK app would create.
    const deps = createDeps(config, {
      dynamodb: services.dynamodbEndpoint,
      kinesis: services.kinesisEndpoint,
      credentials: services.credentials,
    });
    try {
      const tables = new Set([config.homeTableName, ...Object.values(config.cells).map((c) => c.tableName)]);
      for (const table of tables) await ensureTable(deps.home.ddb, table);
      const firstCell = Object.values(deps.cells)[0]!;
      await ensureStream(firstCell.kinesis, firstCell.streamName!);
    } finally {
      destroyDeps(deps);
    }
    if (options.telemetryPoller === false) return { services, close };
    const telemetryOptions: TelemetrySideOptions = {
      ...options,
      // The telemetry consumer's store calls go behind the proxy's (embedded.ts, backgroundDoor).
      dynamodbEndpoint: services.dynamodbBackgroundEndpoint,
      kinesisEndpoint: services.kinesisEndpoint,
      kmsEndpoint: services.kms.endpoint,
      credentials: services.credentials,
    };
    telemetry = options.telemetryWorker
      ? // A worker that dies while running fails the services process; its supervisor restarts it.
        await startTelemetryWorker(telemetryOptions, (error) => {
          throw error;
        })
      : startTelemetrySide(telemetryOptions);
    return { services, poller: telemetry.poller, close };
  } catch (error) {
    await close();
    throw error;
  }
}
