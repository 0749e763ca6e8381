import { chmodSync, mkdirSync } from 'node:fs';
import { createServer, type RequestListener, type Server } from 'node:http';
import { join } from 'node:path';
import { guardServer, type LocalCredentials, loadLocalCredentials } from './caller-auth.ts';
import { dynaliteOpened, startDynalite } from './dynamodb-transactions.ts';
import { closeServer, listen, startKinesisStandIn } from './kinesis-standin.ts';
import { type KmsStandIn, startKmsStandIn } from './kms-server.ts';

/** What the gateway needs of the KMS stand-in, wherever it runs (this process or ./services-process.ts). */
/** The KMS (and STS) stand-in; `sts` (its recorded calls) only when it runs in this process. */
export type KmsHandle = Pick<KmsStandIn, 'endpoint' | 'credentials' | 'counts' | 'close'> &
  Partial<Pick<KmsStandIn, 'sts'>>;

export interface EmbeddedServicesOptions {
  /** The key pair callers must sign with; default: the data dir's (./caller-auth.ts). */
  credentials?: LocalCredentials;
  /** Fixed ports (a restarted services process takes its predecessor's); default: free ones. */
  ports?: { dynamodb: number; dynamodbBackground: number; kinesis: number; kms: number };
}

/**
 * How long a background DynamoDB call waits for the main door to fall quiet before it goes in
 * anyway (one at a time), so that background work is slowed under load, never starved.
 */
const BACKGROUND_MAX_WAIT_MS = 20;
/**
 * While the main door is busy, a background call also waits this many times as long as the last
 * one took: background work gets at most 1/(1 + BACKGROUND_SHARE_FACTOR) of the store's time under
 * load (a quarter), all of it when the proxy is idle.
 */
const BACKGROUND_SHARE_FACTOR = 3;

/**
 * A second door into the same DynamoDB, for background work (the telemetry consumer): its calls go
 * in one at a time, and only while no call through the main door (the proxy's snapshot reads, the
 * Core API) is in flight, or once one has waited long enough (BACKGROUND_MAX_WAIT_MS, and
 * BACKGROUND_SHARE_FACTOR times the last background call's duration). A proxied call therefore
 * waits behind at most one background call inside dynalite, not behind a whole aggregator batch,
 * and a saturated proxy keeps three quarters of the store; telemetry catches up when it is idle.
 */
function backgroundDoor(main: Server): Server {
  const listener = main.listeners('request')[0] as RequestListener;
  main.removeAllListeners('request');
  let mainInFlight = 0;
  let backgroundBusy = false;
  let lastBackgroundMs = 0;
  let lastBackgroundEnd = 0;
  let timer: NodeJS.Timeout | undefined;
  const waiting: Array<{ since: number; go(): void }> = [];
  const admit = () => {
    const head = waiting[0];
    if (!head || backgroundBusy) return;
    const waitMs = Math.max(BACKGROUND_MAX_WAIT_MS, BACKGROUND_SHARE_FACTOR * lastBackgroundMs);
    // Counted from its arrival, or from the end of the previous background call if that is later.
    const waited = performance.now() - Math.max(head.since, lastBackgroundEnd);
    if (mainInFlight > 0 && waited < waitMs) {
      // Look again when the wait is over (or earlier, when the main door falls quiet).
      clearTimeout(timer);
      timer = setTimeout(admit, waitMs - waited + 1).unref();
      return;
    }
    waiting.shift();
    backgroundBusy = true;
    head.go();
  };
  main.on('request', (req, res) => {
    mainInFlight++;
    res.once('close', () => {
      mainInFlight--;
      admit();
    });
    listener(req, res);
  });
  return createServer((req, res) => {
    const go = () => {
      const began = performance.now();
      res.once('close', () => {
        lastBackgroundEnd = performance.now();
        lastBackgroundMs = lastBackgroundEnd - began;
        backgroundBusy = false;
        admit();
      });
      listener(req, res);
    };
    waiting.push({ since: performance.now(), go });
    admit();
  });
}

