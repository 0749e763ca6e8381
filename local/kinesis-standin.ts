import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import kinesalite from 'kinesalite';
import { guardServer, type LocalCredentials } from './caller-auth.ts';

/**
 * The embedded Kinesis: kinesalite (LevelDB under the data dir's `kinesis/`, or in memory), answering
 * only callers that sign with `credentials` (./caller-auth.ts).
 */
export interface KinesisStandIn {
  endpoint: string;
  close(): Promise<void>;
}

export async function listen(server: Server, port = 0): Promise<string> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections?.();
  });
}

export async function startKinesisStandIn(
  dataDir: string | undefined,
  credentials: LocalCredentials,
  port?: number,
): Promise<KinesisStandIn> {
  const server: Server = kinesalite({
    path: dataDir ? join(dataDir, 'kinesis') : undefined,
    createStreamMs: 0,
    deleteStreamMs: 0,
    updateStreamMs: 0,
    shardLimit: 50,
  });
  guardServer(server, credentials);
  const endpoint = await listen(server, port).catch(async (error: unknown) => {
    await closeServer(server);
    throw error;
  });
  return { endpoint, close: () => closeServer(server) };
}
