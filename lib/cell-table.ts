import { Aws, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import { Construct } from 'constructs';
import { tableLayout } from '../lambdas/storage/keys.ts';
import { grantKeyViaService } from './cell-key.ts';
import { cellNames, stageOf } from './cell-names.ts';
import type { KeygateFunction } from './keygate-function.ts';

/** What reading and writing an encrypted table needs from its key (through DynamoDB only). */
const KEY_WRITE = [
  'kms:Decrypt',
  'kms:Encrypt',
  'kms:ReEncryptFrom',
  'kms:ReEncryptTo',
  'kms:GenerateDataKey',
  'kms:GenerateDataKeyWithoutPlaintext',
];

/** Item-level actions the Core API uses; no Scan, no table management, no transactions. */
const CORE_API_ITEM_ACTIONS = [
  'dynamodb:GetItem',
  'dynamodb:BatchGetItem',
  'dynamodb:Query',
  'dynamodb:PutItem',
  'dynamodb:UpdateItem',
  'dynamodb:DeleteItem',
  'dynamodb:BatchWriteItem',
  'dynamodb:ConditionCheckItem',
];

export interface CellTableProps {
  key: kms.IKey;
}

/**
 * The cell's single table (layout from `lambdas/storage/keys.ts`): on-demand, encrypted with the
 * cell key, point-in-time recovery, TTL, deletion protection and `RETAIN`.
 *
 * The grant helpers follow the access patterns listed in keys.ts and use `dynamodb:LeadingKeys`,
 * so a function can touch only the partitions it owns: the proxy `PROXY#…` (snapshot reads and
 * rate-limit counters), the aggregator `REQLOG#…`, `TELEMETRY#…`, `PROXYOWNER#…` and `PROXYPATH#…`.
 */
export class CellTable extends Construct {
  readonly table: dynamodb.Table;
  readonly region: string;
  private readonly key: kms.IKey;

  constructor(scope: Construct, id: string, props: CellTableProps) {
    super(scope, id);
    this.region = Stack.of(this).region;
    this.key = props.key;
    this.table = new dynamodb.Table(this, 'Table', {
      tableName: cellNames(this.region, stageOf(this)).tableName,
      partitionKey: { name: tableLayout.partitionKey, type: dynamodb.AttributeType.STRING },
      sortKey: { name: tableLayout.sortKey, type: dynamodb.AttributeType.STRING },
      timeToLiveAttribute: tableLayout.ttlAttribute,
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      encryption: dynamodb.TableEncryption.CUSTOMER_MANAGED,
      encryptionKey: props.key,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true, recoveryPeriodInDays: 35 },
      deletionProtection: true,
      // Named: kept on update and delete, but a rolled-back first create removes it, so the retry
      // does not meet an "already exists" (docs/deploy-and-operate.md, first deploy).
      removalPolicy: RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
    });
    this.table.addGlobalSecondaryIndex({
      indexName: tableLayout.gsi1.name,
      partitionKey: { name: tableLayout.gsi1.partitionKey, type: dynamodb.AttributeType.STRING },
      sortKey: { name: tableLayout.gsi1.sortKey, type: dynamodb.AttributeType.STRING },
      projectionType: dynamodb.ProjectionType.ALL,
    });
    for (const pack of ['HIPAA.Security', 'NIST.800.53.R5']) {
      Validations.of(this.table).acknowledge({
        id: `${pack}-DynamoDBInBackupPlan`,
        reason:
          'Point-in-time recovery (35 days, continuous) is on and the table is RETAINed with deletion ' +
          "protection. Long-term copies belong to the account's own AWS Backup policy (usually tag- or " +
          'organisation-based), which keygate should not duplicate or override.',
      });
    }
  }

  /**
   * The proxy: reads its snapshot (`PROXY#<id>`, GetItem only: it can never change what it is
   * allowed to do), updates its rate-limit counters (`LIMIT#<id>#…`, UpdateItem only) and reads and
   * refreshes oauth2 authorization-code grants (`OAUTHGRANT#<id>`: GetItem, and UpdateItem for the
   * refresh lease and the rotated tokens) — patterns 10, 11 and 22 in keys.ts, and nothing else.
   */
  grantProxyAccess(fn: KeygateFunction): void {
    // Its snapshot by proxy id, or the same snapshot's copy under its alias (keys.aliasSnapshot).
    this.grantLeadingKeys(fn, ['PROXY#*', 'ALIAS#*'], ['dynamodb:GetItem']);
    this.grantLeadingKeys(fn, ['LIMIT#*'], ['dynamodb:UpdateItem']);
    this.grantLeadingKeys(fn, ['OAUTHGRANT#*'], ['dynamodb:GetItem', 'dynamodb:UpdateItem']);
    grantKeyViaService(fn, this.region, 'dynamodb', KEY_WRITE, this.key);
  }

  /**
   * The aggregator (lambdas/telemetry/aggregator.ts): batch-writes request-log items, updates
   * telemetry buckets (re-reading a bucket's watermark after a conflict) and upserts the proxy
   * owner and first-seen-path markers — patterns 12, 13, 17 and 18 in keys.ts, nothing else.
   */
  grantAggregatorAccess(fn: KeygateFunction): void {
    this.grantLeadingKeys(
      fn,
      ['REQLOG#*', 'TELEMETRY#*', 'PROXYOWNER#*', 'PROXYPATH#*', 'ANOMALY#*', 'PENDINGCALL#*'],
      // Put/Delete: request-log items (conditional) and pending calls; Query: the minute buckets a
      // proxy is judged on for the AnomalyFlags metric, and the overdue pending calls.
      [
        'dynamodb:PutItem',
        'dynamodb:DeleteItem',
        'dynamodb:UpdateItem',
        'dynamodb:GetItem',
        'dynamodb:Query',
      ],
    );
    grantKeyViaService(fn, this.region, 'dynamodb', KEY_WRITE, this.key);
  }

  private grantLeadingKeys(fn: KeygateFunction, prefixes: string[], actions: string[]): void {
    fn.addToRolePolicy(
      new iam.PolicyStatement({
        actions,
        resources: [this.table.tableArn],
        conditions: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': prefixes } },
      }),
    );
    fn.useCell(this.region);
    fn.useHomeTable(this.table.tableName);
  }
}

/**
 * The Core API: every item of the table of the cell in `region` (its own or another region's),
 * including the region index. The table is named by its deterministic name, so no cross-region
 * reference is needed.
 */
export function grantCoreApiTableAccess(fn: KeygateFunction, region: string, key?: kms.IKey): void {
  const tableArn = `arn:${Aws.PARTITION}:dynamodb:${region}:${Aws.ACCOUNT_ID}:table/${cellNames(region, stageOf(fn)).tableName}`;
  fn.addToRolePolicy(
    new iam.PolicyStatement({
      actions: CORE_API_ITEM_ACTIONS,
      resources: [tableArn, `${tableArn}/index/${tableLayout.gsi1.name}`],
    }),
  );
  grantKeyViaService(fn, region, 'dynamodb', KEY_WRITE, key);
  fn.useCell(region);
}
