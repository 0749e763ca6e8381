import { Aws, Duration, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import { Construct } from 'constructs';
import { cellNames, stageOf } from './cell-names.ts';
import type { KeygateFunction } from './keygate-function.ts';

/**
 * The encryption context every sealed target secret carries (`credentialContext` in
 * `lambdas/crypto/envelope.ts`): a client and a credential, always (`REQUIRED_CONTEXT_KEYS`, checked
 * with `Null`), and the secret's revision on every blob sealed since revisions exist. The key policy
 * and the functions' IAM policies allow no other key, so the key cannot be used directly for
 * anything but target secrets bound to a client and a credential.
 */
export const REQUIRED_CONTEXT_KEYS = ['clientId', 'credentialId'] as const;
export const ALLOWED_CONTEXT_KEYS = [...REQUIRED_CONTEXT_KEYS, 'secretRevision'] as const;

/**
 * The blobs the Core API may open (by their context's `credentialId` suffix), never a credential's
 * own secret: what an oauth2 authorization_code consent needs (`#consent`), the PKCE verifier of a
 * pending consent (`#pkce`), and the grant's tokens, to revoke them at the provider when the
 * credential is deleted or its secret replaced (`#grant`). A credential's own id is a UUID keygate
 * picks, so it never ends in one of these.
 */
export const CORE_API_OPENS = ['*#consent', '*#pkce', '*#grant'] as const;

/** Services that encrypt the cell's data at rest with the cell key, on behalf of a caller. */
const AT_REST_SERVICES = ['dynamodb', 'kinesis', 'sqs', 'sns'] as const;

/**
 * Key administration, listed action by action: no cryptographic use, no `kms:CreateGrant` (a grant
 * could hand Decrypt to anyone) and no `kms:PutKeyPolicy` (a new policy could too). Those two are
 * given separately below, each under a condition.
 */
export const KEY_ADMIN_ACTIONS = [
  'kms:DescribeKey',
  'kms:GetKeyPolicy',
  'kms:GetKeyRotationStatus',
  'kms:ListGrants',
  'kms:ListKeyPolicies',
  'kms:ListResourceTags',
  'kms:ListKeyRotations',
  'kms:EnableKey',
  'kms:DisableKey',
  'kms:EnableKeyRotation',
  'kms:DisableKeyRotation',
  'kms:RotateKeyOnDemand',
  'kms:UpdateKeyDescription',
  'kms:CreateAlias',
  'kms:UpdateAlias',
  'kms:DeleteAlias',
  'kms:TagResource',
  'kms:UntagResource',
  'kms:RevokeGrant',
  'kms:RetireGrant',
  'kms:ScheduleKeyDeletion',
  'kms:CancelKeyDeletion',
];

/** IAM conditions that pin a direct KMS call to a target-secret context. */
export function secretContextConditions(): Record<string, Record<string, unknown>> {
  return {
    'ForAllValues:StringEquals': { 'kms:EncryptionContextKeys': [...ALLOWED_CONTEXT_KEYS] },
    Null: Object.fromEntries(REQUIRED_CONTEXT_KEYS.map((k) => [`kms:EncryptionContext:${k}`, 'false'])),
  };
}

export interface CellKeyProps {
  /** ARN of the Core API's role (in the home region), the only principal that may seal secrets. */
  coreApiRoleArn: string;
  /**
   * ARN of the one role that may replace the key policy (`kms:PutKeyPolicy`): the break-glass role,
   * which is also what CloudFormation must run as to change the policy on a later deploy.
   */
  breakGlassRoleArn: string;
  /**
   * True when the role that creates the key (the deploy role) is not the break-glass role: KMS
   * then needs `BypassPolicyLockoutSafetyCheck`, since the creator may not put a policy afterwards.
   */
  creatorIsNotBreakGlass?: boolean;
}

/**
 * The cell's customer-managed KMS key, with rotation, retained (except when its very first create
 * rolls back), and a key policy that says exactly who may do what:
 *  - the account administers the key (listed actions) but has no cryptographic use of it, may not
 *    create grants except for AWS services (`kms:GrantIsForAWSResource`), and may not replace the
 *    policy: only the break-glass role may (`kms:PutKeyPolicy`);
 *  - AWS services (DynamoDB, Kinesis, SQS, SNS) may use it on behalf of principals of this account
 *    that those services already authorised — only through the service (`kms:ViaService`);
 *  - CloudWatch Logs encrypts this cell's log groups with it, and CloudWatch alarms publish to the
 *    encrypted alarm topic;
 *  - the Core API generates data keys, and the proxy decrypts them, only under an encryption context
 *    naming a client and a credential — direct calls, which no other principal may make; the Core
 *    API decrypts only the consent blobs of oauth2 authorization_code credentials (CORE_API_OPENS).
 * Every role is named as the account root plus an `aws:PrincipalArn` condition, never as a role
 * principal: KMS resolves role principals when the policy is written, and a role created in the
 * same deploy may not be visible to it yet (nor a Core API role of another region's stack).
 */
export class CellKey extends Construct {
  readonly key: kms.Key;
  readonly region: string;

  constructor(scope: Construct, id: string, props: CellKeyProps) {
    super(scope, id);
    const { region, account } = Stack.of(this);
    this.region = region;
    const root = new iam.AccountRootPrincipal();
    const policy = new iam.PolicyDocument({
      statements: [
        new iam.PolicyStatement({
          sid: 'KeyAdministration',
          principals: [root],
          actions: KEY_ADMIN_ACTIONS,
          resources: ['*'],
        }),
        // Control Tower CT.KMS.PR.3: whatever an IAM policy says, no grant except for AWS services.
        new iam.PolicyStatement({
          sid: 'DenyGrantsExceptForAwsServices',
          effect: iam.Effect.DENY,
          principals: [new iam.AnyPrincipal()],
          actions: ['kms:CreateGrant'],
          resources: ['*'],
          conditions: {
            BoolIfExists: { 'kms:GrantIsForAWSResource': 'false', 'aws:PrincipalIsAWSService': 'false' },
          },
        }),
        new iam.PolicyStatement({
          sid: 'BreakGlassReplacesPolicy',
          principals: [root],
          actions: ['kms:PutKeyPolicy'],
          resources: ['*'],
          conditions: { ArnEquals: { 'aws:PrincipalArn': props.breakGlassRoleArn } },
        }),
        new iam.PolicyStatement({
          sid: 'AtRestEncryptionThroughCellServices',
          principals: [root],
          actions: [
            'kms:Encrypt',
            'kms:Decrypt',
            'kms:ReEncrypt*',
            'kms:GenerateDataKey*',
            'kms:DescribeKey',
          ],
          resources: ['*'],
          conditions: {
            StringEquals: { 'kms:CallerAccount': account },
            'ForAnyValue:StringEquals': {
              'kms:ViaService': AT_REST_SERVICES.map((s) => `${s}.${region}.amazonaws.com`),
            },
          },
        }),
        new iam.PolicyStatement({
          sid: 'ServiceGrantsForAwsResources',
          principals: [root],
          actions: ['kms:CreateGrant'],
          resources: ['*'],
          conditions: {
            StringEquals: {
              'kms:CallerAccount': account,
              'kms:ViaService': `dynamodb.${region}.amazonaws.com`,
            },
            Bool: { 'kms:GrantIsForAWSResource': 'true' },
          },
        }),
        new iam.PolicyStatement({
          sid: 'CloudWatchLogsOfThisCell',
          principals: [new iam.ServicePrincipal(`logs.${region}.amazonaws.com`)],
          actions: [
            'kms:Encrypt*',
            'kms:Decrypt*',
            'kms:ReEncrypt*',
            'kms:GenerateDataKey*',
            'kms:Describe*',
          ],
          resources: ['*'],
          conditions: {
            ArnLike: {
              // CloudFormation names the cell's log groups `<stack name>-<logical id>-<suffix>`; WAF's
              // must start with `aws-waf-logs-` (lib/edge-protection.ts names them after the stack).
              'kms:EncryptionContext:aws:logs:arn': [
                `arn:${Aws.PARTITION}:logs:${region}:${account}:log-group:${Stack.of(this).stackName}-*`,
                `arn:${Aws.PARTITION}:logs:${region}:${account}:log-group:aws-waf-logs-${Stack.of(this).stackName}-*`,
              ],
            },
          },
        }),
        new iam.PolicyStatement({
          sid: 'AlarmsPublishToEncryptedTopic',
          principals: [new iam.ServicePrincipal('cloudwatch.amazonaws.com')],
          actions: ['kms:Decrypt', 'kms:GenerateDataKey*'],
          resources: ['*'],
          conditions: { StringEquals: { 'aws:SourceAccount': account } },
        }),
        new iam.PolicyStatement({
          sid: 'CoreApiSealsTargetSecrets',
          principals: [root],
          actions: ['kms:GenerateDataKey'],
          resources: ['*'],
          conditions: {
            ...secretContextConditions(),
            ArnEquals: { 'aws:PrincipalArn': props.coreApiRoleArn },
          },
        }),
        new iam.PolicyStatement({
          sid: 'CoreApiOpensConsentSecrets',
          principals: [root],
          actions: ['kms:Decrypt'],
          resources: ['*'],
          conditions: { ...coreApiOpenConditions(), ArnEquals: { 'aws:PrincipalArn': props.coreApiRoleArn } },
        }),
      ],
    });
    this.key = new kms.Key(this, 'Key', {
      description: `keygate cell ${region}: target secrets (envelope) and data at rest`,
      enableKeyRotation: true,
      rotationPeriod: Duration.days(365),
      policy,
      // A deleted key would make every sealed secret and the encrypted table unreadable. Retained
      // on update and delete, but not when the first create rolls back (nothing was sealed yet).
      removalPolicy: RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
      pendingWindow: Duration.days(30),
    });
    if (props.creatorIsNotBreakGlass)
      (this.key.node.defaultChild as kms.CfnKey).bypassPolicyLockoutSafetyCheck = true;
    this.key.addAlias(cellNames(region, stageOf(this)).keyAlias);
  }

  /**
   * Lets `fn` decrypt target secrets of this cell: the key policy names its role (account root +
   * `aws:PrincipalArn`), and its IAM policy allows kms:Decrypt — both only under a
   * `{clientId, credentialId}` context.
   */
  grantOpenSecrets(fn: KeygateFunction): void {
    const statement = {
      actions: ['kms:Decrypt'],
      conditions: secretContextConditions(),
    };
    this.key.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: `OpenTargetSecrets${fn.node.scope!.node.id}`,
        principals: [new iam.AccountRootPrincipal()],
        resources: ['*'],
        ...statement,
        conditions: { ...statement.conditions, ArnEquals: { 'aws:PrincipalArn': fn.role!.roleArn } },
      }),
    );
    fn.addToRolePolicy(new iam.PolicyStatement({ resources: [this.key.keyArn], ...statement }));
    fn.useCell(this.region);
  }

  /**
   * Lets `fn` (the proxy) seal the tokens of an oauth2 authorization-code grant it refreshed
   * (lambdas/storage/oauth-grants.ts): kms:GenerateDataKey, only under a grant's context
   * (`credentialId` ends in `#grant`), so it can never seal a credential's own secret.
   */
  grantSealOAuthGrants(fn: KeygateFunction): void {
    const secret = secretContextConditions();
    const statement = {
      actions: ['kms:GenerateDataKey'],
      conditions: { ...secret, StringLike: { 'kms:EncryptionContext:credentialId': '*#grant' } },
    };
    this.key.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: `SealOAuthGrants${fn.node.scope!.node.id}`,
        principals: [new iam.AccountRootPrincipal()],
        resources: ['*'],
        ...statement,
        conditions: { ...statement.conditions, ArnEquals: { 'aws:PrincipalArn': fn.role!.roleArn } },
      }),
    );
    fn.addToRolePolicy(new iam.PolicyStatement({ resources: [this.key.keyArn], ...statement }));
  }
}

