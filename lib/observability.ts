import { Duration, Stack } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sns from 'aws-cdk-lib/aws-sns';
import * as subscriptions from 'aws-cdk-lib/aws-sns-subscriptions';
import { Construct } from 'constructs';
import { PRODUCT_METRICS } from '../lambdas/telemetry/metrics.ts';
import { installPrefix, stageOf } from './cell-names.ts';
import type { CellTable } from './cell-table.ts';
import type { CoreApi } from './core-api.ts';
import type { KeygateFunction } from './keygate-function.ts';
import type { ProxyEndpoint } from './proxy-endpoint.ts';
import type { TelemetryPipeline } from './telemetry-pipeline.ts';

/**
 * Product metrics, namespace `keygate`, dimension `service=keygate`. Some are derived here from log
 * lines the handlers already write (`LOG_METRICS`); the others the handlers publish as CloudWatch
 * embedded metric format (Powertools Metrics, same namespace and dimension). The dashboard and
 * alarms read exactly these names; API Gateway, Lambda, DynamoDB, Kinesis and SQS metrics come from
 * AWS itself.
 */
export { PRODUCT_METRICS };

/**
 * Metrics read from the handlers' structured log lines (Powertools JSON: `message`, `service` and the
 * line's own fields) by CloudWatch Logs metric filters. The messages are the ones written by
 * lambdas/telemetry/emitter.ts (the proxy's side) and lambdas/telemetry/aggregator.ts.
 */
export const LOG_METRICS = {
  aggregator: [
    {
      metricName: PRODUCT_METRICS.storeErrors,
      messages: [
        'request-log write failed',
        'telemetry bucket update failed',
        'telemetry bucket read failed',
        'telemetry marker write failed',
        'pending-call write failed',
        'pending-call delete failed',
        'unknown-call sweep failed',
      ],
      value: '1',
    },
    { metricName: PRODUCT_METRICS.telemetrySkipped, messages: ['telemetry record skipped'], value: '1' },
  ],
  // lambdas/shared/http.ts: one 'dependency unavailable' line per 503, naming the dependency.
  coreApi: [
    {
      metricName: PRODUCT_METRICS.kmsErrors,
      messages: ['dependency unavailable'],
      value: '1',
      dependency: 'kms',
    },
    {
      metricName: PRODUCT_METRICS.storeErrors,
      messages: ['dependency unavailable'],
      value: '1',
      dependency: 'store',
    },
  ],
} as const;

/** Alarm thresholds; the defaults suit a small deployment, context values override them. */
export interface AlarmThresholds {
  /** Proxy 5xx answers, percent of requests over 5 minutes. */
  serverErrorPercent: number;
  /** Denied requests in 5 minutes. */
  deniedPer5Minutes: number;
  /** Age of the oldest unprocessed telemetry record, in seconds. */
  iteratorAgeSeconds: number;
  /** Anomaly flags raised in 5 minutes (each flag counts once); 0 turns the alarm off. */
  anomalyFlagsPer5Minutes: number;
  /** 4xx answers of either API, percent of requests over 5 minutes. */
  clientErrorPercent: number;
  /** 429 answers in 5 minutes: per-proxy rate limits (proxy) and WAF blocks (Core API). */
  rateLimitedPer5Minutes: number;
  /** p99 latency of the proxy (vendor time included) and of the Core API, in ms. */
  proxyP99LatencyMs: number;
  coreApiP99LatencyMs: number;
  /** Concurrency in use, percent of a function's reserved concurrency. */
  concurrencyPercent: number;
  /** Concurrent executions of the whole account in the region (the default quota is 1,000). */
  accountConcurrency: number;
}

export const DEFAULT_THRESHOLDS: AlarmThresholds = {
  serverErrorPercent: 5,
  deniedPer5Minutes: 100,
  iteratorAgeSeconds: 300,
  anomalyFlagsPer5Minutes: 1,
  clientErrorPercent: 25,
  rateLimitedPer5Minutes: 100,
  proxyP99LatencyMs: 10_000,
  coreApiP99LatencyMs: 2_000,
  concurrencyPercent: 80,
  accountConcurrency: 800,
};

