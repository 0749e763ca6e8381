import { workerData } from 'node:worker_threads';
import type { LocalCredentials } from './caller-auth.ts';
import { startKinesisStandIn } from './kinesis-standin.ts';
import { serveWorkerThread } from './worker-thread.ts';

/**
 * The embedded Kinesis on a worker thread of the services process (./embedded.ts, `kinesisThread`),
 * at the store's priority: records shipped by the proxy are taken in on an event loop of their
 * own, not between the store's snapshot reads. Ready value: the endpoint.
 */
const { dataDir, credentials, port } = workerData as {
  dataDir?: string;
  credentials: LocalCredentials;
  port?: number;
};
await serveWorkerThread(async () => {
  const kinesis = await startKinesisStandIn(dataDir, credentials, port);
  return { ready: kinesis.endpoint, close: kinesis.close };
});
