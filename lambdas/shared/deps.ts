import type { KinesisClient } from '@aws-sdk/client-kinesis';
import type { KMSClient } from '@aws-sdk/client-kms';
import type { STSClient } from '@aws-sdk/client-sts';
import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { createKmsClient } from '../crypto/kms-client.ts';
import { createStsClient } from '../crypto/sts-client.ts';
import { createDocumentClient } from '../storage/dynamodb-client.ts';
import { createKinesisClient } from '../telemetry/kinesis-client.ts';
import type { Config } from './config.ts';

/** A table and the client that reaches it. */
export interface TableRef {
  ddb: DynamoDBDocumentClient;
  tableName: string;
}

/** One regional cell: its table, its KMS key and its telemetry stream. */
export interface Cell extends TableRef {
  region: string;
  kms: KMSClient;
  kmsKeyId: string;
  kinesis: KinesisClient;
  streamName?: string;
  /** STS in the cell's region: the proxy assumes the roles of `awsSigV4` target credentials. */
  sts: STSClient;
}

/** Everything a handler needs from the outside world, handed in rather than imported. */
export interface Deps {
  config: Config;
  home: TableRef;
  cells: Record<string, Cell>;
  now: () => Date;
}

/** Endpoints of the embedded stand-ins; absent in AWS, where the SDK finds the real ones. */
export interface Endpoints {
  dynamodb?: string;
  kms?: string;
  kinesis?: string;
  /** STS; default the configuration's `stsEndpoint` (KEYGATE_STS_ENDPOINT), else AWS's own. */
  sts?: string;
  credentials?: { accessKeyId: string; secretAccessKey: string };
}

/** Builds the clients for the home table and every cell, once, at init. */
export function createDeps(config: Config, endpoints: Endpoints = {}): Deps {
  const credentials = endpoints.credentials;
  const ddbByRegion = new Map<string, DynamoDBDocumentClient>();
  const ddbFor = (region: string) => {
    let client = ddbByRegion.get(region);
    if (!client) {
      client = createDocumentClient({ region, endpoint: endpoints.dynamodb, credentials });
      ddbByRegion.set(region, client);
    }
    return client;
  };
  const cells: Record<string, Cell> = {};
  for (const [region, cell] of Object.entries(config.cells)) {
    cells[region] = {
      region,
      tableName: cell.tableName,
      ddb: ddbFor(region),
      kms: createKmsClient({ region, endpoint: endpoints.kms, credentials }),
      kmsKeyId: cell.kmsKeyId,
      kinesis: createKinesisClient({ region, endpoint: endpoints.kinesis, credentials }),
      streamName: cell.streamName,
      sts: createStsClient({ region, endpoint: endpoints.sts ?? config.stsEndpoint, credentials }),
    };
  }
  return {
    config,
    home: { ddb: ddbFor(config.homeRegion), tableName: config.homeTableName },
    cells,
    now: () => new Date(),
  };
}

/** Closes every client `createDeps` made (their sockets), when a local stack or a test is done. */
export function destroyDeps(deps: Deps): void {
  for (const cell of Object.values(deps.cells)) {
    cell.ddb.destroy();
    cell.kms.destroy();
    cell.sts.destroy();
    cell.kinesis.destroy();
  }
  deps.home.ddb.destroy();
}
