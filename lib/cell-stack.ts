import { Aws, CfnOutput, Duration, Stack, type StackProps } from 'aws-cdk-lib';
import type * as logs from 'aws-cdk-lib/aws-logs';
import * as route53 from 'aws-cdk-lib/aws-route53';
import * as targets from 'aws-cdk-lib/aws-route53-targets';
import type { Construct } from 'constructs';
import { CellKey } from './cell-key.ts';
import { coreApiRoleName, stageOf } from './cell-names.ts';
import { CellTable } from './cell-table.ts';
import { CoreApi } from './core-api.ts';
import type { EdgeRateLimits } from './edge-protection.ts';
import { EgressNetwork } from './egress-network.ts';
import type { CustomDomain } from './http-gateway.ts';
import { type AlarmThresholds, Observability } from './observability.ts';
import { ProxyEndpoint } from './proxy-endpoint.ts';
import { TelemetryPipeline } from './telemetry-pipeline.ts';

export interface CellSettings {
  logRetention: logs.RetentionDays;
  requestLogRetentionDays: number;
  proxyThrottle: { rateLimit: number; burstLimit: number };
  apiThrottle: { rateLimit: number; burstLimit: number };
  thresholds: AlarmThresholds;
  alarmEmails: string[];
  apiDomain?: CustomDomain;
  proxyDomain?: CustomDomain;
  /** The proxy function's timeout (and the REST integration's), in seconds; default 900. */
  proxyTimeoutSeconds?: number;
  /** Name of the role that may replace key policies; default: CDK's CloudFormation execution role. */
  breakGlassRole?: string;
  /** Reserved concurrency per function; undefined: none. */
  concurrency: { coreApi?: number; aggregator?: number; proxy?: number };
  edgeLimits: EdgeRateLimits;
  /** Present in egress mode `vpc`. */
  egress?: { zones: number };
  /** A Route 53 hosted zone that gets alias records for the custom domains. */
  hostedZone?: { zoneId: string; zoneName: string };
  /** Roles `awsSigV4` target credentials may name (sts:AssumeRole for the proxy); default none. */
  assumableTargetRoleArns?: string[];
}

export interface CellStackProps extends StackProps {
  /** Every served region; the first is the home region. */
  regions: string[];
  settings: CellSettings;
}

/**
 * One self-contained regional cell: key, table, telemetry pipeline, proxy endpoint, dashboard and
 * alarms. The home cell (first region) also hosts the Core API. The stack only composes.
 */
export class CellStack extends Stack {
  readonly key: CellKey;
  readonly table: CellTable;
  readonly telemetry: TelemetryPipeline;
  readonly proxy: ProxyEndpoint;
  readonly coreApi?: CoreApi;
  readonly egress?: EgressNetwork;
  readonly observability: Observability;

