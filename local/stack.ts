import { createCoreApiHandler } from '../lambdas/control-plane/core-api.ts';
import { createProxyHandler, type ProxyHandlerOptions } from '../lambdas/data-plane/proxy-api.ts';
import { streamingProxyLambda } from '../lambdas/data-plane/streaming-lambda.ts';
import { telemetryHooks } from '../lambdas/data-plane/telemetry-hook.ts';
import { parseTargetAllowlist } from '../lambdas/net/target-allowlist.ts';
import type { Config } from '../lambdas/shared/config.ts';
import { createDeps, type Deps } from '../lambdas/shared/deps.ts';
import { createAggregatorHandler } from '../lambdas/telemetry/aggregator.ts';
import { createTelemetryEmitter, type TelemetryEmitter } from '../lambdas/telemetry/emitter.ts';
import { sweepUnknownCalls } from '../lambdas/telemetry/unknown-calls.ts';
import { type EmbeddedServices, startEmbeddedServices } from './embedded.ts';
import { type HttpFront, type LambdaHttpHandler, startHttpFront } from './http-front.ts';
import { type KinesisPoller, startKinesisPoller } from './kinesis-poller.ts';
import { LOCAL_KEY_ID } from './kms-server.ts';
import type { StreamingHandler } from './lambda-streaming.ts';
import { ensureStream, ensureTable } from './provision.ts';
import { openTelemetryWal, type TelemetryWal } from './telemetry-wal.ts';

/**
 * The whole of keygate on one machine: embedded DynamoDB, Kinesis and KMS, the tables and streams
 * the CDK app would create, and the deployed handlers behind local HTTP fronts. `npm start` and the
 * integration tests both use this.
 */
export interface LocalStackOptions {
  /** Where data lives; absent: in memory. */
  dataDir?: string;
  apiPort?: number;
  proxyPort?: number;
  regions?: string[];
  /** `host:port` entries (a bare host: its default ports only); see lambdas/net/target-allowlist.ts. */
  targetAllowlist?: string[];
  tableName?: string;
  /** Run the telemetry aggregator on the embedded stream (default true; tests may turn it off). */
  telemetryPoller?: boolean;
  /** Options of the proxy handler (telemetry hook, upstream deadline and size cap). */
  proxyOptions?: ProxyHandlerOptions;
  /**
   * A call started this long ago with no completion on record becomes an `unknown` record
   * (docs/audit-trail.md). Default 60 s: over the upstream deadline (25 s) with room for the
   * pipeline. Must exceed the longest call the proxy lets run.
   */
  unknownAfterMs?: number;
}

export interface CloseOptions {
  /** Graceful shutdown: let calls in flight finish and be recorded for up to this long. */
  drainMs?: number;
}

export interface LocalStack {
  apiUrl: string;
  proxyUrl: string;
  deps: Deps;
  services: EmbeddedServices;
  /** The local event source mapping feeding the telemetry aggregator (absent when turned off). */
  telemetryPoller?: KinesisPoller;
  /**
   * The proxy's telemetry emitter: with a data dir, the write-ahead file (local/telemetry-wal.ts);
   * in memory, a buffered Kinesis emitter. Records go to the embedded Kinesis, then the poller.
   */
  telemetry?: TelemetryEmitter;
  close(options?: CloseOptions): Promise<void>;
}

/** The proxy function's timeout in local mode: Lambda's maximum, the deployed default. */
export const PROXY_FUNCTION_TIMEOUT_MS = 900_000;

export function localConfig(options: LocalStackOptions): Config {
  const regions = options.regions?.length ? options.regions : ['us-east-1'];
  const tableName = options.tableName ?? 'keygate';
  return {
    homeRegion: regions[0]!,
    homeTableName: tableName,
    // Locally every served region is a cell on the same embedded table, key and stream.
    cells: Object.fromEntries(
      regions.map((region) => [
        region,
        { region, tableName, kmsKeyId: LOCAL_KEY_ID, streamName: 'keygate-telemetry' },
      ]),
    ),
    targetAllowlist: parseTargetAllowlist(options.targetAllowlist),
    // Filled in as each of keygate's own servers starts listening (startLocalStack).
    ownPorts: [],
    requestLogRetentionDays: 90,
    maxBodyBytes: 256 * 1024,
    telemetrySink: 'kinesis',
  };
}

