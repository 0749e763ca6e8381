import { KinesisClient } from '@aws-sdk/client-kinesis';
import { type ClientOptions, sdkClientConfig } from '../shared/aws-options.ts';

/** The one place a Kinesis client is made; HTTP/1.1, since we only call PutRecords. */
export function createKinesisClient(options: ClientOptions): KinesisClient {
  return new KinesisClient(sdkClientConfig(options));
}
