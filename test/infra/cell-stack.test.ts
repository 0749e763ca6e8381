import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from '@jest/globals';
import { Match } from 'aws-cdk-lib/assertions';
import { credentialContext } from '../../lambdas/crypto/envelope.ts';
import { keys, tableLayout } from '../../lambdas/storage/keys.ts';
import { LOG_METRICS, PRODUCT_METRICS } from '../../lib/observability.ts';
import { PROXY_PATHS } from '../../lib/proxy-endpoint.ts';
import { REST_ACCESS_LOG_FIELDS } from '../../lib/streaming-gateway.ts';
import { AGGREGATOR_RETRY_ATTEMPTS } from '../../lib/telemetry-pipeline.ts';
import { actionsOf, resourcesOf, statementsOfRole, synthKeygate } from './synth.ts';

// One home cell, compliance packs on (the synth itself fails on any unacknowledged finding).
const { stacks, templates } = synthKeygate({ regions: 'us-east-1', alarmEmails: 'ops@example.com' });
const stack = stacks[0]!;
const template = templates[0]!;
const tableId = stack.getLogicalId(stack.table.table.node.defaultChild as any);
const keyRef = { 'Fn::GetAtt': [stack.getLogicalId(stack.key.key.node.defaultChild as any), 'Arn'] };

function functionByEntry(description: string): any {
  const found = resourcesOf(template, 'AWS::Lambda::Function').filter(
    ([, f]) => f.Properties.Description === description,
  );
  expect(found).toHaveLength(1);
  return found[0]![1];
}

describe('cell table', () => {
  it('is on-demand, CMK-encrypted, point-in-time recoverable, TTL on, protected and retained', () => {
    template.hasResource('AWS::DynamoDB::Table', {
      DeletionPolicy: 'RetainExceptOnCreate',
      UpdateReplacePolicy: 'Retain',
      Properties: Match.objectLike({
        TableName: 'keygate-us-east-1',
        BillingMode: 'PAY_PER_REQUEST',
        DeletionProtectionEnabled: true,
        PointInTimeRecoverySpecification: Match.objectLike({ PointInTimeRecoveryEnabled: true }),
        SSESpecification: { SSEEnabled: true, SSEType: 'KMS', KMSMasterKeyId: keyRef },
        TimeToLiveSpecification: { AttributeName: tableLayout.ttlAttribute, Enabled: true },
        KeySchema: [
          { AttributeName: tableLayout.partitionKey, KeyType: 'HASH' },
          { AttributeName: tableLayout.sortKey, KeyType: 'RANGE' },
        ],
        GlobalSecondaryIndexes: [
          Match.objectLike({
            IndexName: tableLayout.gsi1.name,
            KeySchema: [
              { AttributeName: tableLayout.gsi1.partitionKey, KeyType: 'HASH' },
              { AttributeName: tableLayout.gsi1.sortKey, KeyType: 'RANGE' },
            ],
          }),
        ],
      }),
    });
  });
});

