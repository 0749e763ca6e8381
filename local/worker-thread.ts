import { setPriority } from 'node:os';
import { parentPort, Worker } from 'node:worker_threads';
import { errorChain } from './start-errors.ts';

/**
 * A worker thread of the services process (./services.ts) — the telemetry consumer
 * (./telemetry-worker.ts), on an event loop of its own so that it never holds up the store's. This
 * module is both sides of their small protocol: `startWorkerThread` (the services process) and
 * `serveWorkerThread` (the worker).
 *
 * Messages: the worker sends `ready` (with what the parent needs, e.g. an endpoint) or `failed`
 * once, `stats` whenever they change (at most every STATS_EVERY_MS) and a `reply` to every `call`
 * (with the latest stats). `close` is the call that ends the worker.
 */
type FromWorker =
  | { type: 'ready'; value: unknown }
  | { type: 'failed'; message: string }
  | { type: 'reply'; id: number; error?: string; stats?: unknown }
  | { type: 'stats'; stats: unknown };
type ToWorker = { type: 'call'; id: number; op: string; arg?: unknown };

const STATS_EVERY_MS = 100;
const READY_TIMEOUT_MS = 60_000;

export interface WorkerThread<Ready, Stats> {
  ready: Ready;
  /** The worker's latest stats (undefined before the first report). */
  stats(): Stats | undefined;
  call(op: string, arg?: unknown): Promise<void>;
  /** Asks the worker to close what it runs and waits for it to exit. */
  close(): Promise<void>;
}

/**
 * Starts `script` on a worker thread with `data`; resolves with what its `ready` carried. `onCrash`
 * is called if the worker dies while running (not when it is closed).
 */
export async function startWorkerThread<Ready, Stats = undefined>(
  script: URL,
  data: unknown,
  onCrash: (error: Error) => void,
): Promise<WorkerThread<Ready, Stats>> {
  const worker = new Worker(script, { workerData: data });
  let closing = false;
  let nextId = 0;
  let latest: Stats | undefined;
  const pending = new Map<number, { resolve(): void; reject(e: Error): void }>();
  const ready = await new Promise<Ready>((resolve, reject) => {
    const timer = setTimeout(() => {
      void worker.terminate();
      reject(new Error(`the worker thread ${script.pathname} did not start in time`));
    }, READY_TIMEOUT_MS);
    const onError = (error: Error) => {
      clearTimeout(timer);
      reject(error);
    };
    const onExit = (code: number) => {
      clearTimeout(timer);
      reject(new Error(`the worker thread ${script.pathname} exited during start (${code})`));
    };
    worker.once('error', onError);
    worker.once('exit', onExit);
    worker.on('message', function onStart(message: FromWorker) {
      if (message.type !== 'ready' && message.type !== 'failed') return;
      clearTimeout(timer);
      worker.off('message', onStart);
      worker.off('error', onError);
      worker.off('exit', onExit);
      if (message.type === 'ready') resolve(message.value as Ready);
      else reject(new Error(message.message));
    });
  });
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  worker.on('message', (message: FromWorker) => {
    if (message.type === 'stats') latest = message.stats as Stats;
    if (message.type !== 'reply') return;
    if (message.stats !== undefined) latest = message.stats as Stats;
    const waiter = pending.get(message.id);
    pending.delete(message.id);
    if (message.error) waiter?.reject(new Error(message.error));
    else waiter?.resolve();
  });
  worker.on('error', (error) => {
    if (!closing) onCrash(error);
  });
  worker.on('exit', (code) => {
    for (const waiter of pending.values()) waiter.reject(new Error('the worker thread exited'));
    pending.clear();
    if (!closing)
      onCrash(new Error(`the worker thread ${script.pathname} exited unexpectedly (code ${code})`));
  });
  const call = (op: string, arg?: unknown) =>
    new Promise<void>((resolve, reject) => {
      const id = ++nextId;
      pending.set(id, { resolve, reject });
      worker.postMessage({ type: 'call', id, op, arg } satisfies ToWorker);
    });
  return {
    ready,
    stats: () => latest,
    call,
    close: async () => {
      if (!closing) {
        closing = true;
        await call('close').catch(() => undefined);
      }
      await exited;
    },
  };
}

export interface WorkerService {
  /** Sent with `ready`. */
  ready: unknown;
  /** Reported when they change, and with every reply. */
  stats?: () => unknown;
  /** The calls the parent may make, besides `close`. */
  calls?: Record<string, (arg: unknown) => Promise<unknown> | unknown>;
  close(): Promise<void>;
}

/**
 * The worker's side: starts what `start` starts and serves the parent's calls. A start that fails
 * is reported as `failed` (with the error's whole chain) and ends the thread.
 */
export async function serveWorkerThread(start: () => Promise<WorkerService> | WorkerService): Promise<void> {
  const port = parentPort!;
  const send = (message: FromWorker) => port.postMessage(message);
  let service: WorkerService;
  try {
    service = await start();
  } catch (error) {
    send({ type: 'failed', message: errorChain(error) });
    process.exit(1);
  }
  let last = '';
  const timer = service.stats
    ? setInterval(() => {
        const stats = service.stats!();
        const text = JSON.stringify(stats);
        if (text === last) return;
        last = text;
        send({ type: 'stats', stats });
      }, STATS_EVERY_MS)
    : undefined;
  timer?.unref();
  port.on('message', (message: ToWorker) => {
    if (message.type !== 'call') return;
    const run = async () => {
      if (message.op === 'close') {
        clearInterval(timer);
        return service.close();
      }
      const handler = service.calls?.[message.op];
      if (!handler) throw new Error(`unknown call '${message.op}'`);
      return handler(message.arg);
    };
    run().then(
      () => {
        send({ type: 'reply', id: message.id, stats: service.stats?.() });
        if (message.op === 'close') port.close();
      },
      (error: unknown) =>
        send({
          type: 'reply',
          id: message.id,
          stats: service.stats?.(),
          error: error instanceof Error ? error.message : String(error),
        }),
    );
  });
  send({ type: 'ready', value: service.ready });
}

/**
 * Lowers the calling thread's scheduling priority to `nice` where the nice value is per thread
 * (Linux); elsewhere it would lower the whole process, so it is left alone.
 */
export function lowerThreadPriority(nice: number): void {
  if (process.platform !== 'linux') return;
  try {
    setPriority(0, nice);
  } catch {
    // Not allowed here (a locked-down container): same priority, still its own event loop.
  }
}
