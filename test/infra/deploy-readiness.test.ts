import { describe, expect, it } from '@jest/globals';
import { CURRENTLY_RECOMMENDED_FLAGS } from 'aws-cdk-lib/cx-api';
import { CORE_API_OPENS, KEY_ADMIN_ACTIONS } from '../../lib/cell-key.ts';
import { REST_ACCESS_LOG_FIELDS } from '../../lib/core-api.ts';
import { EDGE_WINDOW_SECONDS } from '../../lib/edge-protection.ts';
import { ACCESS_LOG_FIELDS } from '../../lib/http-gateway.ts';
import { actionsOf, cdkJsonContext, resourcesOf, synthKeygate } from './synth.ts';

// One installation as a first production deploy would set it up: a stage, two cells, a dedicated
// break-glass role, the proxy capped, egress through a VPC, custom domains with Route 53 records.
// Each stack is synthesised once, with every compliance plugin (three cdk-nag packs, Control
// Tower's cfn-guard rules): an unacknowledged finding would throw here.
const { stacks, templates } = synthKeygate({
  regions: 'us-east-1,eu-west-1',
  stage: 'prod',
  breakGlassRole: 'keygate-break-glass',
  proxyReservedConcurrency: '200',
  egress: 'vpc',
  apiDomain: 'api.example.com',
  apiCertificateArn: 'arn:aws:acm:us-east-1:111111111111:certificate/api',
  'proxyDomain.eu-west-1': 'eu.proxy.example.com',
  'proxyCertificateArn.eu-west-1': 'arn:aws:acm:eu-west-1:111111111111:certificate/eu',
  hostedZoneId: 'Z0000000000000000000',
  hostedZoneName: 'example.com',
});
const [home, eu] = templates as [(typeof templates)[0], (typeof templates)[0]];

/** Every KMS action that matters here; wildcards in a policy are expanded against it. */
const KMS_ACTIONS = [
  ...KEY_ADMIN_ACTIONS,
  'kms:Decrypt',
  'kms:Encrypt',
  'kms:GenerateDataKey',
  'kms:GenerateDataKeyWithoutPlaintext',
  'kms:GenerateDataKeyPair',
  'kms:GenerateDataKeyPairWithoutPlaintext',
  'kms:ReEncryptFrom',
  'kms:ReEncryptTo',
  'kms:CreateGrant',
  'kms:PutKeyPolicy',
  'kms:ImportKeyMaterial',
  'kms:DeleteImportedKeyMaterial',
  'kms:ReplicateKey',
  'kms:UpdatePrimaryRegion',
  'kms:Sign',
  'kms:Verify',
  'kms:GenerateMac',
  'kms:VerifyMac',
  'kms:DeriveSharedSecret',
];
/** Actions that give plaintext, or can be turned into it (a grant or a new policy that allows Decrypt). */
const PLAINTEXT_PATHS = new Set([
  'kms:Decrypt',
  'kms:GenerateDataKey',
  'kms:GenerateDataKeyPair',
  'kms:ReEncryptFrom',
  'kms:CreateGrant',
  'kms:PutKeyPolicy',
]);

function expand(pattern: string): string[] {
  const regex = new RegExp(`^${pattern.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`, 'i');
  return KMS_ACTIONS.filter((a) => regex.test(a));
}

/**
 * Who can obtain plaintext from a key policy, as [principal ARN (as written), action] pairs.
 * Statements for AWS service principals and statements pinned to `kms:ViaService` are uses by a
 * service on a caller's behalf (the plaintext stays inside DynamoDB, Kinesis, SQS, SNS or Logs); a
 * CreateGrant only for AWS resources cannot hand Decrypt to a person. Everything else must name
 * one role by `aws:PrincipalArn`, or it is reported as reachable by any principal of the account.
 */