/** IAM's StringLike: `*` any run of characters, `?` one; nothing else is special. */
function globMatches(pattern: string, value: string): boolean {
  const re = pattern
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${re}$`).test(value);
}

describe('cell key', () => {
  const [, key] = resourcesOf(template, 'AWS::KMS::Key')[0]!;
  const statements: any[] = key.Properties.KeyPolicy.Statement;
  const requiredNull = {
    'kms:EncryptionContext:clientId': 'false',
    'kms:EncryptionContext:credentialId': 'false',
  };

  it('rotates, is retained and has the deterministic alias', () => {
    expect(key.Properties.EnableKeyRotation).toBe(true);
    expect(key.DeletionPolicy).toBe('RetainExceptOnCreate');
    template.hasResourceProperties('AWS::KMS::Alias', { AliasName: 'alias/keygate-us-east-1' });
  });

  it('gives no principal a direct cryptographic use except under the secret encryption context', () => {
    const crypto = /^kms:(Decrypt|Encrypt|ReEncrypt|GenerateDataKey)/;
    for (const s of statements) {
      if (!actionsOf(s).some((a) => crypto.test(a))) continue;
      const c = s.Condition ?? {};
      const viaService =
        c['ForAnyValue:StringEquals']?.['kms:ViaService'] ?? c.StringEquals?.['kms:ViaService'];
      const logsContext = c.ArnLike?.['kms:EncryptionContext:aws:logs:arn'];
      const alarms = s.Principal?.Service === 'cloudwatch.amazonaws.com';
      const secretContext =
        c['ForAllValues:StringEquals']?.['kms:EncryptionContextKeys'] !== undefined &&
        c.Null?.['kms:EncryptionContext:clientId'] === 'false' &&
        c.Null?.['kms:EncryptionContext:credentialId'] === 'false';
      expect({
        sid: s.Sid,
        constrained: Boolean(viaService || logsContext || alarms || secretContext),
      }).toEqual({
        sid: s.Sid,
        constrained: true,
      });
    }
  });

  it('lets only the proxy decrypt target secrets, the Core API only consent blobs, and only the Core API generate them', () => {
    const direct = statements.filter(
      (s) => s.Condition?.['ForAllValues:StringEquals']?.['kms:EncryptionContextKeys'],
    );
    expect(direct.map((s) => [s.Sid, s.Action])).toEqual([
      ['CoreApiSealsTargetSecrets', 'kms:GenerateDataKey'],
      ['CoreApiOpensConsentSecrets', 'kms:Decrypt'],
      ['OpenTargetSecretsProxy', 'kms:Decrypt'],
      ['SealOAuthGrantsProxy', 'kms:GenerateDataKey'],
    ]);
    const [seal, coreOpen, open, grants] = direct;
    // The proxy seals refreshed oauth2 grants only, never a credential's own secret.
    expect(grants.Condition.StringLike).toEqual({ 'kms:EncryptionContext:credentialId': '*#grant' });
    expect(grants.Condition.ArnEquals['aws:PrincipalArn']['Fn::GetAtt'][0]).toMatch(/^ProxyFunctionRole/);
    expect(open.Condition.ArnEquals['aws:PrincipalArn']['Fn::GetAtt'][0]).toMatch(/^ProxyFunctionRole/);
    expect(open.Condition.StringLike).toBeUndefined();
    // The Core API opens consent, PKCE and grant blobs, never a credential's own secret.
    expect(coreOpen.Condition.StringLike).toEqual({
      'kms:EncryptionContext:credentialId': ['*#consent', '*#pkce', '*#grant'],
    });
    for (const s of [seal, coreOpen])
      expect(JSON.stringify(s.Condition.ArnEquals['aws:PrincipalArn'])).toContain(
        ':role/keygate-core-api-us-east-1',
      );
    for (const s of direct) expect(s.Condition.Null).toEqual(requiredNull);
  });

  it('allows every key credentialContext builds, and requires client and credential', () => {
    const direct = statements.filter((s) => s.Condition?.['ForAllValues:StringEquals']);
    const built = credentialContext('client-1', 'credential-1', 3);
    for (const s of direct) {
      const allowed: string[] = s.Condition['ForAllValues:StringEquals']['kms:EncryptionContextKeys'];
      expect({ sid: s.Sid, missing: Object.keys(built).filter((k) => !allowed.includes(k)) }).toEqual({
        sid: s.Sid,
        missing: [],
      });
    }
    // The keys Null-checked are exactly those credentialContext always sets (even without a revision).
    expect(Object.keys(requiredNull).map((k) => k.replace('kms:EncryptionContext:', ''))).toEqual(
      Object.keys(credentialContext('client-1', 'credential-1')),
    );
  });

  it("the Core API's Decrypt matches consent, PKCE and grant contexts, never a credential's own", () => {
    const coreOpen = statements.find((s) => s.Sid === 'CoreApiOpensConsentSecrets');
    const patterns: string[] = coreOpen.Condition.StringLike['kms:EncryptionContext:credentialId'];
    const id = randomUUID();
    const opens = (c: Record<string, string>) => patterns.some((p) => globMatches(p, c.credentialId!));
    expect(opens(credentialContext('c', id, 3))).toBe(false);
    expect(opens(credentialContext('c', `${id}#consent`, 3))).toBe(true);
    expect(opens(credentialContext('c', `${id}#pkce`, 3))).toBe(true);
    expect(opens(credentialContext('c', `${id}#grant`, 3))).toBe(true);
    expect(opens(credentialContext('c', `${id}#consentx`, 3))).toBe(false);
  });

  it('gives the account administration of the key without any cryptographic action', () => {
    const admin = statements.find((s) => s.Sid === 'KeyAdministration');
    expect(actionsOf(admin)).not.toContain('kms:*');
    expect(actionsOf(admin).some((a) => /Decrypt|Encrypt|GenerateDataKey/.test(a))).toBe(false);
  });
});

