import { type Duration, RemovalPolicy, Validations } from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as acm from 'aws-cdk-lib/aws-certificatemanager';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import type { CustomDomain } from './http-gateway.ts';

/**
 * The access-log line of the streaming REST API: like the HTTP APIs' (http-gateway.ts), it lists
 * what it keeps — no header (so never `Authorization`), no query string, no body.
 */
export const REST_ACCESS_LOG_FIELDS = {
  requestId: '$context.requestId',
  requestTime: '$context.requestTime',
  sourceIp: '$context.identity.sourceIp',
  userAgent: '$context.identity.userAgent',
  httpMethod: '$context.httpMethod',
  resourcePath: '$context.resourcePath',
  path: '$context.path',
  protocol: '$context.protocol',
  status: '$context.status',
  responseLength: '$context.responseLength',
  responseLatency: '$context.responseLatency',
  integrationLatency: '$context.integrationLatency',
  integrationStatus: '$context.integrationStatus',
  integrationError: '$context.integration.error',
  lambdaRequestId: '$context.integration.requestId',
} as const;

export interface StreamingGatewayProps {
  /** The REST API's name (unique per installation and region). */
  apiName: string;
  fn: lambda.IFunction;
  /** Resource paths, each answering ANY method, e.g. `/api/{proxyId}/{proxy+}`. */
  paths: string[];
  /** How long API Gateway waits for the integration; at most the function's timeout. */
  integrationTimeout: Duration;
  throttle: { rateLimit: number; burstLimit: number };
  logKey: kms.IKey;
  logRetention: logs.RetentionDays;
  customDomain?: CustomDomain;
  /** Why the methods have no API Gateway authorizer (the function authenticates each call). */
  noAuthorizerReason: string;
}

/**
 * An API Gateway REST API whose Lambda proxy integration streams (`responseTransferMode: STREAM`):
 * the function's status and headers go to the client as soon as it sends them, then the body as
 * it is written — up to 15 minutes, 5 minutes of idle at most, past 10 MB throttled to 2 MB/s;
 * requests are still buffered (10 MB). Why a REST API and not a function URL: it takes AWS WAF,
 * stage throttling and usage plans directly, with no CloudFront distribution to run in front
 * (docs/streaming.md). Binary media `*\/*`: every body passes as bytes, never re-encoded.
 */
export class StreamingGateway extends Construct {
  readonly api: apigw.RestApi;
  readonly accessLogs: logs.LogGroup;
  /** Base URL callers use (stage included on the execute-api host). */
  readonly url: string;

  constructor(scope: Construct, id: string, props: StreamingGatewayProps) {
    super(scope, id);
    this.accessLogs = new logs.LogGroup(this, 'AccessLogs', {
      retention: props.logRetention,
      encryptionKey: props.logKey,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    this.api = new apigw.RestApi(this, 'Api', {
      restApiName: props.apiName,
      description: `keygate ${id} (streaming)`,
      endpointConfiguration: { types: [apigw.EndpointType.REGIONAL] },
      binaryMediaTypes: ['*/*'],
      disableExecuteApiEndpoint: props.customDomain !== undefined,
      // Execution logs need an account-wide API Gateway role; access logs (below) are kept instead.
      cloudWatchRole: false,
      deployOptions: {
        stageName: 'v1',
        throttlingRateLimit: props.throttle.rateLimit,
        throttlingBurstLimit: props.throttle.burstLimit,
        tracingEnabled: true,
        accessLogDestination: new apigw.LogGroupLogDestination(this.accessLogs),
        accessLogFormat: apigw.AccessLogFormat.custom(JSON.stringify(REST_ACCESS_LOG_FIELDS)),
      },
      domainName: props.customDomain
        ? {
            domainName: props.customDomain.domainName,
            certificate: acm.Certificate.fromCertificateArn(
              this,
              'Certificate',
              props.customDomain.certificateArn,
            ),
            securityPolicy: apigw.SecurityPolicy.TLS_1_2,
            endpointType: apigw.EndpointType.REGIONAL,
          }
        : undefined,
    });
    const integration = new apigw.LambdaIntegration(props.fn, {
      proxy: true,
      responseTransferMode: apigw.ResponseTransferMode.STREAM,
      timeout: props.integrationTimeout,
    });
    for (const path of props.paths) {
      const resource = this.api.root.resourceForPath(path);
      resource.addMethod('ANY', integration, { authorizationType: apigw.AuthorizationType.NONE });
    }
    this.url = props.customDomain ? `https://${props.customDomain.domainName}/` : this.api.url;
    acknowledgeGatewayFindings(this.api, props.noAuthorizerReason);
  }
}

/** Findings a credential proxy's REST API raises by design, each with the reason it is accepted. */
function acknowledgeGatewayFindings(api: apigw.RestApi, noAuthorizerReason: string): void {
  const ack = (id: string, reason: string) => Validations.of(api).acknowledge({ id, reason });
  const both = (rule: string, reason: string) => {
    for (const pack of ['HIPAA.Security', 'NIST.800.53.R5']) ack(`${pack}-${rule}`, reason);
  };
  ack('AwsSolutions-APIG4', noAuthorizerReason);
  ack('AwsSolutions-COG4', noAuthorizerReason);
  ack(
    'AwsSolutions-APIG2',
    'Requests are validated by the proxy function itself (canonical path, header hygiene, rules on ' +
      'the exact bytes sent); an API Gateway model would judge a different parse of the same request.',
  );
  const noExecutionLogs =
    'Execution logging needs the account-wide API Gateway CloudWatch role and logs request data; the ' +
    'stage writes access logs (a fixed list of fields, no header, query or body) to an encrypted log ' +
    'group, and the function logs every call as a masked telemetry record.';
  ack('AwsSolutions-APIG6', noExecutionLogs);
  both('APIGWExecutionLoggingEnabled', noExecutionLogs);
  both(
    'APIGWCacheEnabledAndEncrypted',
    'A credential proxy must never answer from a cache: every call is authenticated and judged ' +
      'against the current rules, and answers are per caller.',
  );
  both(
    'APIGWSSLEnabled',
    'The integration is a Lambda proxy integration (an AWS API call signed by API Gateway); backend ' +
      'client certificates apply to HTTP integrations only.',
  );
  ack(
    'AwsSolutions-APIG3',
    'WAF is attached to the stage by the deployment’s WAF construct when configured; the proxy ' +
      'itself rate-limits per proxy and the stage throttles per cell.',
  );
  both(
    'APIGWAssociatedWithWAF',
    'WAF is attached to the stage by the deployment’s WAF construct when configured; the proxy ' +
      'itself rate-limits per proxy and the stage throttles per cell.',
  );
}