function plaintextPrincipals(policy: any): [string, string][] {
  const out: [string, string][] = [];
  for (const s of policy.Statement) {
    expect(s.NotAction).toBeUndefined();
    expect(s.NotPrincipal).toBeUndefined();
    if (s.Effect !== 'Allow') continue;
    const actions = actionsOf(s)
      .flatMap(expand)
      .filter((a) => PLAINTEXT_PATHS.has(a));
    if (actions.length === 0) continue;
    if (s.Principal?.Service) continue;
    expect(s.Principal).not.toBe('*');
    const c = s.Condition ?? {};
    const viaService =
      c['ForAnyValue:StringEquals']?.['kms:ViaService'] ?? c.StringEquals?.['kms:ViaService'];
    const grantForAws = c.Bool?.['kms:GrantIsForAWSResource'] === 'true';
    const who = c.ArnEquals?.['aws:PrincipalArn'];
    for (const action of actions) {
      if (action === 'kms:CreateGrant' && grantForAws && viaService) continue;
      if (viaService && action !== 'kms:CreateGrant' && action !== 'kms:PutKeyPolicy') continue;
      out.push([who ? JSON.stringify(who) : 'ANY PRINCIPAL OF THE ACCOUNT', action]);
    }
  }
  return out;
}

describe('key policy: only the proxy and the Core API can obtain plaintext', () => {
  for (const [region, template] of [
    ['us-east-1', home],
    ['eu-west-1', eu],
  ] as const) {
    const [, key] = resourcesOf(template, 'AWS::KMS::Key')[0]!;
    const policy = key.Properties.KeyPolicy;

    it(`${region}: proxy role Decrypt and grant sealing, Core API role GenerateDataKey and consent-blob Decrypt, break-glass role PutKeyPolicy — nobody else`, () => {
      const paths = plaintextPrincipals(policy);
      expect(paths).toHaveLength(5);
      const find = (action: string) => paths.filter(([, a]) => a === action).map(([who]) => who);
      expect(find('kms:Decrypt')).toEqual([
        expect.stringContaining(':role/keygate-prod-core-api-us-east-1'),
        expect.stringMatching(/"Fn::GetAtt":\["ProxyFunctionRole\w+","Arn"\]/),
      ]);
      // The Core API's Decrypt: consent, PKCE and grant blobs only, never a credential's own secret.
      const coreOpen = policy.Statement.find((s: any) => s.Sid === 'CoreApiOpensConsentSecrets');
      expect(coreOpen.Condition.StringLike).toEqual({
        'kms:EncryptionContext:credentialId': [...CORE_API_OPENS],
      });
      expect(find('kms:GenerateDataKey')).toEqual([
        expect.stringContaining(':role/keygate-prod-core-api-us-east-1'),
        expect.stringMatching(/"Fn::GetAtt":\["ProxyFunctionRole\w+","Arn"\]/),
      ]);
      // The proxy seals the oauth2 grants it refreshes, never a credential's own secret.
      const proxySeal = policy.Statement.find((s: any) => s.Sid === 'SealOAuthGrantsProxy');
      expect(proxySeal.Condition.StringLike).toEqual({ 'kms:EncryptionContext:credentialId': '*#grant' });
      expect(find('kms:PutKeyPolicy')).toEqual([expect.stringContaining(':role/keygate-break-glass')]);
      expect(find('kms:CreateGrant')).toEqual([]);
      expect(find('kms:ReEncryptFrom')).toEqual([]);
    });

    it(`${region}: the direct uses are bound to the secret context, and roles are named by aws:PrincipalArn`, () => {
      for (const s of policy.Statement) {
        if (!actionsOf(s).some((a) => a === 'kms:Decrypt' || a === 'kms:GenerateDataKey')) continue;
        if (!s.Condition?.ArnEquals) continue;
        expect(s.Principal).toEqual({ AWS: expect.anything() });
        expect(JSON.stringify(s.Principal)).toContain(':root');
        expect(s.Condition.Null).toEqual({
          'kms:EncryptionContext:clientId': 'false',
          'kms:EncryptionContext:credentialId': 'false',
        });
      }
    });

    it(`${region}: administration is listed action by action, with no wildcard, grant or policy change`, () => {
      const admin = policy.Statement.find((s: any) => s.Sid === 'KeyAdministration');
      expect(actionsOf(admin).sort()).toEqual([...KEY_ADMIN_ACTIONS].sort());
      for (const a of actionsOf(admin)) expect(a).not.toContain('*');
      expect(actionsOf(admin)).not.toContain('kms:CreateGrant');
      expect(actionsOf(admin)).not.toContain('kms:PutKeyPolicy');
    });

    it(`${region}: an explicit deny refuses every grant that is not for an AWS service (Control Tower CT.KMS.PR.3)`, () => {
      const deny = policy.Statement.find((s: any) => s.Effect === 'Deny');
      expect(deny).toMatchObject({
        Principal: { AWS: '*' },
        Action: 'kms:CreateGrant',
        Condition: {
          BoolIfExists: { 'kms:GrantIsForAWSResource': 'false', 'aws:PrincipalIsAWSService': 'false' },
        },
      });
    });

    it(`${region}: CloudWatch Logs may use the key for this stack's log groups only`, () => {
      const logs = policy.Statement.find((s: any) => s.Sid === 'CloudWatchLogsOfThisCell');
      const arns = JSON.stringify(logs.Condition.ArnLike['kms:EncryptionContext:aws:logs:arn']);
      expect(arns).toContain(`:log-group:keygate-prod-${region}-*`);
      expect(arns).toContain(`:log-group:aws-waf-logs-keygate-prod-${region}-*`);
      expect(arns).not.toMatch(/log-group:\*/);
    });

    it(`${region}: a break-glass role other than the deploy role needs the lockout check bypassed`, () => {
      expect(key.Properties.BypassPolicyLockoutSafetyCheck).toBe(true);
    });
  }
});