/** IAM conditions of the Core API's Decrypt: a secret context whose credentialId is one of CORE_API_OPENS. */
export function coreApiOpenConditions(): Record<string, Record<string, unknown>> {
  return {
    ...secretContextConditions(),
    StringLike: { 'kms:EncryptionContext:credentialId': [...CORE_API_OPENS] },
  };
}

/**
 * Lets the Core API use the key of the cell in `region` (its own or another region's): generate
 * data keys for target secrets, and decrypt only the blobs an oauth2 consent needs (CORE_API_OPENS),
 * never a credential's own secret. The key is addressed by its deterministic alias, so no
 * cross-region reference is needed; the cell's key policy already names the Core API's role.
 */
export function grantSealSecrets(fn: KeygateFunction, region: string, key?: kms.IKey): void {
  const target = keyResource(fn, region, key);
  fn.addToRolePolicy(
    new iam.PolicyStatement({
      actions: ['kms:GenerateDataKey'],
      resources: target.resources,
      conditions: { ...secretContextConditions(), ...target.conditions },
    }),
  );
  fn.addToRolePolicy(
    new iam.PolicyStatement({
      actions: ['kms:Decrypt'],
      resources: target.resources,
      conditions: { ...coreApiOpenConditions(), ...target.conditions },
    }),
  );
  fn.useCell(region);
}