describe('functions', () => {
  const proxy = functionByEntry('regional proxy (data plane)');
  const core = functionByEntry('Core API (control plane)');
  const aggregator = functionByEntry('telemetry aggregator (request log and rollups)');

  it.each([
    ['proxy', proxy, 1024, 900],
    ['Core API', core, 512, 10],
    ['aggregator', aggregator, 512, 60],
  ])('%s: Node.js 22 on arm64, traced, JSON logs in its own log group, sized', (_n, fn, memory, timeout) => {
    expect(fn.Properties).toMatchObject({
      Runtime: 'nodejs22.x',
      Architectures: ['arm64'],
      Handler: 'index.handler',
      TracingConfig: { Mode: 'Active' },
      MemorySize: memory,
      Timeout: timeout,
      LoggingConfig: {
        LogFormat: 'JSON',
        ApplicationLogLevel: 'INFO',
        LogGroup: { Ref: expect.any(String) },
      },
    });
    expect(fn.Properties.Environment.Variables).toMatchObject({
      POWERTOOLS_SERVICE_NAME: 'keygate',
      POWERTOOLS_LOG_LEVEL: 'INFO',
    });
  });

  it('log groups are KMS-encrypted, have a retention and are retained', () => {
    const groups = resourcesOf(template, 'AWS::Logs::LogGroup');
    expect(groups.length).toBe(7); // 3 functions + 2 access logs + the two WAF logs (Core API, proxy)
    for (const [, g] of groups) {
      expect(g.Properties.KmsKeyId).toEqual(keyRef);
      expect(g.Properties.RetentionInDays).toBe(365);
      expect(g.DeletionPolicy).toBe('RetainExceptOnCreate');
    }
  });

  it('never use the AWS managed basic execution policy', () => {
    for (const [id, role] of resourcesOf(template, 'AWS::IAM::Role')) {
      // API Gateway's account-level logging role (REST API logs) is the one managed-policy user.
      if (
        role.Properties.AssumeRolePolicyDocument.Statement[0].Principal.Service === 'apigateway.amazonaws.com'
      ) {
        expect(JSON.stringify(role.Properties.ManagedPolicyArns)).toContain(
          'AmazonAPIGatewayPushToCloudWatchLogs',
        );
        continue;
      }
      expect({ id, managed: role.Properties.ManagedPolicyArns }).toEqual({ id, managed: undefined });
    }
  });

  it('the aggregator and the Core API get the same request-log retention', () => {
    expect(aggregator.Properties.Environment.Variables.KEYGATE_REQUEST_LOG_RETENTION_DAYS).toBe('90');
    expect(core.Properties.Environment.Variables.KEYGATE_REQUEST_LOG_RETENTION_DAYS).toBe('90');
  });
});

