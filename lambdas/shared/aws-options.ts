import { NodeHttpHandler } from '@smithy/node-http-handler';

/** What every AWS client factory takes: the region, and an endpoint only when not talking to AWS. */
export interface ClientOptions {
  region: string;
  endpoint?: string;
  credentials?: { accessKeyId: string; secretAccessKey: string };
  maxAttempts?: number;
  requestTimeoutMs?: number;
}

/**
 * The SDK client settings keygate uses for every service: HTTP/1.1 keep-alive (the embedded
 * stand-ins speak HTTP/1.1 only, and it is what Lambda's SDK clients use), short connect and request
 * timeouts so a slow dependency becomes a fast 503 rather than a hung request, bounded retries.
 */
export function sdkClientConfig(options: ClientOptions) {
  return {
    region: options.region,
    endpoint: options.endpoint,
    credentials: options.credentials,
    maxAttempts: options.maxAttempts ?? 3,
    requestHandler: new NodeHttpHandler({
      connectionTimeout: 1000,
      requestTimeout: options.requestTimeoutMs ?? 3000,
      // Without it the handler only logs a warning and the call hangs on a peer that never answers.
      throwOnRequestTimeout: true,
      httpAgent: { keepAlive: true },
      httpsAgent: { keepAlive: true },
    }),
  };
}
