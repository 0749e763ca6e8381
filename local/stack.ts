import { chmodSync, mkdirSync } from 'node:fs';
import { createCoreApiHandler } from '../lambdas/control-plane/core-api.ts';
import { createProxyHandler, type ProxyHandlerOptions } from '../lambdas/data-plane/proxy-api.ts';
import { streamingProxyLambda } from '../lambdas/data-plane/streaming-lambda.ts';
import { telemetryHooks } from '../lambdas/data-plane/telemetry-hook.ts';
import { createDeps, type Deps, destroyDeps } from '../lambdas/shared/deps.ts';
import { createTelemetryEmitter, type TelemetryEmitter } from '../lambdas/telemetry/emitter.ts';
import { loadLocalCredentials } from './caller-auth.ts';
import { type LocalConfigOptions, localConfig } from './config.ts';
import type { EmbeddedServices } from './embedded.ts';
import { type HttpFront, type LambdaHttpHandler, startHttpFront } from './http-front.ts';
import type { KinesisPoller } from './kinesis-poller.ts';
import { isStreamingHandler, STREAMING_MARK, type StreamingHandler } from './lambda-streaming.ts';
import { type ServicesSide, type ServicesSideOptions, startServicesSide } from './services.ts';
import { startServicesProcess } from './services-client.ts';
import { openTelemetryWal, type TelemetryWal } from './telemetry-wal.ts';

/**
 * The whole of keygate on one machine: embedded DynamoDB, Kinesis and KMS, the tables and streams
 * the CDK app would create, and the deployed handlers behind local HTTP fronts. `npm start` and the
 * integration tests both use this.
 */