describe('least privilege', () => {
  const proxy = statementsOfRole(template, 'ProxyFunctionRole');
  const aggregator = statementsOfRole(template, 'TelemetryAggregatorRole');
  const core = statementsOfRole(template, 'CoreApiFunctionRole');

  it('only X-Ray statements use a wildcard resource', () => {
    for (const s of [...proxy, ...aggregator, ...core]) {
      if (s.Resource === '*') expect(actionsOf(s).every((a) => a.startsWith('xray:'))).toBe(true);
      for (const a of actionsOf(s)) expect(a).not.toMatch(/^[a-z0-9]+:\*$/);
    }
  });

  it('the proxy may assume no role unless the operator lists some (assumableTargetRoleArns)', () => {
    expect(proxy.some((s) => actionsOf(s).some((a) => a.startsWith('sts:')))).toBe(false);
  });

  it('the proxy reads PROXY# partitions, counts in LIMIT# partitions and refreshes OAUTHGRANT# ones, nothing else', () => {
    // Meters need nothing more: their counters are LIMIT# partitions too (one UpdateItem, leases),
    // and their definitions travel in the snapshot the proxy already reads.
    expect(keys.meterCounter('m', 'month', '2030-01').pk).toMatch(/^LIMIT#/);
    const ddb = proxy.filter((s) => actionsOf(s).some((a) => a.startsWith('dynamodb:')));
    expect(ddb.map((s) => [actionsOf(s), s.Condition])).toEqual([
      [
        ['dynamodb:GetItem'],
        { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['PROXY#*', 'ALIAS#*'] } },
      ],
      [['dynamodb:UpdateItem'], { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['LIMIT#*'] } }],
      [
        ['dynamodb:GetItem', 'dynamodb:UpdateItem'],
        { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['OAUTHGRANT#*'] } },
      ],
    ]);
  });

  it('the proxy decrypts only under the secret context and has no Kinesis right', () => {
    const direct = proxy.filter((s) => actionsOf(s).includes('kms:Decrypt') && !s.Condition?.StringEquals);
    expect(direct).toHaveLength(1);
    expect(direct[0].Condition.Null).toEqual({
      'kms:EncryptionContext:clientId': 'false',
      'kms:EncryptionContext:credentialId': 'false',
    });
    expect(proxy.some((s) => actionsOf(s).some((a) => a.startsWith('kinesis:')))).toBe(false);
    expect(proxy.some((s) => actionsOf(s).includes('kms:GenerateDataKey') && !s.Condition)).toBe(false);
  });

  it("the proxy's telemetry log lines reach the stream through a subscription filter with a narrow role", () => {
    const proxyFn = functionByEntry('regional proxy (data plane)');
    expect(proxyFn.Properties.Environment.Variables.KEYGATE_TELEMETRY_SINK).toBe('log');
    const filters = template.findResources('AWS::Logs::SubscriptionFilter');
    expect(Object.values(filters)).toHaveLength(1);
    const filter: any = Object.values(filters)[0];
    expect(filter.Properties.FilterPattern).toBe('"keygateTelemetry"');
    expect(filter.Properties.DestinationArn['Fn::GetAtt'][0]).toMatch(/^TelemetryStream/);
    expect(filter.Properties.LogGroupName.Ref).toMatch(/^ProxyFunctionLogs/);
    const roleId = filter.Properties.RoleArn['Fn::GetAtt'][0];
    const role: any = template.findResources('AWS::IAM::Role')[roleId];
    expect(role.Properties.AssumeRolePolicyDocument.Statement[0].Principal).toEqual({
      Service: 'logs.amazonaws.com',
    });
    const policies = Object.values(template.findResources('AWS::IAM::ManagedPolicy')).filter((p: any) =>
      p.Properties.Roles?.some((r: any) => r.Ref === roleId),
    ) as any[];
    expect(policies).toHaveLength(1);
    const statements = policies[0].Properties.PolicyDocument.Statement;
    expect(statements.map((st: any) => st.Action)).toEqual(['kinesis:PutRecord', 'kms:GenerateDataKey']);
    expect(statements[1].Condition.StringEquals['kms:ViaService']).toBe('kinesis.us-east-1.amazonaws.com');
  });

  it('the aggregator writes only request-log, telemetry and marker partitions, with what it calls', () => {
    const ddb = aggregator.filter((s) => actionsOf(s).some((a) => a.startsWith('dynamodb:')));
    expect(ddb).toHaveLength(1);
    expect(ddb[0].Condition['ForAllValues:StringLike']['dynamodb:LeadingKeys']).toEqual([
      'REQLOG#*',
      'TELEMETRY#*',
      'PROXYOWNER#*',
      'PROXYPATH#*',
      'ANOMALY#*',
      'PENDINGCALL#*',
    ]);
    // PutCommand, DeleteCommand in lambdas/telemetry/request-log.ts; UpdateCommand, GetCommand in
    // lambdas/telemetry/aggregator.ts; QueryCommand in lambdas/telemetry/proxy-anomalies.ts and
    // lambdas/telemetry/unknown-calls.ts (overdue pending calls).
    expect(actionsOf(ddb[0]).sort()).toEqual([
      'dynamodb:DeleteItem',
      'dynamodb:GetItem',
      'dynamodb:PutItem',
      'dynamodb:Query',
      'dynamodb:UpdateItem',
    ]);
    expect(aggregator.some((s) => s.Condition?.Null?.['kms:EncryptionContext:clientId'])).toBe(false);
  });

  it('the Core API has item access to the table and its index, no Scan, and seals under the context', () => {
    const ddb = core.filter((s) => actionsOf(s).some((a) => a.startsWith('dynamodb:')));
    expect(ddb).toHaveLength(1);
    expect(actionsOf(ddb[0])).not.toContain('dynamodb:Scan');
    expect(JSON.stringify(ddb[0].Resource)).toContain('table/keygate-us-east-1/index/gsi1');
    const seal = core.filter((s) => actionsOf(s).includes('kms:GenerateDataKey') && s.Condition?.Null);
    expect(seal).toHaveLength(1);
    expect(core.some((s) => actionsOf(s).includes('kms:Decrypt') && !s.Condition)).toBe(false);
  });

  it('the Core API decrypts directly only consent, PKCE and grant blobs (IAM, as in the key policy)', () => {
    const decrypt = core.filter((s) => actionsOf(s).includes('kms:Decrypt'));
    const direct = decrypt.filter((s) => !s.Condition?.StringEquals?.['kms:ViaService']);
    expect(direct).toHaveLength(1);
    expect(actionsOf(direct[0])).toEqual(['kms:Decrypt']);
    expect(direct[0].Condition).toMatchObject({
      'ForAllValues:StringEquals': {
        'kms:EncryptionContextKeys': ['clientId', 'credentialId', 'secretRevision'],
      },
      Null: { 'kms:EncryptionContext:clientId': 'false', 'kms:EncryptionContext:credentialId': 'false' },
      StringLike: { 'kms:EncryptionContext:credentialId': ['*#consent', '*#pkce', '*#grant'] },
    });
  });

  it('KEYGATE_CELLS and KEYGATE_TABLE_NAME name the cell', () => {
    for (const [, fn] of resourcesOf(template, 'AWS::Lambda::Function')) {
      const env = fn.Properties.Environment.Variables;
      expect(env.KEYGATE_TABLE_NAME).toEqual({ Ref: tableId }); // named keygate-us-east-1
      expect(JSON.parse(env.KEYGATE_CELLS)).toEqual({
        'us-east-1': {
          tableName: 'keygate-us-east-1',
          kmsKeyId: 'alias/keygate-us-east-1',
          streamName: 'keygate-telemetry-us-east-1',
        },
      });
    }
  });
});

