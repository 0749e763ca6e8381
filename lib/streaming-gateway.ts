import { type Duration, RemovalPolicy, Validations } from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as acm from 'aws-cdk-lib/aws-certificatemanager';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { REST_ACCESS_LOG_FIELDS, restStageOptions } from './core-api.ts';
import { API_PERMISSION_ACK, type CustomDomain } from './http-gateway.ts';

/** The access-log line: the Core API's (core-api.ts) — no header, query, body or raw path. */
export { REST_ACCESS_LOG_FIELDS };

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
  /**
   * Whether this API sets up API Gateway's account-wide CloudWatch role (one per account and
   * region): true where no other REST API of the installation does (the Core API does in the home
   * region).
   */
  createsCloudWatchRole: boolean;
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
      // Kept on update and delete, not when the first create rolls back (a retry must not collide).
      removalPolicy: RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
    });
    this.api = new apigw.RestApi(this, 'Api', {
      restApiName: props.apiName,
      description: `keygate ${id} (streaming)`,
      endpointConfiguration: { types: [apigw.EndpointType.REGIONAL] },
      binaryMediaTypes: ['*/*'],
      disableExecuteApiEndpoint: props.customDomain !== undefined,
      // Execution logs (errors only) need API Gateway's account-wide CloudWatch role.
      cloudWatchRole: props.createsCloudWatchRole,
      ...(props.createsCloudWatchRole ? { cloudWatchRoleRemovalPolicy: RemovalPolicy.RETAIN } : {}),
      deployOptions: restStageOptions(props.throttle, this.accessLogs),
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
  Validations.of(api).acknowledge(API_PERMISSION_ACK);
  ack(
    'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]',
    "API Gateway's account-level CloudWatch role, which REST API logging requires (created here only " +
      'where no Core API does it); AWS maintains the managed policy for exactly this service role, and ' +
      'only apigateway.amazonaws.com can assume it.',
  );
  ack('AwsSolutions-COG4', noAuthorizerReason);
  ack(
    'AwsSolutions-APIG2',
    'Requests are validated by the proxy function itself (canonical path, header hygiene, rules on ' +
      'the exact bytes sent); an API Gateway model would judge a different parse of the same request.',
  );
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
