import { Duration, Stack } from 'aws-cdk-lib';
import type * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import type { CellKey } from './cell-key.ts';
import { installPrefix, stageOf } from './cell-names.ts';
import type { CellTable } from './cell-table.ts';
import type { EgressNetwork } from './egress-network.ts';
import { type CustomDomain, HttpGateway } from './http-gateway.ts';
import { KeygateFunction } from './keygate-function.ts';
import type { TelemetryPipeline } from './telemetry-pipeline.ts';

export interface ProxyEndpointProps {
  table: CellTable;
  key: CellKey;
  telemetry: TelemetryPipeline;
  logRetention: logs.RetentionDays;
  throttle: { rateLimit: number; burstLimit: number };
  customDomain?: CustomDomain;
  /** Concurrency cap of the proxy function (reserved); undefined: uncapped. */
  reservedConcurrency?: number;
  /** The optional egress mode: the function runs in this network's private subnets. */
  egress?: EgressNetwork;
}

/** The routes of the sync data plane: `/api/{proxyId}/{target path}` with any method. */
export const PROXY_ROUTES = ['ANY /api/{proxyId}/{proxy+}', 'ANY /api/{proxyId}'];

/**
 * The cell's proxy (data plane): a dedicated function behind an HTTP API (see the README for the
 * comparison with a function URL). The function may read its proxies' snapshots, update their
 * rate-limit counters, decrypt target secrets under their `{clientId, credentialId}` context and
 * write its logs, whose telemetry lines a subscription filter forwards to the cell's stream — and
 * nothing else.
 */
export class ProxyEndpoint extends Construct {
  readonly fn: KeygateFunction;
  readonly gateway: HttpGateway;

  constructor(scope: Construct, id: string, props: ProxyEndpointProps) {
    super(scope, id);
    this.fn = new KeygateFunction(this, 'Function', {
      entry: 'lambdas/data-plane/handler.ts',
      description: 'regional proxy (data plane)',
      logKey: props.key.key,
      logRetention: props.logRetention,
      // More memory is more CPU: TLS to the vendor and AES-GCM are on the hot path.
      memorySize: 1024,
      // Just under API Gateway's 30 s integration limit, so the proxy can answer 504 itself.
      timeout: Duration.seconds(29),
      reservedConcurrency: props.reservedConcurrency,
      vpc: props.egress?.placement(),
    });
    props.table.grantProxyAccess(this.fn);
    props.key.grantOpenSecrets(this.fn);
    props.telemetry.forwardTelemetryLogs(this.fn);
    this.gateway = new HttpGateway(this, 'Http', {
      apiName: `${installPrefix(stageOf(this))}-${Stack.of(this).region}-proxy`,
      fn: this.fn,
      routes: PROXY_ROUTES,
      throttle: props.throttle,
      logKey: props.key.key,
      logRetention: props.logRetention,
      customDomain: props.customDomain,
      noAuthorizerReason:
        'The proxy authenticates every call itself with the proxy key (hash compared in constant time, ' +
        'read from the current item on each request) so revocation is immediate and unknown proxy and ' +
        'bad key answer the same 401; an authorizer would cache answers and add a lookup to the hot path.',
    });
  }
}
