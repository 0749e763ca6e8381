import { createCoreApiHandler } from '../lambdas/control-plane/core-api.ts';
import { createProxyHandler, type ProxyHandlerOptions } from '../lambdas/data-plane/proxy-api.ts';
import { streamingProxyLambda } from '../lambdas/data-plane/streaming-lambda.ts';
import { telemetryHook } from '../lambdas/data-plane/telemetry-hook.ts';
import type { Config } from '../lambdas/shared/config.ts';
import { createDeps, type Deps } from '../lambdas/shared/deps.ts';
import { createAggregatorHandler } from '../lambdas/telemetry/aggregator.ts';
import { createTelemetryEmitter, type TelemetryEmitter } from '../lambdas/telemetry/emitter.ts';
import { type EmbeddedServices, startEmbeddedServices } from './embedded.ts';
import { type HttpFront, type LambdaHttpHandler, startHttpFront } from './http-front.ts';
import { type KinesisPoller, startKinesisPoller } from './kinesis-poller.ts';
import { LOCAL_KEY_ID } from './kms-server.ts';
import type { StreamingHandler } from './lambda-streaming.ts';
import { ensureStream, ensureTable } from './provision.ts';

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
  targetAllowlist?: string[];
  tableName?: string;
  /** Run the telemetry aggregator on the embedded stream (default true; tests may turn it off). */
  telemetryPoller?: boolean;
  /** Options of the proxy handler (telemetry hook, upstream deadline and size cap). */
  proxyOptions?: ProxyHandlerOptions;
}

export interface LocalStack {
  apiUrl: string;
  proxyUrl: string;
  deps: Deps;
  services: EmbeddedServices;
  /** The local event source mapping feeding the telemetry aggregator (absent when turned off). */
  telemetryPoller?: KinesisPoller;
  /** The proxy's telemetry emitter (records go to the embedded Kinesis, then the poller). */
  telemetry?: TelemetryEmitter;
  close(): Promise<void>;
}

/** The proxy function's timeout in local mode: Lambda's maximum, the deployed default. */
export const PROXY_FUNCTION_TIMEOUT_MS = 900_000;

const LOCAL_CREDENTIALS = { accessKeyId: 'local', secretAccessKey: 'local' };

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
    targetAllowlist: options.targetAllowlist ?? [],
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
  try {
    const config = localConfig(options);
    const deps = createDeps(config, {
      dynamodb: services.dynamodbEndpoint,
      kinesis: services.kinesisEndpoint,
      kms: services.kms.endpoint,
      credentials: LOCAL_CREDENTIALS,
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
        handler: createAggregatorHandler(deps),
      });
    }

    const api = await startHttpFront({
      port: options.apiPort ?? 0,
      functionName: 'keygate-core-api',
      handler: createCoreApiHandler(deps) as unknown as LambdaHttpHandler,
    });
    fronts.push(api);
    // A long-lived process: records are batched and shipped a few ms after the answers went out.
    telemetry = createTelemetryEmitter({
      kinesis: firstCell.kinesis,
      streamName: firstCell.streamName!,
      autoFlushMs: 20,
    });
    // The deployed proxy's own wrapper (response streaming), driven through a response stream.
    const proxy = await startHttpFront({
      port: options.proxyPort ?? 0,
      functionName: 'keygate-proxy',
      timeoutMs: PROXY_FUNCTION_TIMEOUT_MS,
      handler: streamingProxyLambda(
        createProxyHandler(deps, { onOutcome: telemetryHook(telemetry), ...options.proxyOptions }),
      ) as unknown as StreamingHandler,
    });
    fronts.push(proxy);
    return {
      apiUrl: api.url,
      proxyUrl: proxy.url,
      deps,
      services,
      telemetryPoller: poller,
      telemetry,
      close: async () => {
        await Promise.all(fronts.map((f) => f.close()));
        await telemetry?.flush();
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
    await Promise.all(fronts.map((f) => f.close()));
    await poller?.close();
    await services.close();
    throw error;
  }
}