export interface ObservabilityProps {
  key: kms.IKey;
  table: CellTable;
  proxy: ProxyEndpoint;
  telemetry: TelemetryPipeline;
  /** Present in the home cell only. */
  coreApi?: CoreApi;
  thresholds: AlarmThresholds;
  /** E-mail addresses subscribed to the alarm topic (they confirm by mail). */
  alarmEmails: string[];
}

const FIVE_MINUTES = Duration.minutes(5);

/**
 * One dashboard (`keygate-<region>`) and the alarms of a cell, every alarm notifying one
 * KMS-encrypted SNS topic (`keygate-alarms-<region>`): 5xx and 4xx rates, 429s, p99 latency, denied
 * surge, anomaly flags, KMS errors, store errors, DynamoDB throttles and system errors, telemetry
 * iterator age, on-failure queue depth, telemetry delivery errors of the subscription filter, Lambda
 * errors, throttles and concurrency. Every alarm reads a metric the deployed path really reports.
 * Names carry the installation prefix (`keygate[-<stage>]`).
 */
export class Observability extends Construct {
  readonly topic: sns.Topic;
  readonly dashboard: cloudwatch.Dashboard;
  readonly alarms: cloudwatch.Alarm[] = [];
  private readonly prefix: string;

  constructor(scope: Construct, id: string, props: ObservabilityProps) {
    super(scope, id);
    const region = Stack.of(this).region;
    const prefix = installPrefix(stageOf(this));
    this.prefix = `${prefix}-${region}`;
    this.topic = new sns.Topic(this, 'Alarms', {
      topicName: `${prefix}-alarms-${region}`,
      displayName: `keygate alarms (${region})`,
      masterKey: props.key,
      enforceSSL: true,
    });
    for (const email of props.alarmEmails)
      this.topic.addSubscription(new subscriptions.EmailSubscription(email));

    const { proxy, telemetry, table, coreApi, thresholds } = props;
    this.addLogMetrics('Aggregator', telemetry.aggregator, LOG_METRICS.aggregator);
    if (coreApi) this.addLogMetrics('CoreApi', coreApi.fn, LOG_METRICS.coreApi);
    const api = proxy.gateway.api;
    const count = api.metricCount({ period: FIVE_MINUTES, statistic: 'Sum' });
    const serverErrors = api.metricServerError({ period: FIVE_MINUTES, statistic: 'Sum' });
    const clientErrors = api.metricClientError({ period: FIVE_MINUTES, statistic: 'Sum' });
    const product = (metricName: string, label: string) =>
      new cloudwatch.Metric({
        namespace: PRODUCT_METRICS.namespace,
        metricName,
        dimensionsMap: PRODUCT_METRICS.dimensions,
        statistic: 'Sum',
        period: FIVE_MINUTES,
        label,
      });
    const allowed = product(PRODUCT_METRICS.allowed, 'allowed');
    const denied = product(PRODUCT_METRICS.denied, 'denied');
    const rateLimited = product(PRODUCT_METRICS.rateLimited, 'rate limited');
    const unauthenticated = product(PRODUCT_METRICS.unauthenticated, 'unauthenticated');
    const kmsErrors = product(PRODUCT_METRICS.kmsErrors, 'KMS errors');
    const storeErrors = product(PRODUCT_METRICS.storeErrors, 'DynamoDB errors (handlers)');
    // What the deployed telemetry route can report: CloudWatch Logs' own delivery metrics of the
    // subscription filter that forwards the proxy's telemetry lines to the stream.
    const delivery = (metricName: string, label: string) =>
      new cloudwatch.Metric({
        namespace: 'AWS/Logs',
        metricName,
        dimensionsMap: {
          LogGroupName: proxy.fn.logGroup.logGroupName,
          DestinationType: 'Kinesis',
          FilterName: telemetry.filterName,
        },
        statistic: 'Sum',
        period: FIVE_MINUTES,
        label,
      });
    const deliveryErrors = delivery('DeliveryErrors', 'telemetry delivery errors');
    const deliveryThrottling = delivery('DeliveryThrottling', 'telemetry delivery throttling');
    const skipped = product(PRODUCT_METRICS.telemetrySkipped, 'telemetry records skipped (unreadable)');
    const anomalies = product(PRODUCT_METRICS.anomalyFlags, 'anomaly flags');
    // Meters (docs/meters.md): the proxy logs each once per meter and minute (embedded metric format).
    const meterExhausted = product(PRODUCT_METRICS.meterExhausted, 'meters exhausted (calls refused)');
    const meterOverLimit = product(PRODUCT_METRICS.meterOverLimit, 'meters past their limit');
    const iteratorAge = telemetry.aggregator.metric('IteratorAge', {
      statistic: 'Maximum',
      period: Duration.minutes(1),
    });
    const dlqDepth = telemetry.failures.metricApproximateNumberOfMessagesVisible({
      statistic: 'Maximum',
      period: Duration.minutes(1),
    });
    const ddbOperations = [
      dynamodb.Operation.GET_ITEM,
      dynamodb.Operation.UPDATE_ITEM,
      dynamodb.Operation.PUT_ITEM,
      dynamodb.Operation.QUERY,
      dynamodb.Operation.BATCH_WRITE_ITEM,
    ];
    const ddbThrottles = table.table.metricThrottledRequestsForOperations({
      operations: ddbOperations,
      period: FIVE_MINUTES,
    });
    const ddbSystemErrors = table.table.metricSystemErrorsForOperations({
      operations: ddbOperations,
      period: FIVE_MINUTES,
    });
    const functions: KeygateFunction[] = [proxy.fn, telemetry.aggregator, ...(coreApi ? [coreApi.fn] : [])];

    // Alarms.
    const serverErrorRate = rate(serverErrors, count, 'proxy 5xx %');
    this.alarm(
      'Proxy5xxRate',
      serverErrorRate,
      thresholds.serverErrorPercent,
      'Proxy answers 5xx (percent of requests)',
    );
    if (coreApi) {
      const coreCount = coreApi.api.metricCount({ period: FIVE_MINUTES, statistic: 'Sum' });
      const coreErrors = coreApi.api.metricServerError({ period: FIVE_MINUTES, statistic: 'Sum' });
      const coreClientErrors = coreApi.api.metricClientError({ period: FIVE_MINUTES, statistic: 'Sum' });
      this.alarm(
        'CoreApi5xxRate',
        rate(coreErrors, coreCount, 'Core API 5xx %'),
        thresholds.serverErrorPercent,
        'Core API answers 5xx (percent of requests)',
      );
      this.alarm(
        'CoreApi4xxRate',
        rate(coreClientErrors, coreCount, 'Core API 4xx %'),
        thresholds.clientErrorPercent,
        'Core API answers 4xx (percent of requests): bad tokens, validation errors, throttling',
      );
      this.alarm(
        'CoreApiEdgeBlocked',
        new cloudwatch.Metric({
          namespace: 'AWS/WAFV2',
          metricName: 'BlockedRequests',
          dimensionsMap: { WebACL: coreApi.edge.webAcl.name!, Region: region, Rule: 'ALL' },
          statistic: 'Sum',
          period: FIVE_MINUTES,
        }),
        thresholds.rateLimitedPer5Minutes,
        'Core API requests WAF answered 429 (rate-based rules, IP reputation) in 5 minutes',
      );
      this.alarm(
        'CoreApiLatencyP99',
        coreApi.api.metricLatency({ statistic: 'p99', period: FIVE_MINUTES }),
        thresholds.coreApiP99LatencyMs,
        'Core API p99 latency (ms)',
      );
    }
    this.alarm('DeniedSurge', denied, thresholds.deniedPer5Minutes, 'Denied proxy requests in 5 minutes');
    if (thresholds.anomalyFlagsPer5Minutes > 0)
      this.alarm(
        'AnomalyFlags',
        anomalies,
        thresholds.anomalyFlagsPer5Minutes,
        'Anomaly flags raised (spike, surge, first-seen or first-denied paths): see the anomaly flagged log lines of the aggregator',
      );
    this.alarm('KmsErrors', kmsErrors, 1, 'KMS calls that failed (the proxy answers 503, closed)');
    this.alarm('StoreErrors', storeErrors, 1, 'DynamoDB calls that failed in a handler');
    this.alarm('DynamoDbSystemErrors', ddbSystemErrors, 1, 'DynamoDB system errors on the cell table');
    this.alarm(
      'TelemetryIteratorAge',
      iteratorAge,
      thresholds.iteratorAgeSeconds * 1000,
      'Oldest unprocessed telemetry record (ms): the aggregator falls behind',
    );
    this.alarm('TelemetryFailureQueueDepth', dlqDepth, 1, 'Telemetry batches the aggregator gave up on');
    this.alarm(
      'TelemetryDeliveryErrors',
      deliveryErrors,
      1,
      'Telemetry log lines CloudWatch Logs could not put on the stream: gaps in the request log',
    );
    this.alarm(
      'TelemetryDeliveryThrottling',
      deliveryThrottling,
      1,
      'Telemetry log lines delayed because the stream throttled the subscription filter',
    );
    this.alarm('DynamoDbThrottles', ddbThrottles, 1, 'Throttled requests on the cell table');
    this.alarm(
      'Proxy4xxRate',
      rate(clientErrors, count, 'proxy 4xx %'),
      thresholds.clientErrorPercent,
      'Proxy answers 4xx (percent of requests): bad keys, denials, rate limits, stage throttling',
    );
    this.alarm(
      'ProxyRateLimited',
      rateLimited,
      thresholds.rateLimitedPer5Minutes,
      'Proxy answers 429 from per-proxy rate limits in 5 minutes',
    );
    this.alarm(
      'ProxyLatencyP99',
      api.metric('Latency', { statistic: 'p99', period: FIVE_MINUTES }),
      thresholds.proxyP99LatencyMs,
      'Proxy p99 latency (ms), vendor time included',
    );
    for (const fn of functions) {
      const name = fn.node.scope!.node.id + fn.node.id;
      const reserved = (fn.node.defaultChild as lambda.CfnFunction).reservedConcurrentExecutions;
      if (typeof reserved !== 'number') continue;
      this.alarm(
        `${name}Concurrency`,
        fn.metric('ConcurrentExecutions', { statistic: 'Maximum', period: Duration.minutes(1) }),
        Math.max(1, Math.floor((reserved * thresholds.concurrencyPercent) / 100)),
        `${name} concurrency at ${thresholds.concurrencyPercent} % of its reserved ${reserved}`,
      );
    }
    this.alarm(
      'AccountConcurrency',
      lambda.Function.metricAllConcurrentExecutions({ statistic: 'Maximum', period: Duration.minutes(1) }),
      thresholds.accountConcurrency,
      'Concurrent Lambda executions of the whole account in this region (every function shares the quota)',
    );
    for (const fn of functions) {
      const name = fn.node.scope!.node.id + fn.node.id;
      this.alarm(
        `${name}Errors`,
        fn.metricErrors({ period: FIVE_MINUTES, statistic: 'Sum' }),
        1,
        `${name} errors`,
      );
      this.alarm(
        `${name}Throttles`,
        fn.metricThrottles({ period: FIVE_MINUTES, statistic: 'Sum' }),
        1,
        `${name} throttled invocations`,
      );
    }

    // Dashboard.
    const latency = (statistic: string) =>
      api.metric('Latency', { statistic, period: Duration.minutes(1), label: `proxy ${statistic}` });
    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      dashboardName: this.prefix,
      defaultInterval: Duration.hours(3),
    });
    this.dashboard.addWidgets(
      new cloudwatch.TextWidget({
        markdown: `# keygate cell ${region}\nAlarms notify SNS topic \`${this.topic.topicName}\`.`,
        width: 24,
        height: 2,
      }),
    );
    this.dashboard.addWidgets(
      graph('Proxy requests, 4xx, 5xx', [count, clientErrors, serverErrors]),
      graph('Allowed vs denied', [allowed, denied, rateLimited, unauthenticated]),
      graph('Proxy latency p50 / p99 (ms)', [latency('p50'), latency('p99')]),
      graph('Anomaly flags; meters exhausted / past their limit', [
        anomalies,
        meterExhausted,
        meterOverLimit,
      ]),
    );
    this.dashboard.addWidgets(
      graph('Throttles: Lambda, DynamoDB', [
        ...functions.map((fn) => fn.metricThrottles({ period: FIVE_MINUTES, label: fn.node.scope!.node.id })),
        ddbThrottles,
      ]),
      graph('KMS and DynamoDB errors', [kmsErrors, storeErrors, ddbSystemErrors]),
      graph('Telemetry iterator age (ms)', [iteratorAge]),
      graph('Telemetry: failure queue depth, delivery errors and skipped records', [
        dlqDepth,
        deliveryErrors,
        deliveryThrottling,
        skipped,
      ]),
    );
    if (coreApi) {
      const coreApiMetrics = coreApi.api;
      this.dashboard.addWidgets(
        graph('Core API requests, 4xx, 5xx', [
          coreApiMetrics.metricCount({ period: FIVE_MINUTES }),
          coreApiMetrics.metricClientError({ period: FIVE_MINUTES }),
          coreApiMetrics.metricServerError({ period: FIVE_MINUTES }),
        ]),
        graph('Core API latency p50 / p99 (ms)', [
          coreApiMetrics.metric('Latency', { statistic: 'p50', period: Duration.minutes(1) }),
          coreApiMetrics.metric('Latency', { statistic: 'p99', period: Duration.minutes(1) }),
        ]),
      );
    }
  }

  /** One metric filter per log metric, on `fn`'s log group. */
  private addLogMetrics(
    prefix: string,
    fn: KeygateFunction,
    metrics: readonly {
      metricName: string;
      messages: readonly string[];
      value: string;
      dependency?: string;
    }[],
  ): void {
    for (const m of metrics) {
      const message = logs.FilterPattern.any(
        ...m.messages.map((text) => logs.FilterPattern.stringValue('$.message', '=', text)),
      );
      new logs.MetricFilter(this, `${prefix}${m.metricName}`, {
        logGroup: fn.logGroup,
        filterPattern: m.dependency
          ? logs.FilterPattern.all(message, logs.FilterPattern.stringValue('$.dependency', '=', m.dependency))
          : message,
        metricNamespace: PRODUCT_METRICS.namespace,
        metricName: m.metricName,
        metricValue: m.value,
        dimensions: { service: '$.service' },
        unit: cloudwatch.Unit.COUNT,
      });
    }
  }

  private alarm(id: string, metric: cloudwatch.IMetric, threshold: number, description: string): void {
    const alarm = new cloudwatch.Alarm(this, id, {
      alarmName: `${this.prefix}-${id}`,
      metric,
      threshold,
      evaluationPeriods: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      // No data means nothing happened (no requests, no errors), not an outage.
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      alarmDescription: `${this.prefix}: ${description}`,
    });
    alarm.addAlarmAction(new actions.SnsAction(this.topic));
    alarm.addOkAction(new actions.SnsAction(this.topic));
    this.alarms.push(alarm);
  }
}

/** `100 × part / whole`, 0 when there were no requests. */
function rate(part: cloudwatch.IMetric, whole: cloudwatch.IMetric, label: string): cloudwatch.MathExpression {
  return new cloudwatch.MathExpression({
    expression: '100 * IF(requests > 0, part / requests, 0)',
    usingMetrics: { part, requests: whole },
    period: FIVE_MINUTES,
    label,
  });
}

function graph(title: string, metrics: cloudwatch.IMetric[]): cloudwatch.GraphWidget {
  return new cloudwatch.GraphWidget({ title, left: metrics, width: 6, height: 6 });
}
