import type { KinesisPoller } from './kinesis-poller.ts';
import { type ServicesSide, type ServicesSideOptions, startServicesSide } from './services.ts';
import { errorChain } from './start-errors.ts';

/**
 * The services process of `npm start` (forked by ./services-client.ts): the embedded stand-ins and
 * the telemetry consumer (./services.ts) on their own event loop — a second core — so that the
 * proxy's event loop serves only the Core API and the proxy.
 *
 * It lives exactly as long as its parent: it talks to it over the IPC pipe only, and when that
 * pipe closes (the parent exited, crashed or was killed with SIGKILL) it closes the stand-ins —
 * releasing the LevelDB locks in the data dir — and exits. SIGINT/SIGTERM (Ctrl-C reaches the whole
 * process group) are ignored: the parent drains its calls in flight against a running store and
 * then asks this process to close.
 *
 * Messages from the parent: `start` (once), `call` (`drain`, `kms-close`, `poller-close`; answered
 * with `reply`), `close`. To the parent: `ready` (endpoints), `failed`, `reply`, and `stats` (KMS
 * call counts and the poller's counters, whenever they change, at most every 100 ms).
 */
type FromParent =
  | { type: 'start'; options: ServicesSideOptions }
  | { type: 'call'; id: number; op: 'drain' | 'kms-close' | 'poller-close'; timeoutMs?: number }
  | { type: 'close' };

const STATS_EVERY_MS = 100;
/** A close that hangs (a stuck LevelDB) must not keep the process: exit anyway after this. */
const CLOSE_DEADLINE_MS = 10_000;

let side: ServicesSide | undefined;
let closing: Promise<void> | undefined;

const send = (message: unknown) => {
  if (process.connected) process.send!(message);
};

function shutdown(code: number): Promise<void> {
  closing ??= (async () => {
    setTimeout(() => process.exit(code), CLOSE_DEADLINE_MS).unref();
    await side?.close().catch(() => undefined);
    process.exit(code);
  })();
  return closing;
}

async function call(op: string, poller: KinesisPoller | undefined, timeoutMs?: number) {
  if (op === 'drain') {
    if (!poller) throw new Error('the telemetry poller is off');
    return poller.drain(timeoutMs);
  }
  if (op === 'kms-close') return side!.services.kms.close();
  if (op === 'poller-close') return poller?.close();
  throw new Error(`unknown call '${op}'`);
}

function reportStats() {
  let last = '';
  setInterval(() => {
    const stats = JSON.stringify({ kms: side?.services.kms.counts, poller: side?.poller?.stats() });
    if (stats === last) return;
    last = stats;
    send({ type: 'stats', ...JSON.parse(stats) });
  }, STATS_EVERY_MS).unref();
}

/**
 * A stand-in whose LevelDB cannot be opened (another keygate holds the data dir's lock) raises on
 * an event nobody listens to: during the start that is a failed start (the parent turns it into
 * one line, local/start-errors.ts), not a trace. Once running, an uncaught error is a bug: trace.
 */
function failedStart(error: unknown) {
  if (side) {
    console.error(error);
    return void shutdown(1);
  }
  send({ type: 'failed', message: errorChain(error) });
  void shutdown(1);
}
process.on('uncaughtException', failedStart);
process.on('unhandledRejection', failedStart);
process.on('SIGINT', () => undefined);
process.on('SIGTERM', () => undefined);
// The pipe to the parent closed: the parent is gone (or closed it on purpose). Never outlive it.
process.on('disconnect', () => void shutdown(0));
process.on('message', (message: FromParent) => {
  if (message.type === 'start') {
    startServicesSide({ ...message.options, telemetryWorker: true }).then((started) => {
      side = started;
      if (closing) return void started.close();
      const { dynamodbEndpoint, dynamodbBackgroundEndpoint, kinesisEndpoint, kms } = started.services;
      send({
        type: 'ready',
        dynamodbEndpoint,
        dynamodbBackgroundEndpoint,
        kinesisEndpoint,
        kmsEndpoint: kms.endpoint,
      });
      reportStats();
    }, failedStart);
  } else if (message.type === 'call') {
    call(message.op, side?.poller, message.timeoutMs).then(
      () => send({ type: 'reply', id: message.id }),
      (error: Error) => send({ type: 'reply', id: message.id, error: error.message }),
    );
  } else if (message.type === 'close') {
    void shutdown(0);
  }
});
if (!process.connected) {
  console.error('local/services-process.ts is started by local/stack.ts (npm start), not on its own');
  process.exit(2);
}