describe('first-deploy safety', () => {
  it('stateful resources are retained on update and delete, but not when their first create rolls back', () => {
    for (const template of [home, eu]) {
      for (const type of [
        'AWS::DynamoDB::Table',
        'AWS::Kinesis::Stream',
        'AWS::KMS::Key',
        'AWS::Logs::LogGroup',
      ]) {
        const found = resourcesOf(template, type);
        expect(found.length).toBeGreaterThan(0);
        for (const [id, r] of found)
          expect({ id, deletion: r.DeletionPolicy, replace: r.UpdateReplacePolicy }).toEqual({
            id,
            deletion: 'RetainExceptOnCreate',
            replace: 'Retain',
          });
      }
      // Plain Retain would keep a named resource after a failed first create and wedge the retry.
      for (const [id, r] of Object.entries(template.toJSON().Resources) as [string, any][]) {
        // Only API Gateway's account-wide logging role and setting, unnamed and shared by installs.
        if (r.DeletionPolicy === 'Retain')
          expect({ id, shared: ['AWS::IAM::Role', 'AWS::ApiGateway::Account'].includes(r.Type) }).toEqual({
            id,
            shared: true,
          });
      }
    }
  });

  it('the stage goes into stack names and every physical name, so installs can share an account', () => {
    expect(stacks.map((s) => s.stackName)).toEqual(['keygate-prod-us-east-1', 'keygate-prod-eu-west-1']);
    home.hasResourceProperties('AWS::DynamoDB::Table', { TableName: 'keygate-prod-us-east-1' });
    eu.hasResourceProperties('AWS::Kinesis::Stream', { Name: 'keygate-prod-telemetry-eu-west-1' });
    home.hasResourceProperties('AWS::KMS::Alias', { AliasName: 'alias/keygate-prod-us-east-1' });
    home.hasResourceProperties('AWS::IAM::Role', { RoleName: 'keygate-prod-core-api-us-east-1' });
    home.hasResourceProperties('AWS::SNS::Topic', { TopicName: 'keygate-prod-alarms-us-east-1' });
    home.hasResourceProperties('AWS::CloudWatch::Dashboard', { DashboardName: 'keygate-prod-us-east-1' });
    const names = (template: typeof home) =>
      Object.values(template.toJSON().Resources as Record<string, any>)
        // DNS records carry the operator's host names.
        .filter((r) => r.Type !== 'AWS::Route53::RecordSet')
        .flatMap((r) =>
          [
            'TableName',
            'Name',
            'AliasName',
            'RoleName',
            'TopicName',
            'AlarmName',
            'DashboardName',
            'FilterName',
            'LogGroupName',
          ]
            .map((k) => r.Properties?.[k])
            .filter((v) => typeof v === 'string'),
        );
    for (const template of [home, eu]) {
      const all = names(template);
      expect(all.length).toBeGreaterThan(20);
      for (const name of all) expect(name).toMatch(/keygate-prod-/);
    }
    const cells = JSON.parse(
      resourcesOf(home, 'AWS::Lambda::Function').find(
        ([, f]) => f.Properties.Description === 'Core API (control plane)',
      )![1].Properties.Environment.Variables.KEYGATE_CELLS,
    );
    expect(cells['eu-west-1']).toEqual({
      tableName: 'keygate-prod-eu-west-1',
      kmsKeyId: 'alias/keygate-prod-eu-west-1',
      streamName: 'keygate-prod-telemetry-eu-west-1',
    });
  });

  it('each API has its own name, and no logical id carries "undefined"', () => {
    home.hasResourceProperties('AWS::ApiGateway::RestApi', { Name: 'keygate-prod-us-east-1-core-api' });
    home.hasResourceProperties('AWS::ApiGateway::RestApi', { Name: 'keygate-prod-us-east-1-proxy' });
    eu.hasResourceProperties('AWS::ApiGateway::RestApi', { Name: 'keygate-prod-eu-west-1-proxy' });
    for (const template of [home, eu])
      for (const id of Object.keys(template.toJSON().Resources)) expect(id).not.toMatch(/undefined/i);
  });

  it('cdk.json sets every feature flag the installed aws-cdk-lib recommends', () => {
    for (const [flag, value] of Object.entries(CURRENTLY_RECOMMENDED_FLAGS))
      expect({ flag, value: cdkJsonContext[flag] }).toEqual({ flag, value });
  });
});

