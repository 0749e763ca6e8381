import { Aws, CfnOutput, Duration, Stack, type StackProps } from 'aws-cdk-lib';
import type * as logs from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import { CellKey } from './cell-key.ts';
import { coreApiRoleName } from './cell-names.ts';
import { CellTable } from './cell-table.ts';
import { CoreApi } from './core-api.ts';
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
  readonly observability: Observability;

  constructor(scope: Construct, id: string, props: CellStackProps) {
    super(scope, id, props);
    const homeRegion = props.regions[0]!;
    const { settings } = props;
    this.key = new CellKey(this, 'Key', {
      coreApiRoleArn: `arn:${Aws.PARTITION}:iam::${Aws.ACCOUNT_ID}:role/${coreApiRoleName(homeRegion)}`,
    });
    this.table = new CellTable(this, 'Table', { key: this.key.key });
    this.telemetry = new TelemetryPipeline(this, 'Telemetry', {
      table: this.table,
      key: this.key,
      logRetention: settings.logRetention,
      requestLogRetentionDays: settings.requestLogRetentionDays,
    });
    this.proxy = new ProxyEndpoint(this, 'Proxy', {
      table: this.table,
      key: this.key,
      telemetry: this.telemetry,
      logRetention: settings.logRetention,
      throttle: settings.proxyThrottle,
      customDomain: settings.proxyDomain,
      timeout: settings.proxyTimeoutSeconds ? Duration.seconds(settings.proxyTimeoutSeconds) : undefined,
    });
    if (this.region === homeRegion) {
      this.coreApi = new CoreApi(this, 'CoreApi', {
        regions: props.regions,
        table: this.table,
        key: this.key,
        logRetention: settings.logRetention,
        requestLogRetentionDays: settings.requestLogRetentionDays,
        throttle: settings.apiThrottle,
        customDomain: settings.apiDomain,
      });
      new CfnOutput(this, 'CoreApiUrl', { value: this.coreApi.gateway.url });
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
}
