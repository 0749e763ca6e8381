import { STSClient } from '@aws-sdk/client-sts';
import { type ClientOptions, sdkClientConfig } from '../shared/aws-options.ts';

/**
 * The one place an STS client is made: the proxy assumes the roles `awsSigV4` target credentials
 * name (real regional STS in AWS; KEYGATE_STS_ENDPOINT, or the local stand-in, otherwise).
 */
export function createStsClient(options: ClientOptions): STSClient {
  return new STSClient(sdkClientConfig(options));
}