describe('endpoints', () => {
  const stages = resourcesOf(template, 'AWS::ApiGatewayV2::Stage');
  const restStages = resourcesOf(template, 'AWS::ApiGateway::Stage');

  it('the Core API and the proxy (both REST APIs) throttle, the Core API tighter, and log no header, query or body', () => {
    expect([stages.length, restStages.length]).toEqual([0, 2]);
    const settings = restStages.map(([, st]) => st.Properties);
    const limitOf = (p: any) => p.MethodSettings[0].ThrottlingRateLimit;
    const core = settings.find((p) => limitOf(p) === 50)!;
    const proxy = settings.find((p) => limitOf(p) === 1000)!;
    expect(core.MethodSettings[0]).toMatchObject({
      ThrottlingBurstLimit: 100,
      LoggingLevel: 'ERROR',
      DataTraceEnabled: false,
    });
    expect(proxy.MethodSettings).toEqual([
      expect.objectContaining({ HttpMethod: '*', ResourcePath: '/*', ThrottlingRateLimit: 1000 }),
    ]);
    for (const p of [core, proxy]) expect(p.TracingEnabled).toBe(true);
    expect(JSON.parse(proxy.AccessLogSetting.Format)).toEqual(REST_ACCESS_LOG_FIELDS);
    for (const p of [core, proxy])
      expect(p.AccessLogSetting.Format).not.toMatch(/header|authorization|querystring|body|authorizer/i);
  });

  /** The proxy REST API's methods (the Core API's REST API has its own, buffered). */
  const proxyMethods = (t: typeof template) =>
    resourcesOf(t, 'AWS::ApiGateway::Method').filter(([id]) => id.startsWith('ProxyRest'));

  it('the proxy streams: REST API Lambda proxy integrations in STREAM mode, as long as the function runs', () => {
    // The proxy's resources, and the Core API's one `{proxy+}`.
    const paths = resourcesOf(template, 'AWS::ApiGateway::Resource').map(([, r]) => r.Properties.PathPart);
    expect(paths.sort()).toEqual(['api', '{proxy+}', '{proxy+}', '{proxyId}']);
    expect(PROXY_PATHS).toEqual(['/api/{proxyId}', '/api/{proxyId}/{proxy+}']);
    const methods = proxyMethods(template);
    expect(methods).toHaveLength(2);
    for (const [, m] of methods) {
      expect(m.Properties).toMatchObject({
        HttpMethod: 'ANY',
        AuthorizationType: 'NONE',
        Integration: {
          Type: 'AWS_PROXY',
          ResponseTransferMode: 'STREAM',
          TimeoutInMillis: 900_000,
        },
      });
      // The streaming invocation API, not the buffered one.
      expect(JSON.stringify(m.Properties.Integration.Uri)).toContain('response-streaming-invocations');
    }
    template.hasResourceProperties('AWS::ApiGateway::RestApi', { BinaryMediaTypes: ['*/*'] });
  });

  it('a deployment may shorten the proxy timeout (function and integration together), never past 15 min', () => {
    const short = synthKeygate({ proxyTimeoutSeconds: 120 }).templates[0]!;
    const fn = Object.values(short.findResources('AWS::Lambda::Function')).find(
      (f: any) => f.Properties.Description === 'regional proxy (data plane)',
    ) as any;
    expect(fn.Properties.Timeout).toBe(120);
    for (const [, m] of proxyMethods(short)) expect(m.Properties.Integration.TimeoutInMillis).toBe(120_000);
    expect(() => synthKeygate({ proxyTimeoutSeconds: 901 })).toThrow(/at most 900/);
  });
});