export interface LocalStackOptions extends LocalConfigOptions {
  /** Where data lives; absent: in memory. */
  dataDir?: string;
  apiPort?: number;
  proxyPort?: number;
  /**
   * Extra proxy ports, each routing every request to one proxy alias (`KEYGATE_ALIAS_PORTS`): for
   * SDKs that take only host/port/protocol where `{alias}.localhost` does not resolve (docs/sdks.md).
   */
  aliasPorts?: Array<{ alias: string; port: number }>;
  /**
   * Run the embedded stand-ins and the telemetry consumer in their own process
   * (./services-process.ts), off the event loop that serves the Core API and the proxy: what
   * `npm start` does (docs/local-services-process.md). Default false: in this process, which
   * starts faster (tests).
   */
  servicesProcess?: boolean;
  /** The services process keeps dying and is no longer restarted (default: logged). */
  onServicesGiveUp?: (error: Error) => void;
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

/**
 * After the fronts closed their connections, how long close() still waits for handlers that are
 * running (a call to the store or upstream in flight) before the store goes away under them.
 */
const SETTLE_MS = 10_000;

/** Counts the invocations of a handler in flight, so that close() can wait for them to end. */
function tracked<H extends LambdaHttpHandler | StreamingHandler>(handler: H) {
  let inFlight = 0;
  let idle: (() => void) | undefined;
  const wrapped = (async (...args: unknown[]) => {
    inFlight++;
    try {
      return await (handler as (...a: unknown[]) => Promise<unknown>)(...args);
    } finally {
      if (--inFlight === 0) idle?.();
    }
  }) as unknown as H;
  // A streaming handler stays one (the local front drives it through a response stream).
  if (isStreamingHandler(handler)) (wrapped as StreamingHandler)[STREAMING_MARK] = 'response';
  const settled = (timeoutMs: number) =>
    new Promise<void>((resolve) => {
      if (inFlight === 0) return resolve();
      const timer = setTimeout(resolve, timeoutMs);
      idle = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  return { handler: wrapped, settled };
}

export interface LocalStack {
  apiUrl: string;
  proxyUrl: string;
  /** The alias ports' base URLs, by alias (LocalStackOptions.aliasPorts). */
  aliasUrls: Record<string, string>;
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

/** How long the write-ahead file collects records before they are shipped to the stream. */
const WAL_SHIP_DELAY_MS = 50;

/** The proxy function's timeout in local mode: Lambda's maximum, the deployed default. */
export const PROXY_FUNCTION_TIMEOUT_MS = 900_000;

export { localConfig };

export async function startLocalStack(options: LocalStackOptions = {}): Promise<LocalStack> {
  const sideOptions: ServicesSideOptions = {
    dataDir: options.dataDir,
    regions: options.regions,
    tableName: options.tableName,
    tablePerRegion: options.tablePerRegion,
    telemetryPoller: options.telemetryPoller,
    unknownAfterMs: options.unknownAfterMs,
    // Made here (the data dir's, created 0600 on first start) and handed to the services side.
    credentials: loadLocalCredentials(prepareDataDir(options.dataDir)),
  };
  const side: ServicesSide = options.servicesProcess
    ? await startServicesProcess(sideOptions, { onGiveUp: options.onServicesGiveUp })
    : await startServicesSide(sideOptions);
  const { services, poller } = side;
  const fronts: HttpFront[] = [];
  const handlers: Array<{ settled(timeoutMs: number): Promise<void> }> = [];
  let telemetry: TelemetryEmitter | undefined;
  let wal: TelemetryWal | undefined;
  try {
    const config = localConfig(options);
    // keygate's own ports are never targets: the stand-ins' now, the fronts' before they serve.
    const ownPorts = config.ownPorts!;
    ownPorts.push(...services.ports);
    for (const port of [options.apiPort, options.proxyPort, ...(options.aliasPorts ?? []).map((a) => a.port)])
      if (port) ownPorts.push(port);
    const deps = createDeps(config, {
      dynamodb: services.dynamodbEndpoint,
      kinesis: services.kinesisEndpoint,
      kms: services.kms.endpoint,
      // The KMS stand-in answers STS AssumeRole too (./sts-standin.ts).
      sts: services.kms.endpoint,
      credentials: services.credentials,
    });
    const firstCell = Object.values(deps.cells)[0]!;

    const api = tracked(createCoreApiHandler(deps) as unknown as LambdaHttpHandler);
    handlers.push(api);
    const apiFront = await startHttpFront({
      port: options.apiPort ?? 0,
      functionName: 'keygate-core-api',
      handler: api.handler,
    });
    fronts.push(apiFront);
    ownPorts.push(Number(new URL(apiFront.url).port));
    if (options.dataDir) {
      // Every record is in the write-ahead file before the call out / the answer (durable across
      // a kill); what a previous run left unshipped goes into the stream before the first sweep.
      wal = openTelemetryWal({
        dir: options.dataDir,
        kinesis: firstCell.kinesis,
        streamName: firstCell.streamName!,
        // Records are durable in the file once written; shipping them in fewer, larger PutRecords
        // (and moving the shipped offset less often) keeps that work off the proxy's event loop.
        shipDelayMs: WAL_SHIP_DELAY_MS,
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
    // The deployed proxy's own wrapper (response streaming), driven through a response stream.
    const startProxyFront = async (port: number, fixedRoute?: string) => {
      const proxy = tracked(
        streamingProxyLambda(
          createProxyHandler(deps, { ...telemetryHooks(telemetry!), ...options.proxyOptions, fixedRoute }),
        ) as unknown as StreamingHandler,
      );
      handlers.push(proxy);
      const front = await startHttpFront({
        port,
        functionName: 'keygate-proxy',
        timeoutMs: PROXY_FUNCTION_TIMEOUT_MS,
        handler: proxy.handler,
      });
      fronts.push(front);
      ownPorts.push(Number(new URL(front.url).port));
      return front.url;
    };
    const proxyUrl = await startProxyFront(options.proxyPort ?? 0);
    const aliasUrls: Record<string, string> = {};
    for (const { alias, port } of options.aliasPorts ?? [])
      aliasUrls[alias] = await startProxyFront(port, alias);
    return {
      apiUrl: apiFront.url,
      proxyUrl,
      aliasUrls,
      deps,
      services,
      telemetryPoller: poller,
      telemetry,
      close: async (closeOptions = {}) => {
        // Stop accepting; calls in flight finish (and are recorded) up to the drain deadline.
        await Promise.all(fronts.map((f) => f.close(closeOptions.drainMs)));
        // A handler whose client went away may still be talking to the store: let it finish.
        await Promise.all(handlers.map((h) => h.settled(SETTLE_MS)));
        await (wal ? wal.close() : telemetry?.flush());
        destroyDeps(deps);
        await side.close();
      },
    };
  } catch (error) {
    await Promise.all(fronts.map((f) => f.close()));
    await wal?.close();
    await side.close();
    throw error;
  }
}

/** The data dir, created 0700 (and tightened if it exists: it holds the keys); undefined in memory. */
function prepareDataDir(dataDir: string | undefined): string | undefined {
  if (!dataDir) return undefined;
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  chmodSync(dataDir, 0o700);
  return dataDir;
}