describe('isolation', () => {
  const fn = (template: typeof home, description: string) =>
    resourcesOf(template, 'AWS::Lambda::Function').find(
      ([, f]) => f.Properties.Description === description,
    )![1];

  it('the Core API and the aggregator have reserved concurrency; the proxy has the configured cap', () => {
    expect(fn(home, 'Core API (control plane)').Properties.ReservedConcurrentExecutions).toBe(10);
    for (const template of [home, eu]) {
      expect(
        fn(template, 'telemetry aggregator (request log and rollups)').Properties
          .ReservedConcurrentExecutions,
      ).toBe(5);
      expect(fn(template, 'regional proxy (data plane)').Properties.ReservedConcurrentExecutions).toBe(200);
    }
  });

  it('concurrency in use is alarmed per reserved function and for the account', () => {
    const alarms = resourcesOf(home, 'AWS::CloudWatch::Alarm').map(([, a]) => a.Properties);
    const byName = (suffix: string) => alarms.find((a) => a.AlarmName === `keygate-prod-us-east-1-${suffix}`);
    expect(byName('ProxyFunctionConcurrency')).toMatchObject({
      MetricName: 'ConcurrentExecutions',
      Threshold: 160,
    });
    expect(byName('CoreApiFunctionConcurrency')).toMatchObject({ Threshold: 8 });
    expect(byName('TelemetryAggregatorConcurrency')).toMatchObject({ Threshold: 4 });
    expect(byName('AccountConcurrency')).toMatchObject({
      MetricName: 'ConcurrentExecutions',
      Threshold: 800,
    });
    expect(byName('AccountConcurrency').Dimensions).toBeUndefined();
  });

  it('WAF protects the Core API stage with rate-based rules, and logs without credentials or paths', () => {
    const [, acl] = resourcesOf(home, 'AWS::WAFv2::WebACL')[0]!;
    expect(acl.Properties.Scope).toBe('REGIONAL');
    const rules = Object.fromEntries(acl.Properties.Rules.map((r: any) => [r.Name, r]));
    expect(Object.keys(rules)).toEqual([
      'AmazonIpReputation',
      'UnauthenticatedPerIp',
      'PerCredential',
      'PerSourceIp',
    ]);
    const rate = (name: string) => rules[name].Statement.RateBasedStatement;
    expect(rate('PerSourceIp')).toMatchObject({ AggregateKeyType: 'IP', Limit: 6000 });
    expect(rate('UnauthenticatedPerIp')).toMatchObject({ AggregateKeyType: 'IP', Limit: 300 });
    expect(rate('UnauthenticatedPerIp').ScopeDownStatement.NotStatement).toBeDefined();
    expect(rate('PerCredential')).toMatchObject({
      AggregateKeyType: 'CUSTOM_KEYS',
      Limit: 3000,
      CustomKeys: [{ Header: { Name: 'authorization' } }],
    });
    for (const name of ['UnauthenticatedPerIp', 'PerCredential', 'PerSourceIp']) {
      expect(rate(name).EvaluationWindowSec).toBe(EDGE_WINDOW_SECONDS);
      expect(rules[name].Action.Block.CustomResponse.ResponseCode).toBe(429);
    }
    // Both REST API stages of the home cell: the Core API's and the streaming proxy's.
    const associated = resourcesOf(home, 'AWS::WAFv2::WebACLAssociation').map(([, a]) =>
      JSON.stringify(a.Properties.ResourceArn),
    );
    expect(associated).toHaveLength(2);
    expect(associated.some((arn) => /CoreApiRest\w*DeploymentStagev1/.test(arn))).toBe(true);
    expect(associated.some((arn) => /ProxyRestApiDeploymentStagev1/.test(arn))).toBe(true);
    eu.resourceCountIs('AWS::WAFv2::WebACLAssociation', 1);
    const [, logging] = resourcesOf(home, 'AWS::WAFv2::LoggingConfiguration')[0]!;
    expect(logging.Properties.RedactedFields).toEqual([
      { SingleHeader: { Name: 'authorization' } },
      { QueryString: {} },
      { UriPath: {} },
    ]);
  });

  it('egress mode vpc: the proxy alone runs in private subnets behind one NAT gateway per zone, HTTPS out only', () => {
    for (const template of [home, eu]) {
      template.resourceCountIs('AWS::EC2::NatGateway', 2);
      template.resourceCountIs('AWS::EC2::EIP', 2);
      template.resourceCountIs('AWS::EC2::FlowLog', 1);
      expect(fn(template, 'regional proxy (data plane)').Properties.VpcConfig.SubnetIds).toHaveLength(2);
      expect(
        fn(template, 'telemetry aggregator (request log and rollups)').Properties.VpcConfig,
      ).toBeUndefined();
      const groups = resourcesOf(template, 'AWS::EC2::SecurityGroup').filter(([, g]) =>
        String(g.Properties.GroupDescription).startsWith('keygate proxy'),
      );
      expect(groups).toHaveLength(1);
      expect(groups[0]![1].Properties.SecurityGroupEgress).toEqual([
        expect.objectContaining({ CidrIp: '0.0.0.0/0', IpProtocol: 'tcp', FromPort: 443, ToPort: 443 }),
      ]);
      const ips = template.toJSON().Outputs.EgressIps;
      expect(JSON.stringify(ips.Value)).toContain('PublicIp');
    }
    expect(fn(home, 'Core API (control plane)').Properties.VpcConfig).toBeUndefined();
  });
});