describe('telemetry pipeline', () => {
  it('the stream is on-demand and KMS-encrypted with the cell key', () => {
    template.hasResourceProperties('AWS::Kinesis::Stream', {
      Name: 'keygate-telemetry-us-east-1',
      StreamModeDetails: { StreamMode: 'ON_DEMAND' },
      StreamEncryption: { EncryptionType: 'KMS', KeyId: keyRef },
    });
  });

  it('the aggregator reports item failures, bisects, retries a bounded number of times, then goes to SQS', () => {
    template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      BisectBatchOnFunctionError: true,
      ParallelizationFactor: 1,
      MaximumRetryAttempts: AGGREGATOR_RETRY_ATTEMPTS,
      MaximumRecordAgeInSeconds: Match.anyValue(),
      DestinationConfig: {
        OnFailure: {
          Destination: { 'Fn::GetAtt': [Match.stringLikeRegexp('^TelemetryAggregatorFailures'), 'Arn'] },
        },
      },
    });
  });

  it('the on-failure queue is encrypted with the cell key and refuses plain HTTP', () => {
    template.hasResourceProperties('AWS::SQS::Queue', { KmsMasterKeyId: keyRef });
    template.hasResourceProperties('AWS::SQS::QueuePolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
        ]),
      },
    });
  });
});

