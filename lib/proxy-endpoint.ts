import { Duration, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import type { CellKey } from './cell-key.ts';
import { installPrefix, stageOf } from './cell-names.ts';
import type { CellTable } from './cell-table.ts';
import { EdgeProtection, type EdgeRateLimits } from './edge-protection.ts';
import type { EgressNetwork } from './egress-network.ts';
import type { CustomDomain } from './http-gateway.ts';
import { KeygateFunction } from './keygate-function.ts';
import { StreamingGateway } from './streaming-gateway.ts';
import type { TelemetryPipeline } from './telemetry-pipeline.ts';

export interface ProxyEndpointProps {
  table: CellTable;
  key: CellKey;
  telemetry: TelemetryPipeline;
  logRetention: logs.RetentionDays;
  throttle: { rateLimit: number; burstLimit: number };
  customDomain?: CustomDomain;
  /** The proxy function's timeout, which bounds the longest stream (Lambda allows 15 min). */
  timeout?: Duration;
  /** Concurrency cap of the proxy function (reserved); undefined: uncapped. */
  reservedConcurrency?: number;
  /** The optional egress mode: the function runs in this network's private subnets. */
  egress?: EgressNetwork;
  /** Rate limits of the WAF web ACL in front of the proxy's stage. */
  edgeLimits: EdgeRateLimits;
  /** No other REST API in this stack sets up API Gateway's account-wide CloudWatch role. */
  createsCloudWatchRole: boolean;
  /**
   * IAM roles `awsSigV4` target credentials may name: the function may call sts:AssumeRole on
   * exactly these (each role's trust policy must also name the proxy's role). Empty: no STS right.
   */
  assumableTargetRoleArns?: string[];
}

/** The resources of the sync data plane: `/api/{proxyId}/{target path}`, any method. */
export const PROXY_PATHS = ['/api/{proxyId}', '/api/{proxyId}/{proxy+}'];

/** Default proxy function timeout: Lambda's maximum, so a stream may last as long as the platform allows. */
export const DEFAULT_PROXY_TIMEOUT = Duration.minutes(15);

/**
 * The cell's proxy (data plane): a dedicated response-streaming function behind a REST API in
 * STREAM transfer mode (docs/streaming.md says why not an HTTP API or a function URL). The function may read its proxies' snapshots, update their
 * rate-limit counters, decrypt target secrets under their `{clientId, credentialId}` context and
 * write its logs, whose telemetry lines a subscription filter forwards to the cell's stream,
 * assume the roles the operator listed for `awsSigV4` targets (none by default) — and nothing else.
 */
export class ProxyEndpoint extends Construct {
  readonly fn: KeygateFunction;
  readonly gateway: StreamingGateway;
  readonly edge: EdgeProtection;

  constructor(scope: Construct, id: string, props: ProxyEndpointProps) {
    super(scope, id);
    this.fn = new KeygateFunction(this, 'Function', {
      entry: 'lambdas/data-plane/handler.ts',
      description: 'regional proxy (data plane)',
      logKey: props.key.key,
      logRetention: props.logRetention,
      // More memory is more CPU: TLS to the vendor and AES-GCM are on the hot path.
      memorySize: 1024,
      // Streams bill their whole wall time; the handler's own deadlines end them earlier.
      timeout: props.timeout ?? DEFAULT_PROXY_TIMEOUT,
      reservedConcurrency: props.reservedConcurrency,
      vpc: props.egress?.placement(),
    });
    props.table.grantProxyAccess(this.fn);
    props.key.grantOpenSecrets(this.fn);
    props.key.grantSealOAuthGrants(this.fn);
    props.telemetry.forwardTelemetryLogs(this.fn);
    this.allowAssumingTargetRoles(props.assumableTargetRoleArns ?? []);
    const name = `${installPrefix(stageOf(this))}-${Stack.of(this).region}-proxy`;
    this.gateway = new StreamingGateway(this, 'Rest', {
      apiName: name,
      createsCloudWatchRole: props.createsCloudWatchRole,
      fn: this.fn,
      paths: PROXY_PATHS,
      integrationTimeout: props.timeout ?? DEFAULT_PROXY_TIMEOUT,
      throttle: props.throttle,
      logKey: props.key.key,
      logRetention: props.logRetention,
      customDomain: props.customDomain,
      noAuthorizerReason:
        'The proxy authenticates every call itself with the proxy key (hash compared in constant time, ' +
        'read from the current item on each request) so revocation is immediate and unknown proxy and ' +
        'bad key answer the same 401; an authorizer would cache answers and add a lookup to the hot path.',
    });
    // Per-tenant protection at the edge, before any function runs (lib/edge-protection.ts).
    this.edge = new EdgeProtection(this, 'Edge', {
      name,
      limits: props.edgeLimits,
      logKey: props.key.key,
      logRetention: props.logRetention,
    });
    this.edge.attachTo(this.gateway.api.deploymentStage);
  }

  /** sts:AssumeRole on exactly `roleArns` (awsSigV4 target credentials); nothing when empty. */
  private allowAssumingTargetRoles(roleArns: string[]): void {
    if (roleArns.length === 0) return;
    this.fn.addToRolePolicy(new iam.PolicyStatement({ actions: ['sts:AssumeRole'], resources: roleArns }));
  }
}
