import { Duration, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as acm from 'aws-cdk-lib/aws-certificatemanager';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { ZXCVBN_PACKAGES } from '../lambdas/crypto/key-strength.ts';
import type { CellKey } from './cell-key.ts';
import { grantSealSecrets } from './cell-key.ts';
import { coreApiRoleName, installPrefix, stageOf } from './cell-names.ts';
import type { CellTable } from './cell-table.ts';
import { grantCoreApiTableAccess } from './cell-table.ts';
import { EdgeProtection, type EdgeRateLimits } from './edge-protection.ts';
import { API_PERMISSION_ACK, type CustomDomain } from './http-gateway.ts';
import { KeygateFunction } from './keygate-function.ts';

/** The Core API function's entry, relative to the project root. */
export const CORE_API_ENTRY = 'lambdas/control-plane/handler.ts';
/** Shipped beside the Core API's bundle, not in it (`bench/bundle-size.ts` bundles the same way). */
export const CORE_API_LAZY_PACKAGES: readonly string[] = ZXCVBN_PACKAGES;

/**
 * The access-log line of the Core API's REST API, field by field: no header (so never
 * `Authorization`), no query string, no body, and the route template (`/{proxy+}`) rather than
 * the raw path, which holds resource ids.
 */
export const REST_ACCESS_LOG_FIELDS = {
  requestId: '$context.requestId',
  requestTime: '$context.requestTime',
  sourceIp: '$context.identity.sourceIp',
  userAgent: '$context.identity.userAgent',
  httpMethod: '$context.httpMethod',
  resourcePath: '$context.resourcePath',
  protocol: '$context.protocol',
  status: '$context.status',
  responseLength: '$context.responseLength',
  responseLatency: '$context.responseLatency',
  integrationLatency: '$context.integrationLatency',
  integrationStatus: '$context.integration.status',
  integrationError: '$context.integration.error',
  wafStatus: '$context.waf.status',
  lambdaRequestId: '$context.integration.requestId',
} as const;

/**
 * The stage settings both REST APIs share: stage `v1`, throttling, X-Ray, error-only execution logs
 * (never request or response data) and the access-log line above.
 */
export function restStageOptions(
  throttle: { rateLimit: number; burstLimit: number },
  accessLogs: logs.ILogGroup,
): apigw.StageOptions {
  return {
    stageName: 'v1',
    throttlingRateLimit: throttle.rateLimit,
    throttlingBurstLimit: throttle.burstLimit,
    tracingEnabled: true,
    loggingLevel: apigw.MethodLoggingLevel.ERROR,
    dataTraceEnabled: false,
    metricsEnabled: true,
    accessLogDestination: new apigw.LogGroupLogDestination(accessLogs),
    accessLogFormat: apigw.AccessLogFormat.custom(JSON.stringify(REST_ACCESS_LOG_FIELDS)),
  };
}

export interface CoreApiProps {
  /** Every served region; the first is the home region, where this construct lives. */
  regions: string[];
  /** The home cell's table and key (constructs in this stack). */
  table: CellTable;
  key: CellKey;
  logRetention: logs.RetentionDays;
  /** Same value the aggregator writes with, so request-log queries agree with the TTL. */
  requestLogRetentionDays: number;
  throttle: { rateLimit: number; burstLimit: number };
  /** Reserved concurrency of the function (undefined: none, for small accounts). */
  reservedConcurrency?: number;
  edgeLimits: EdgeRateLimits;
  customDomain?: CustomDomain;
}

/**
 * The Core API (control plane), in the home region only: one function behind an API Gateway REST
 * API (regional), because only a REST API stage can take an AWS WAF web ACL. The function reads
 * the payload 1.0 event as it reads 2.0 (@middy/http-router and the header normaliser accept both;
 * the domain code uses body, headers, path and query parameters only).
 *
 * It reads and writes every item of the home table (users, tokens, clients) and of every cell's
 * table (credentials, targets, proxies and rules live in the cell of their region), and seals
 * target secrets with the key of the credential's cell. Other cells are reached by their
 * deterministic names; `KEYGATE_CELLS` tells the function every cell.
 */
export class CoreApi extends Construct {
  readonly fn: KeygateFunction;
  readonly api: apigw.LambdaRestApi;
  readonly edge: EdgeProtection;
  readonly accessLogs: logs.LogGroup;
  readonly domain?: apigw.DomainName;
  /** Base URL callers use. */
  readonly url: string;

  constructor(scope: Construct, id: string, props: CoreApiProps) {
    super(scope, id);
    const homeRegion = Stack.of(this).region;
    const name = `${installPrefix(stageOf(this))}-${homeRegion}-core-api`;
    this.fn = new KeygateFunction(this, 'Function', {
      entry: CORE_API_ENTRY,
      description: 'Core API (control plane)',
      // zxcvbn and its dictionaries: loaded on the first user-supplied key only, not at cold start.
      lazyPackages: CORE_API_LAZY_PACKAGES,
      logKey: props.key.key,
      logRetention: props.logRetention,
      memorySize: 512,
      timeout: Duration.seconds(10),
      // Cells in other regions name this role in their key policies.
      roleName: coreApiRoleName(homeRegion, stageOf(this)),
      reservedConcurrency: props.reservedConcurrency,
      environment: { KEYGATE_REQUEST_LOG_RETENTION_DAYS: String(props.requestLogRetentionDays) },
    });
    this.fn.useHomeTable(props.table.table.tableName);
    for (const region of props.regions) {
      const own = region === homeRegion;
      grantCoreApiTableAccess(this.fn, region, own ? props.key.key : undefined);
      grantSealSecrets(this.fn, region, own ? props.key.key : undefined);
    }

    this.accessLogs = new logs.LogGroup(this, 'AccessLogs', {
      retention: props.logRetention,
      encryptionKey: props.key.key,
      removalPolicy: RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
    });
    this.api = new apigw.LambdaRestApi(this, 'Rest', {
      restApiName: name,
      description: 'keygate Core API (control plane)',
      handler: this.fn,
      proxy: true,
      endpointConfiguration: { types: [apigw.EndpointType.REGIONAL] },
      disableExecuteApiEndpoint: props.customDomain !== undefined,
      // API Gateway writes REST access logs through the account's CloudWatch role (one per account
      // and region); it is kept when a stack goes, since other installations may use it.
      cloudWatchRole: true,
      cloudWatchRoleRemovalPolicy: RemovalPolicy.RETAIN,
      deployOptions: restStageOptions(props.throttle, this.accessLogs),
    });
    this.edge = new EdgeProtection(this, 'Edge', {
      name,
      limits: props.edgeLimits,
      logKey: props.key.key,
      logRetention: props.logRetention,
    });
    this.edge.attachTo(this.api.deploymentStage);

    if (props.customDomain) {
      this.domain = new apigw.DomainName(this, 'Domain', {
        domainName: props.customDomain.domainName,
        certificate: acm.Certificate.fromCertificateArn(
          this,
          'Certificate',
          props.customDomain.certificateArn,
        ),
        endpointType: apigw.EndpointType.REGIONAL,
        securityPolicy: apigw.SecurityPolicy.TLS_1_2,
      });
      this.domain.addBasePathMapping(this.api, { stage: this.api.deploymentStage });
    }
    this.url = props.customDomain ? `https://${props.customDomain.domainName}/` : this.api.url;
    acknowledgeRestApiFindings(this);
  }
}

/** Findings of the Core API's REST API that keygate accepts by design, each with its reason. */
function acknowledgeRestApiFindings(core: CoreApi): void {
  const both = (rule: string, reason: string) => {
    for (const pack of ['HIPAA.Security', 'NIST.800.53.R5'])
      Validations.of(core).acknowledge({ id: `${pack}-${rule}`, reason });
  };
  Validations.of(core.api).acknowledge(API_PERMISSION_ACK);
  Validations.of(core).acknowledge(
    {
      id: 'AwsSolutions-APIG4',
      reason:
        'Every Core API call is authenticated inside the function by a strongly consistent token ' +
        'lookup, so a revoked or rotated token fails on the very next call; an API Gateway ' +
        'authorizer would cache its answer and add a second lookup. GET /openapi.json is public by design.',
    },
    {
      id: 'AwsSolutions-COG4',
      reason:
        'keygate has its own users and bearer tokens (hashed, revocable, checked on every call); a ' +
        'Cognito user pool would be a second identity store to keep in step with it.',
    },
    {
      id: 'AwsSolutions-APIG2',
      reason:
        'One proxy resource forwards every route to the function, which validates each body and ' +
        'query with the zod schema of its route (the same schemas build the OpenAPI document) and ' +
        'answers a 400 JSON error; API Gateway models would duplicate those schemas.',
    },
    {
      id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]',
      reason:
        "API Gateway's account-level CloudWatch role, which REST API logging requires; AWS maintains " +
        'the managed policy for exactly this service role, and only apigateway.amazonaws.com can assume it.',
    },
  );
  both(
    'APIGWCacheEnabledAndEncrypted',
    'Every Core API answer is per caller and marked no-store; a stage cache would serve one ' +
      "caller's data to another or stale data after a revocation, so caching stays off.",
  );
  both(
    'APIGWSSLEnabled',
    'A client certificate authenticates API Gateway to an HTTP backend; the backend here is a Lambda ' +
      'integration invoked through the Lambda API with IAM, where a client certificate does not apply.',
  );
}
