import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { type ClientOptions, sdkClientConfig } from '../shared/aws-options.ts';

/**
 * The one place a DynamoDB client is made. Created at module scope by the Lambda entries and reused
 * across invocations; the local mode and the tests pass an endpoint of the embedded store instead.
 */
export function createDocumentClient(options: ClientOptions): DynamoDBDocumentClient {
  return DynamoDBDocumentClient.from(new DynamoDBClient(sdkClientConfig(options)), {
    marshallOptions: { removeUndefinedValues: true, convertClassInstanceToMap: false },
  });
}