/**
 * Lets `fn` use the key of the cell in `region` through one AWS service only (DynamoDB reads and
 * writes of an encrypted table, Kinesis puts to an encrypted stream). `key` is the construct when
 * the cell is the function's own; otherwise the key is found by its alias.
 */
export function grantKeyViaService(
  fn: KeygateFunction,
  region: string,
  service: (typeof AT_REST_SERVICES)[number],
  actions: string[],
  key?: kms.IKey,
): void {
  const target = keyResource(fn, region, key);
  fn.addToRolePolicy(
    new iam.PolicyStatement({
      actions,
      resources: target.resources,
      conditions: {
        StringEquals: { 'kms:ViaService': `${service}.${region}.amazonaws.com` },
        ...target.conditions,
      },
    }),
  );
}

/**
 * The key of a cell as an IAM resource: its ARN when we hold the construct; for another region's
 * cell, any key of that region narrowed by the deterministic alias (`kms:ResourceAliases`), which
 * needs no cross-region reference.
 */
function keyResource(fn: KeygateFunction, region: string, key?: kms.IKey) {
  if (key) return { resources: [key.keyArn], conditions: {} };
  const alias = cellNames(region, stageOf(fn)).keyAlias;
  Validations.of(fn.role!).acknowledge({
    id: `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:kms:${region}:<AWS::AccountId>:key/*]`,
    reason:
      `The key of the ${region} cell lives in another region's stack and cannot be referenced; the ` +
      `statement is narrowed to it by kms:ResourceAliases = ${alias}, and the ` +
      "cell's key policy names this role as well.",
  });
  return {
    resources: [`arn:${Aws.PARTITION}:kms:${region}:${Aws.ACCOUNT_ID}:key/*`],
    conditions: { 'ForAnyValue:StringEquals': { 'kms:ResourceAliases': alias } },
  };
}