describe('observability', () => {
  const alarms = resourcesOf(template, 'AWS::CloudWatch::Alarm');
  const topicRef = { Ref: stack.getLogicalId(stack.observability.topic.node.defaultChild as any) };

  it('the alarm topic is encrypted with the cell key, enforces TLS and mails the operators', () => {
    template.hasResourceProperties('AWS::SNS::Topic', {
      TopicName: 'keygate-alarms-us-east-1',
      KmsMasterKeyId: keyRef,
    });
    template.hasResourceProperties('AWS::SNS::Subscription', {
      Protocol: 'email',
      Endpoint: 'ops@example.com',
    });
    template.hasResourceProperties('AWS::SNS::TopicPolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
        ]),
      },
    });
  });

  it('has the required alarms, each notifying the topic', () => {
    const names = alarms.map(([id]) => id);
    for (const required of [
      'Proxy5xxRate',
      'CoreApi5xxRate',
      'DeniedSurge',
      'AnomalyFlags',
      'KmsErrors',
      'TelemetryIteratorAge',
      'TelemetryFailureQueueDepth',
      'TelemetryDeliveryErrors',
      'ProxyFunctionErrors',
      'ProxyFunctionThrottles',
      'TelemetryAggregatorErrors',
      'TelemetryAggregatorThrottles',
      'CoreApiFunctionErrors',
      'CoreApiFunctionThrottles',
    ]) {
      expect(names.some((n) => n.startsWith(`Observability${required}`))).toBe(true);
    }
    for (const [, alarm] of alarms) {
      expect(alarm.Properties.AlarmName).toMatch(/^keygate-us-east-1-\w+$/);
      expect(alarm.Properties.AlarmActions).toEqual([topicRef]);
      expect(alarm.Properties.TreatMissingData).toBe('notBreaching');
    }
  });

  it('alarms read the product metrics by the names the handlers publish', () => {
    const denied = alarms.find(([id]) => id.startsWith('ObservabilityDeniedSurge'))![1];
    expect(denied.Properties.Metrics[0].MetricStat.Metric).toEqual({
      Namespace: PRODUCT_METRICS.namespace,
      MetricName: PRODUCT_METRICS.denied,
      Dimensions: [{ Name: 'service', Value: 'keygate' }],
    });
    const anomalies = alarms.find(([id]) => id.startsWith('ObservabilityAnomalyFlags'))![1];
    expect(anomalies.Properties.Metrics[0].MetricStat.Metric.MetricName).toBe(PRODUCT_METRICS.anomalyFlags);
    expect(anomalies.Properties.Threshold).toBe(1);
    const age = alarms.find(([id]) => id.startsWith('ObservabilityTelemetryIteratorAge'))![1];
    expect(JSON.stringify(age.Properties)).toContain('"MetricName":"IteratorAge","Namespace":"AWS/Lambda"');
  });

  it('has one dashboard per cell with the required widgets', () => {
    const [, dashboard] = resourcesOf(template, 'AWS::CloudWatch::Dashboard')[0]!;
    expect(dashboard.Properties.DashboardName).toBe('keygate-us-east-1');
    const body = JSON.stringify(dashboard.Properties.DashboardBody);
    for (const title of [
      'Allowed vs denied',
      '4xx, 5xx',
      'p50 / p99',
      'Throttles',
      'KMS and DynamoDB errors',
      'iterator age',
      'failure queue depth',
      'Anomaly flags',
      'meters exhausted / past their limit',
      'ProxyMeterExhausted',
      'ProxyMeterOverLimit',
    ]) {
      expect(body).toContain(title);
    }
  });

  it('log metrics count the log lines the handlers really write', () => {
    const sources = {
      proxy: readFileSync(new URL('../../lambdas/telemetry/emitter.ts', import.meta.url), 'utf8'),
      // The aggregator's modules (lambdas/telemetry/aggregator.ts and the steps it is split into).
      aggregator: ['aggregator', 'decode', 'request-log', 'anomaly-flags', 'unknown-calls']
        .map((m) => readFileSync(new URL(`../../lambdas/telemetry/${m}.ts`, import.meta.url), 'utf8'))
        .join('\n'),
      coreApi: readFileSync(new URL('../../lambdas/shared/http.ts', import.meta.url), 'utf8'),
    };
    const logGroupPrefix = {
      proxy: 'ProxyFunctionLogs',
      aggregator: 'TelemetryAggregatorLogs',
      coreApi: 'CoreApiFunctionLogs',
    };
    const filters = resourcesOf(template, 'AWS::Logs::MetricFilter').map(([, f]) => f.Properties);
    for (const [fn, metrics] of Object.entries(LOG_METRICS)) {
      const prefix = new RegExp(`^${logGroupPrefix[fn as keyof typeof logGroupPrefix]}`);
      for (const m of metrics as readonly {
        metricName: string;
        messages: readonly string[];
        value: string;
        dependency?: string;
      }[]) {
        for (const text of m.messages) expect(sources[fn as keyof typeof sources]).toContain(`'${text}'`);
        const filter = filters.find(
          (f) => f.MetricTransformations[0].MetricName === m.metricName && prefix.test(f.LogGroupName.Ref),
        );
        expect(filter).toBeDefined();
        expect(filter.MetricTransformations[0]).toMatchObject({
          MetricNamespace: 'keygate',
          MetricValue: m.value,
          Dimensions: [{ Key: 'service', Value: '$.service' }],
        });
        for (const text of m.messages) expect(filter.FilterPattern).toContain(`$.message = "${text}"`);
        if (m.dependency) expect(filter.FilterPattern).toContain(`$.dependency = "${m.dependency}"`);
      }
    }
  });
});