/**
 * The embedded AWS stand-ins, each a real server speaking the service's wire protocol, so the same
 * AWS SDK v3 clients run locally as in Lambda:
 * - DynamoDB: dynalite (pure JavaScript, LevelDB on disk under the data dir), plus
 *   TransactWriteItems/TransactGetItems from ./dynamodb-transactions.ts (docs/embedded-dynamodb.md);
 * - Kinesis: kinesalite (LevelDB on disk);
 * - KMS: keygate's own stand-in (./kms-server.ts), master key in the data dir, mode 0600.
 * Without a data dir everything lives in memory (tests).
 *
 * Each stand-in answers only this gateway: every call must be SigV4-signed with the data dir's own
 * random key pair (`credentials`; ./caller-auth.ts), anything else gets 403. The data dir is 0700.
 */
export interface EmbeddedServices {
  dynamodbEndpoint: string;
  /** The same DynamoDB for background work, behind the main door's calls (backgroundDoor). */
  dynamodbBackgroundEndpoint: string;
  kinesisEndpoint: string;
  kms: KmsHandle;
  /** The only credentials the stand-ins accept; hand them to the gateway's SDK clients. */
  credentials: LocalCredentials;
  /** The TCP ports the stand-ins listen on (never targets). */
  ports: number[];
  close(): Promise<void>;
}

export async function startEmbeddedServices(
  dataDir?: string,
  options: EmbeddedServicesOptions = {},
): Promise<EmbeddedServices> {
  if (dataDir) {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    // An existing directory keeps its mode on mkdir: tighten it, it holds the keys.
    chmodSync(dataDir, 0o700);
  }
  const credentials = options.credentials ?? loadLocalCredentials(dataDir);
  const ddb: Server = startDynalite({
    path: dataDir ? join(dataDir, 'dynamodb') : undefined,
    createTableMs: 0,
    deleteTableMs: 0,
    updateTableMs: 0,
  });
  guardServer(ddb, credentials);
  const ddbBackground = backgroundDoor(ddb);
  const started = await Promise.allSettled([
    // Listening only once its LevelDB is open (or reporting why it cannot be: a held lock).
    dynaliteOpened(ddb).then(() => listen(ddb, options.ports?.dynamodb)),
    listen(ddbBackground, options.ports?.dynamodbBackground),
    startKinesisStandIn(dataDir, credentials, options.ports?.kinesis),
    startKmsStandIn({
      keyFile: dataDir ? join(dataDir, 'kms-master-key') : undefined,
      credentials,
      port: options.ports?.kms,
    }),
  ] as const);
  const [ddbUp, backgroundUp, kinesisUp, kmsUp] = started;
  if (
    ddbUp.status === 'rejected' ||
    backgroundUp.status === 'rejected' ||
    kinesisUp.status === 'rejected' ||
    kmsUp.status === 'rejected'
  ) {
    // One could not listen (a port taken): release the others (and their LevelDB locks).
    await Promise.all([closeServer(ddb), closeServer(ddbBackground)]);
    if (kinesisUp.status === 'fulfilled') await kinesisUp.value.close();
    if (kmsUp.status === 'fulfilled') await kmsUp.value.close();
    throw started.map((s) => (s.status === 'rejected' ? s.reason : undefined)).find(Boolean);
  }
  const dynamodbEndpoint = ddbUp.value;
  const dynamodbBackgroundEndpoint = backgroundUp.value;
  const kinesis = kinesisUp.value;
  const kinesisEndpoint = kinesis.endpoint;
  const kms = kmsUp.value;
  return {
    dynamodbEndpoint,
    dynamodbBackgroundEndpoint,
    kinesisEndpoint,
    kms,
    credentials,
    ports: [dynamodbEndpoint, dynamodbBackgroundEndpoint, kinesisEndpoint, kms.endpoint].map((url) =>
      Number(new URL(url).port),
    ),
    close: async () => {
      await Promise.all([closeServer(ddb), closeServer(ddbBackground), kinesis.close(), kms.close()]);
    },
  };
}