describe('alarms that can fire', () => {
  const alarms = resourcesOf(home, 'AWS::CloudWatch::Alarm').map(([, a]) => a.Properties);
  const named = (suffix: string) => alarms.find((a) => a.AlarmName === `keygate-prod-us-east-1-${suffix}`);

  it('telemetry delivery is read from the subscription filter, not from a log line the proxy never writes', () => {
    expect(named('TelemetryUndelivered')).toBeUndefined();
    const [, filter] = resourcesOf(home, 'AWS::Logs::SubscriptionFilter')[0]!;
    for (const metric of ['TelemetryDeliveryErrors', 'TelemetryDeliveryThrottling']) {
      const alarm = named(metric);
      const stat = alarm.Metrics?.[0]?.MetricStat?.Metric ?? alarm;
      expect(stat.Namespace).toBe('AWS/Logs');
      const dims = Object.fromEntries(stat.Dimensions.map((d: any) => [d.Name, d.Value]));
      expect(dims.FilterName).toBe(filter.Properties.FilterName);
      expect(dims.LogGroupName).toEqual(filter.Properties.LogGroupName);
      expect(dims.DestinationType).toBe('Kinesis');
    }
    const filters = resourcesOf(home, 'AWS::Logs::MetricFilter').map(([, f]) => JSON.stringify(f.Properties));
    expect(filters.some((f) => f.includes('telemetry records dropped'))).toBe(false);
  });

  it('4xx rates, 429s, p99 latency and DynamoDB throttles are alarmed', () => {
    for (const name of [
      'Proxy4xxRate',
      'CoreApi4xxRate',
      'ProxyRateLimited',
      'CoreApiEdgeBlocked',
      'ProxyLatencyP99',
      'CoreApiLatencyP99',
      'DynamoDbThrottles',
    ])
      expect({ name, found: named(name) !== undefined }).toEqual({ name, found: true });
    expect(named('ProxyLatencyP99')).toMatchObject({ ExtendedStatistic: 'p99', Threshold: 10_000 });
    expect(JSON.stringify(named('CoreApiEdgeBlocked'))).toContain('AWS/WAFV2');
    // The proxy is a REST API: its client-error metric is 4XXError.
    expect(
      named('Proxy4xxRate').Metrics.some((m: any) => m.MetricStat?.Metric?.MetricName === '4XXError'),
    ).toBe(true);
  });

  it('access logs keep the route, never the raw path', () => {
    expect(Object.values(ACCESS_LOG_FIELDS)).not.toContain('$context.path');
    expect(Object.values(REST_ACCESS_LOG_FIELDS)).not.toContain('$context.path');
    for (const [, stage] of resourcesOf(home, 'AWS::ApiGateway::Stage')) {
      expect(JSON.parse(stage.Properties.AccessLogSetting.Format)).toEqual(REST_ACCESS_LOG_FIELDS);
      expect(stage.Properties.MethodSettings[0]).toMatchObject({
        LoggingLevel: 'ERROR',
        DataTraceEnabled: false,
      });
    }
  });
});