export async function startLocalStack(options: LocalStackOptions = {}): Promise<LocalStack> {
  const services = await startEmbeddedServices(options.dataDir);
  const fronts: HttpFront[] = [];
  let poller: KinesisPoller | undefined;
  let telemetry: TelemetryEmitter | undefined;
  let wal: TelemetryWal | undefined;
  let sweepTimer: NodeJS.Timeout | undefined;
  try {
    const config = localConfig(options);
    // keygate's own ports are never targets: the stand-ins' now, the fronts' before they serve.
    const ownPorts = config.ownPorts!;
    ownPorts.push(...services.ports);
    for (const port of [options.apiPort, options.proxyPort]) if (port) ownPorts.push(port);
    const deps = createDeps(config, {
      dynamodb: services.dynamodbEndpoint,
      kinesis: services.kinesisEndpoint,
      kms: services.kms.endpoint,
      credentials: services.credentials,
    });
    await ensureTable(deps.home.ddb, config.homeTableName);
    const firstCell = Object.values(deps.cells)[0]!;
    await ensureStream(firstCell.kinesis, firstCell.streamName!);
    if (options.telemetryPoller !== false) {
      poller = startKinesisPoller({
        kinesis: firstCell.kinesis,
        streamName: firstCell.streamName!,
        region: firstCell.region,
        table: firstCell,
        // The stack sweeps on its own timer below, traffic or not.
        handler: createAggregatorHandler(deps, { sweep: false }),
      });
    }

    const api = await startHttpFront({
      port: options.apiPort ?? 0,
      functionName: 'keygate-core-api',
      handler: createCoreApiHandler(deps) as unknown as LambdaHttpHandler,
    });
    fronts.push(api);
    ownPorts.push(Number(new URL(api.url).port));
    if (options.dataDir) {
      // Every record is in the write-ahead file before the call out / the answer (durable across
      // a kill); what a previous run left unshipped goes into the stream before the first sweep.
      wal = openTelemetryWal({
        dir: options.dataDir,
        kinesis: firstCell.kinesis,
        streamName: firstCell.streamName!,
      });
      telemetry = wal;
      await wal.flush();
    } else {
      // In memory nothing outlives the process anyway: records are batched and shipped a few ms later.
      telemetry = createTelemetryEmitter({
        kinesis: firstCell.kinesis,
        streamName: firstCell.streamName!,
        autoFlushMs: 20,
      });
    }
    if (poller) {
      const graceMs = options.unknownAfterMs ?? 60_000;
      const sweep = async () => {
        try {
          await sweepUnknownCalls(deps, firstCell, { graceMs });
        } catch {
          // The embedded services are closing, or busy: the next sweep takes the pending calls.
        }
        if (sweepTimer) sweepTimer = setTimeout(sweep, sweepEvery).unref();
      };
      const sweepEvery = Math.min(5000, Math.max(250, graceMs / 4));
      sweepTimer = setTimeout(sweep, sweepEvery).unref();
    }
    const proxy = await startHttpFront({
      port: options.proxyPort ?? 0,
      functionName: 'keygate-proxy',
      timeoutMs: PROXY_FUNCTION_TIMEOUT_MS,
      // The deployed proxy's own wrapper (response streaming), driven through a response stream.
      handler: streamingProxyLambda(
        createProxyHandler(deps, { ...telemetryHooks(telemetry), ...options.proxyOptions }),
      ) as unknown as StreamingHandler,
    });
    fronts.push(proxy);
    ownPorts.push(Number(new URL(proxy.url).port));
    return {
      apiUrl: api.url,
      proxyUrl: proxy.url,
      deps,
      services,
      telemetryPoller: poller,
      telemetry,
      close: async (closeOptions = {}) => {
        // Stop accepting; calls in flight finish (and are recorded) up to the drain deadline.
        await Promise.all(fronts.map((f) => f.close(closeOptions.drainMs)));
        clearTimeout(sweepTimer);
        sweepTimer = undefined;
        await (wal ? wal.close() : telemetry?.flush());
        await poller?.close();
        for (const cell of Object.values(deps.cells)) {
          cell.ddb.destroy();
          cell.kms.destroy();
          cell.kinesis.destroy();
        }
        deps.home.ddb.destroy();
        await services.close();
      },
    };
  } catch (error) {
    clearTimeout(sweepTimer);
    await Promise.all(fronts.map((f) => f.close()));
    await wal?.close();
    await poller?.close();
    await services.close();
    throw error;
  }
}
