import { Duration, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kinesis from 'aws-cdk-lib/aws-kinesis';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { KinesisEventSource, SqsDlq } from 'aws-cdk-lib/aws-lambda-event-sources';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { TELEMETRY_LOG_MARKER } from '../lambdas/telemetry/log-sink.ts';
import type { CellKey } from './cell-key.ts';
import { cellNames, installPrefix, stageOf } from './cell-names.ts';
import type { CellTable } from './cell-table.ts';
import { KeygateFunction } from './keygate-function.ts';

export interface TelemetryPipelineProps {
  table: CellTable;
  key: CellKey;
  logRetention: logs.RetentionDays;
  /** Request-log retention in days (the items' TTL); the aggregator reads it at cold start. */
  requestLogRetentionDays: number;
  /** Concurrency reserved for the aggregator, so a proxy flood cannot stall telemetry. */
  reservedConcurrency?: number;
}

/** How often a failing batch is retried (after bisection) before it goes to the on-failure queue. */
export const AGGREGATOR_RETRY_ATTEMPTS = 5;

/**
 * The cell's telemetry pipeline: an on-demand, KMS-encrypted Kinesis stream the proxy puts one
 * record per request into, and the aggregator reading it. A failing record is isolated (bisect,
 * per-record `batchItemFailures`), retried a bounded number of times, then its position is sent to
 * an encrypted SQS queue (alarmed in Observability) so it can be replayed from the stream; the
 * aggregator's idempotency marks make the replay safe.
 */
export class TelemetryPipeline extends Construct {
  readonly stream: kinesis.Stream;
  readonly aggregator: KeygateFunction;
  readonly failures: sqs.Queue;
  /** Name of the subscription filter that forwards the proxy's telemetry lines (its metrics' dimension). */
  readonly filterName: string;
  private readonly region: string;
  private readonly key: CellKey;

  constructor(scope: Construct, id: string, props: TelemetryPipelineProps) {
    super(scope, id);
    this.region = Stack.of(this).region;
    this.key = props.key;
    this.filterName = `${installPrefix(stageOf(this))}-telemetry`;
    this.stream = new kinesis.Stream(this, 'Stream', {
      streamName: cellNames(this.region, stageOf(this)).streamName,
      streamMode: kinesis.StreamMode.ON_DEMAND,
      encryption: kinesis.StreamEncryption.KMS,
      encryptionKey: props.key.key,
      // Room to fix a broken aggregator and replay before records expire.
      retentionPeriod: Duration.days(7),
      // Named: kept on update and delete, but a rolled-back first create removes it, so the retry
      // does not meet an "already exists".
      removalPolicy: RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
    });
    Validations.of(this.stream).acknowledge({
      id: 'AwsSolutions-KDS3',
      reason:
        'The stream is encrypted with the cell key on purpose: one customer-managed key per cell, whose ' +
        'policy names who may read each kind of cell data, rotates yearly, and can be disabled to ' +
        'shred the cell. Kinesis reuses data keys per shard, so the added KMS cost stays small.',
    });
    this.failures = new sqs.Queue(this, 'AggregatorFailures', {
      encryption: sqs.QueueEncryption.KMS,
      encryptionMasterKey: props.key.key,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });
    Validations.of(this.failures).acknowledge({
      id: 'cdk-validator-cfnguard::sqs_dlq_check',
      reason:
        'Control Tower CT.SQS.PR.3, same as AwsSolutions-SQS3: this queue is the on-failure ' +
        'destination itself; it holds batch positions to replay from the stream and has no consumer.',
    });
    Validations.of(this.failures).acknowledge({
      id: 'AwsSolutions-SQS3',
      reason:
        "This queue is itself the on-failure destination of the aggregator's event source mapping. " +
        'It holds only batch positions (shard and sequence numbers, no payload) to replay from the stream; ' +
        'nothing consumes it automatically, so it needs no dead-letter queue of its own. Its depth is alarmed.',
    });

    this.aggregator = new KeygateFunction(this, 'Aggregator', {
      entry: 'lambdas/telemetry/handler.ts',
      description: 'telemetry aggregator (request log and rollups)',
      logKey: props.key.key,
      logRetention: props.logRetention,
      memorySize: 512,
      timeout: Duration.seconds(60),
      reservedConcurrency: props.reservedConcurrency,
      environment: { KEYGATE_REQUEST_LOG_RETENTION_DAYS: String(props.requestLogRetentionDays) },
    });
    props.table.grantAggregatorAccess(this.aggregator);
    for (const action of ['kms:ReEncrypt*', 'kms:GenerateDataKey*']) {
      Validations.of(this.aggregator.role!).acknowledge({
        id: `AwsSolutions-IAM5[Action::${action}]`,
        reason:
          "Added by CDK's SqsDlq (queue.grantSendMessages) so the event source mapping can send " +
          'failure records to the encrypted on-failure queue, on the cell key only; the key policy ' +
          'lets these actions through only via SQS, Kinesis or DynamoDB (kms:ViaService).',
      });
    }
    this.aggregator.addEventSource(
      new KinesisEventSource(this.stream, {
        startingPosition: lambda.StartingPosition.TRIM_HORIZON,
        batchSize: 500,
        maxBatchingWindow: Duration.seconds(1),
        reportBatchItemFailures: true,
        bisectBatchOnError: true,
        retryAttempts: AGGREGATOR_RETRY_ATTEMPTS,
        maxRecordAge: Duration.days(1),
        // The aggregator's per-shard watermarks assume records of a shard arrive in order.
        parallelizationFactor: 1,
        onFailure: new SqsDlq(this.failures),
      }),
    );
    // The sweep of calls started and never completed (lambdas/telemetry/unknown-calls.ts) puts
    // their `unknown` records into this stream; it runs after batches and, so that it also runs
    // without traffic, on a one-minute schedule.
    this.aggregator.addToRolePolicy(
      new iam.PolicyStatement({ actions: ['kinesis:PutRecords'], resources: [this.stream.streamArn] }),
    );
    this.aggregator.addToRolePolicy(
      new iam.PolicyStatement({
        actions: ['kms:GenerateDataKey'],
        resources: [this.key.key.keyArn],
        conditions: { StringEquals: { 'kms:ViaService': `kinesis.${this.region}.amazonaws.com` } },
      }),
    );
    new events.Rule(this, 'UnknownCallSweep', {
      description: 'keygate: turn calls started and never completed into unknown telemetry records',
      schedule: events.Schedule.rate(Duration.minutes(1)),
      targets: [new targets.LambdaFunction(this.aggregator)],
    });
  }

  /**
   * Routes `fn`'s telemetry log lines (lambdas/telemetry/log-sink.ts) into this cell's stream with a
   * CloudWatch Logs subscription filter, and tells the function to use that route. The proxy thus
   * ships telemetry without a Kinesis call on its answer path and needs no Kinesis right at all.
   */
  forwardTelemetryLogs(fn: KeygateFunction): void {
    // Our own role, not KinesisDestination's default: that one is granted kms:GenerateDataKey* and
    // kms:ReEncrypt* on the key; this one may put records on this stream, encrypted via Kinesis only.
    const role = new iam.Role(this, 'LogsToStreamRole', {
      assumedBy: new iam.ServicePrincipal('logs.amazonaws.com', {
        conditions: { StringLike: { 'aws:SourceArn': fn.logGroup.logGroupArn } },
      }),
      description: 'keygate: CloudWatch Logs forwards proxy telemetry lines to the cell stream',
    });
    const policy = new iam.ManagedPolicy(this, 'LogsToStreamPolicy', {
      roles: [role],
      statements: [
        new iam.PolicyStatement({ actions: ['kinesis:PutRecord'], resources: [this.stream.streamArn] }),
        new iam.PolicyStatement({
          actions: ['kms:GenerateDataKey'],
          resources: [this.key.key.keyArn],
          conditions: { StringEquals: { 'kms:ViaService': `kinesis.${this.region}.amazonaws.com` } },
        }),
      ],
    });
    // The L1 resource: KinesisDestination would grant its role write access again, with wildcards.
    const filter = new logs.CfnSubscriptionFilter(this, 'ProxyTelemetryLogs', {
      logGroupName: fn.logGroup.logGroupName,
      destinationArn: this.stream.streamArn,
      roleArn: role.roleArn,
      // A term match works whether Lambda stores the line as written or wrapped in its JSON format.
      filterPattern: `"${TELEMETRY_LOG_MARKER}"`,
      filterName: this.filterName,
    });
    // CloudWatch Logs checks that it may use the role when the filter is created.
    filter.node.addDependency(policy);
    fn.addEnvironment('KEYGATE_TELEMETRY_SINK', 'log');
    fn.useCell(this.region);
  }
}
