import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { EmbeddedServices } from './embedded.ts';
import type { KinesisPoller } from './kinesis-poller.ts';
import type { ServicesSide, ServicesSideOptions } from './services.ts';

/**
 * The parent's side of ./services-process.ts: forks it, hands it the options (credentials
 * included, over the private IPC pipe), and gives back the same `ServicesSide` shape as an
 * in-process start, so the stack does not care where the services run.
 *
 * Supervision: should the services process die on its own (a crash, a kill), it is started again
 * on the same ports — the proxy's clients keep their endpoints, and calls made meanwhile fail
 * closed (503). After `MAX_RESTARTS` restarts within `RESTART_WINDOW_MS`, `onGiveUp` is called.
 */
export interface ServicesProcessOptions {
  /** Called when the services process keeps dying (default: logged). */
  onGiveUp?: (error: Error) => void;
}

const SCRIPT = fileURLToPath(new URL('./services-process.ts', import.meta.url));
const READY_TIMEOUT_MS = 60_000;
const MAX_RESTARTS = 5;
const RESTART_WINDOW_MS = 60_000;

type FromChild =
  | {
      type: 'ready';
      dynamodbEndpoint: string;
      dynamodbBackgroundEndpoint: string;
      kinesisEndpoint: string;
      kmsEndpoint: string;
    }
  | { type: 'failed'; message: string }
  | { type: 'reply'; id: number; error?: string }
  | { type: 'stats'; kms?: Record<string, number>; poller?: ReturnType<KinesisPoller['stats']> };

type Ready = Extract<FromChild, { type: 'ready' }>;

const port = (url: string) => Number(new URL(url).port);

function spawnChild(options: ServicesSideOptions): { child: ChildProcess; ready: Promise<Ready> } {
  const child = fork(SCRIPT, [], {
    execArgv: ['--enable-source-maps'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    serialization: 'json',
  });
  const ready = new Promise<Ready>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error('the services process did not start in time'));
    }, READY_TIMEOUT_MS);
    const onMessage = (message: FromChild) => {
      if (message.type !== 'ready' && message.type !== 'failed') return;
      clearTimeout(timer);
      child.off('exit', onExit);
      child.off('message', onMessage);
      if (message.type === 'ready') resolve(message);
      else reject(new Error(`the services process failed to start: ${message.message}`));
    };
    const onExit = (code: number | null, signal: string | null) => {
      clearTimeout(timer);
      reject(new Error(`the services process exited during start (${signal ?? code})`));
    };
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
  child.send({ type: 'start', options });
  return { child, ready };
}

/** Starts the services in their own process; resolves once the stand-ins serve. */
export async function startServicesProcess(
  options: ServicesSideOptions,
  supervision: ServicesProcessOptions = {},
): Promise<ServicesSide> {
  let { child, ready } = spawnChild(options);
  const first = await ready;
  // Restarts take the same ports, so every endpoint handed out stays right.
  const fixed: ServicesSideOptions = {
    ...options,
    ports: {
      dynamodb: port(first.dynamodbEndpoint),
      dynamodbBackground: port(first.dynamodbBackgroundEndpoint),
      kinesis: port(first.kinesisEndpoint),
      kms: port(first.kmsEndpoint),
    },
  };
  let closed = false;
  let nextId = 0;
  const pending = new Map<number, { resolve(): void; reject(e: Error): void }>();
  const kmsCounts: Record<string, number> = {};
  let pollerStats = { delivered: 0, batches: 0, failedBatches: 0 };
  const restarts: number[] = [];

  const call = (op: string, timeoutMs?: number) =>
    new Promise<void>((resolve, reject) => {
      if (closed || !child.connected) return reject(new Error('the services process is not running'));
      const id = ++nextId;
      pending.set(id, { resolve, reject });
      child.send({ type: 'call', id, op, timeoutMs });
    });

  const onMessage = (message: FromChild) => {
    if (message.type === 'reply') {
      const waiter = pending.get(message.id);
      pending.delete(message.id);
      if (message.error) waiter?.reject(new Error(message.error));
      else waiter?.resolve();
    } else if (message.type === 'stats') {
      Object.assign(kmsCounts, message.kms);
      if (message.poller) pollerStats = message.poller;
    }
  };

  const onExit = (code: number | null, signal: string | null) => {
    for (const waiter of pending.values()) waiter.reject(new Error('the services process exited'));
    pending.clear();
    if (closed) return;
    const now = Date.now();
    restarts.push(now);
    while (restarts[0]! < now - RESTART_WINDOW_MS) restarts.shift();
    const why = `the services process exited unexpectedly (${signal ?? `code ${code}`})`;
    if (restarts.length > MAX_RESTARTS) {
      const error = new Error(`${why}; gave up after ${MAX_RESTARTS} restarts`);
      if (supervision.onGiveUp) supervision.onGiveUp(error);
      else console.error(error.message);
      return;
    }
    console.error(`${why}; restarting it`);
    setTimeout(() => {
      if (closed) return;
      ({ child, ready } = spawnChild(fixed));
      watch();
      ready.catch((error: Error) => console.error(error.message));
    }, 200 * restarts.length);
  };

  const watch = () => {
    child.on('message', onMessage);
    child.once('exit', onExit);
  };
  watch();

  const services: EmbeddedServices = {
    dynamodbEndpoint: first.dynamodbEndpoint,
    dynamodbBackgroundEndpoint: first.dynamodbBackgroundEndpoint,
    kinesisEndpoint: first.kinesisEndpoint,
    kms: {
      endpoint: first.kmsEndpoint,
      credentials: options.credentials,
      counts: kmsCounts,
      close: () => call('kms-close'),
    },
    credentials: options.credentials,
    ports: Object.values(fixed.ports!),
    close: () => close(),
  };
  const poller: KinesisPoller | undefined =
    options.telemetryPoller === false
      ? undefined
      : {
          stats: () => ({ ...pollerStats }),
          drain: (timeoutMs = 5000) => call('drain', timeoutMs),
          close: () => call('poller-close'),
        };

  const close = async () => {
    if (closed) return;
    closed = true;
    const current = child;
    if (current.exitCode !== null || current.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => current.once('exit', () => resolve()));
    if (current.connected) current.send({ type: 'close' });
    else current.kill('SIGKILL');
    await exited;
  };

  return { services, poller, close };
}