  constructor(scope: Construct, id: string, props: CellStackProps) {
    super(scope, id, props);
    const homeRegion = props.regions[0]!;
    const { settings } = props;
    const roleArn = (name: string) => `arn:${Aws.PARTITION}:iam::${Aws.ACCOUNT_ID}:role/${name}`;
    const deployRole = `cdk-${this.synthesizerQualifier()}-cfn-exec-role-${Aws.ACCOUNT_ID}-${this.region}`;
    this.key = new CellKey(this, 'Key', {
      coreApiRoleArn: roleArn(coreApiRoleName(homeRegion, stageOf(this))),
      breakGlassRoleArn: roleArn(settings.breakGlassRole ?? deployRole),
      creatorIsNotBreakGlass: settings.breakGlassRole !== undefined,
    });
    this.table = new CellTable(this, 'Table', { key: this.key.key });
    this.telemetry = new TelemetryPipeline(this, 'Telemetry', {
      table: this.table,
      key: this.key,
      logRetention: settings.logRetention,
      requestLogRetentionDays: settings.requestLogRetentionDays,
      reservedConcurrency: settings.concurrency.aggregator,
    });
    if (settings.egress) {
      this.egress = new EgressNetwork(this, 'Egress', {
        zones: settings.egress.zones,
        logKey: this.key.key,
        logRetention: settings.logRetention,
      });
    }
    this.proxy = new ProxyEndpoint(this, 'Proxy', {
      table: this.table,
      key: this.key,
      telemetry: this.telemetry,
      logRetention: settings.logRetention,
      throttle: settings.proxyThrottle,
      customDomain: settings.proxyDomain,
      timeout: settings.proxyTimeoutSeconds ? Duration.seconds(settings.proxyTimeoutSeconds) : undefined,
      reservedConcurrency: settings.concurrency.proxy,
      egress: this.egress,
      edgeLimits: settings.edgeLimits,
      assumableTargetRoleArns: settings.assumableTargetRoleArns,
      // In the home region the Core API's REST API sets up the account-wide role.
      createsCloudWatchRole: this.region !== homeRegion,
    });
    const zone = settings.hostedZone
      ? route53.HostedZone.fromHostedZoneAttributes(this, 'Zone', {
          hostedZoneId: settings.hostedZone.zoneId,
          zoneName: settings.hostedZone.zoneName,
        })
      : undefined;
    if (this.region === homeRegion) {
      this.coreApi = new CoreApi(this, 'CoreApi', {
        regions: props.regions,
        table: this.table,
        key: this.key,
        logRetention: settings.logRetention,
        requestLogRetentionDays: settings.requestLogRetentionDays,
        throttle: settings.apiThrottle,
        reservedConcurrency: settings.concurrency.coreApi,
        edgeLimits: settings.edgeLimits,
        customDomain: settings.apiDomain,
      });
      // The proxy stage's error logs need the account-wide role the Core API's REST API sets up.
      this.proxy.gateway.api.deploymentStage.node.addDependency(this.coreApi.api);
      new CfnOutput(this, 'CoreApiUrl', { value: this.coreApi.url });
      const domain = this.coreApi.domain;
      if (domain) {
        new CfnOutput(this, 'CoreApiDomainTarget', {
          value: domain.domainNameAliasDomainName,
          description: `DNS target (alias or CNAME) of ${settings.apiDomain!.domainName}`,
        });
        if (zone)
          new route53.ARecord(this, 'CoreApiRecord', {
            zone,
            recordName: settings.apiDomain!.domainName,
            target: route53.RecordTarget.fromAlias(new targets.ApiGatewayDomain(domain)),
          });
      }
    }
    const proxyDomain = this.proxy.gateway.api.domainName;
    if (proxyDomain) {
      new CfnOutput(this, 'ProxyDomainTarget', {
        value: proxyDomain.domainNameAliasDomainName,
        description: `DNS target (alias or CNAME) of this cell's proxy host ${settings.proxyDomain!.domainName}`,
      });
      if (zone)
        new route53.ARecord(this, 'ProxyRecord', {
          zone,
          recordName: settings.proxyDomain!.domainName,
          target: route53.RecordTarget.fromAlias(new targets.ApiGatewayDomain(proxyDomain)),
        });
    }
    this.observability = new Observability(this, 'Observability', {
      key: this.key.key,
      table: this.table,
      proxy: this.proxy,
      telemetry: this.telemetry,
      coreApi: this.coreApi,
      thresholds: settings.thresholds,
      alarmEmails: settings.alarmEmails,
    });
    new CfnOutput(this, 'ProxyUrl', { value: this.proxy.gateway.url });
    new CfnOutput(this, 'TableName', { value: this.table.table.tableName });
    new CfnOutput(this, 'DashboardUrl', {
      value: `https://${this.region}.console.aws.amazon.com/cloudwatch/home?region=${this.region}#dashboards/dashboard/${this.observability.dashboard.dashboardName}`,
    });
    new CfnOutput(this, 'AlarmTopicArn', { value: this.observability.topic.topicArn });
  }

  /** The bootstrap qualifier CDK deploys with (context `@aws-cdk/core:bootstrapQualifier`). */
  private synthesizerQualifier(): string {
    return this.node.tryGetContext('@aws-cdk/core:bootstrapQualifier') ?? 'hnb659fds';
  }
}