describe('domains', () => {
  it("outputs each custom domain's regional target and creates its Route 53 alias record", () => {
    expect(home.toJSON().Outputs.CoreApiDomainTarget).toBeDefined();
    expect(eu.toJSON().Outputs.ProxyDomainTarget).toBeDefined();
    expect(home.toJSON().Outputs.ProxyDomainTarget).toBeUndefined(); // no proxy domain for us-east-1
    home.hasResourceProperties('AWS::Route53::RecordSet', {
      Name: 'api.example.com.',
      Type: 'A',
      HostedZoneId: 'Z0000000000000000000',
    });
    eu.hasResourceProperties('AWS::Route53::RecordSet', { Name: 'eu.proxy.example.com.', Type: 'A' });
  });
});

describe('API Gateway permissions (acknowledged CT.LAMBDA.PR.2)', () => {
  it('every Lambda permission is for API Gateway (or the sweep schedule) and carries the SourceArn of its own caller', () => {
    for (const template of [home, eu]) {
      const permissions = resourcesOf(template, 'AWS::Lambda::Permission');
      expect(permissions.length).toBeGreaterThan(0);
      for (const [, p] of permissions) {
        // The aggregator's one-minute unknown-call sweep is invoked by its EventBridge rule.
        if (p.Properties.Principal === 'events.amazonaws.com') {
          expect(JSON.stringify(p.Properties.SourceArn)).toContain('Arn');
          continue;
        }
        expect(p.Properties.Principal).toBe('apigateway.amazonaws.com');
        expect(JSON.stringify(p.Properties.SourceArn)).toContain(':execute-api:');
      }
    }
  });
});
