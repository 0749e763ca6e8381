import { KMSClient } from '@aws-sdk/client-kms';
import { type ClientOptions, sdkClientConfig } from '../shared/aws-options.ts';

/** The one place a KMS client is made (real KMS in AWS, the KMS stand-in locally). */
export function createKmsClient(options: ClientOptions): KMSClient {
  return new KMSClient(sdkClientConfig(options));
}
