import { RemovalPolicy, Validations } from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as apigwv2 from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import * as acm from 'aws-cdk-lib/aws-certificatemanager';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';

/**
 * The access-log line of every keygate HTTP API. It lists what it keeps, so nothing else can slip
 * in: no header at all (so never `Authorization`), no query string (it may carry an API key),
 * no body, no authorizer context, and no raw path (the route template says which route ran; the
 * path holds proxy ids and the vendor's own identifiers).
 */
export const ACCESS_LOG_FIELDS = {
  requestId: '$context.requestId',
  requestTime: '$context.requestTime',
  sourceIp: '$context.identity.sourceIp',
  userAgent: '$context.identity.userAgent',
  httpMethod: '$context.httpMethod',
  routeKey: '$context.routeKey',
  protocol: '$context.protocol',
  status: '$context.status',
  responseLength: '$context.responseLength',
  responseLatency: '$context.responseLatency',
  integrationLatency: '$context.integrationLatency',
  integrationStatus: '$context.integrationStatus',
  integrationError: '$context.integrationErrorMessage',
  lambdaRequestId: '$context.integration.requestId',
} as const;

/**
 * Control Tower's CT.LAMBDA.PR.2 reads a service-principal permission as public unless it sees a
 * literal SourceArn/SourceAccount; CDK's API Gateway permissions carry a SourceArn built with
 * Fn::Join (this API's execute-api ARN), which the offline rule cannot evaluate.
 */
export const API_PERMISSION_ACK = {
  id: 'cdk-validator-cfnguard::lambda_function_public_access_prohibited_check',
  reason:
    'Each permission lets only apigateway.amazonaws.com invoke the function, with SourceArn set to ' +
    "this API's own execute-api ARN (an Fn::Join of partition, region, account and API id, which " +
    'the offline cfn-guard rule cannot resolve); test/infra asserts the SourceArn on every permission.',
};

export interface CustomDomain {
  domainName: string;
  /** An ACM certificate for `domainName`, in the same region. */
  certificateArn: string;
}

export interface HttpGatewayProps {
  /** The API's name in API Gateway (unique per installation and region). */
  apiName: string;
  /** Stage-wide steady-state rate (requests per second) and burst; API Gateway answers 429 above. */
  throttle: { rateLimit: number; burstLimit: number };
  /** Routes such as `ANY /api/{proxyId}/{proxy+}`; absent: one `$default` route for everything. */
  routes?: string[];
  fn: lambda.IFunction;
  logKey: kms.IKey;
  logRetention: logs.RetentionDays;
  customDomain?: CustomDomain;
  /** Why every route has no API Gateway authorizer (the function authenticates each call). */
  noAuthorizerReason: string;
}

/**
 * An API Gateway HTTP API in front of one function (payload format 2.0, the event shape the local
 * HTTP front produces): a `$default` stage with throttling, JSON access logs into an encrypted log
 * group, an optional custom domain (which then switches the execute-api endpoint off).
 */
export class HttpGateway extends Construct {
  readonly api: apigwv2.HttpApi;
  readonly stage: apigwv2.HttpStage;
  readonly accessLogs: logs.LogGroup;
  readonly domain?: apigwv2.DomainName;
  /** Base URL callers use. */
  readonly url: string;

  constructor(scope: Construct, id: string, props: HttpGatewayProps) {
    super(scope, id);
    const integration = new HttpLambdaIntegration('Integration', props.fn, {
      payloadFormatVersion: apigwv2.PayloadFormatVersion.VERSION_2_0,
    });
    this.api = new apigwv2.HttpApi(this, 'Api', {
      apiName: props.apiName,
      description: `keygate ${id}`,
      createDefaultStage: false,
      defaultIntegration: props.routes ? undefined : integration,
      disableExecuteApiEndpoint: props.customDomain !== undefined,
    });
    for (const route of props.routes ?? []) {
      const [method, path] = route.split(' ') as [string, string];
      this.api.addRoutes({
        path,
        methods: [method as apigwv2.HttpMethod],
        integration,
      });
    }
    this.accessLogs = new logs.LogGroup(this, 'AccessLogs', {
      retention: props.logRetention,
      encryptionKey: props.logKey,
      removalPolicy: RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
    });
    this.domain = props.customDomain
      ? new apigwv2.DomainName(this, 'Domain', {
          domainName: props.customDomain.domainName,
          certificate: acm.Certificate.fromCertificateArn(
            this,
            'Certificate',
            props.customDomain.certificateArn,
          ),
          securityPolicy: apigwv2.SecurityPolicy.TLS_1_2,
        })
      : undefined;
    this.stage = new apigwv2.HttpStage(this, 'Stage', {
      httpApi: this.api,
      stageName: '$default',
      autoDeploy: true,
      throttle: props.throttle,
      accessLogSettings: {
        destination: new apigwv2.LogGroupLogDestination(this.accessLogs),
        format: apigw.AccessLogFormat.custom(JSON.stringify(ACCESS_LOG_FIELDS)),
      },
    });
    // An explicit mapping: the stage's domainMapping option names it after an undefined mapping key.
    if (this.domain)
      new apigwv2.ApiMapping(this, 'DomainMapping', {
        api: this.api,
        domainName: this.domain,
        stage: this.stage,
      });
    this.url = props.customDomain ? `https://${props.customDomain.domainName}/` : this.stage.url;

    Validations.of(this.api).acknowledge(
      { id: 'AwsSolutions-APIG4', reason: props.noAuthorizerReason },
      {
        id: 'cdk-validator-cfnguard::api_gw_v2_authorization_type_configured_check',
        reason: props.noAuthorizerReason,
      },
      API_PERMISSION_ACK,
    );
  }
}
