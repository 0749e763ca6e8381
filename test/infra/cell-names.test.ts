import { describe, expect, it } from '@jest/globals';
import { App } from 'aws-cdk-lib';
import { configFromEnv } from '../../lambdas/shared/config.ts';
import {
  cellNames,
  cellsEnvironment,
  coreApiRoleName,
  installPrefix,
  parseRegions,
} from '../../lib/cell-names.ts';
import { buildKeygateApp } from '../../lib/keygate-app.ts';
import { synthKeygate } from './synth.ts';

describe('cell names', () => {
  it('are deterministic per region', () => {
    expect(cellNames('eu-west-1')).toEqual({
      region: 'eu-west-1',
      tableName: 'keygate-eu-west-1',
      keyAlias: 'alias/keygate-eu-west-1',
      streamName: 'keygate-telemetry-eu-west-1',
    });
    expect(coreApiRoleName('us-east-1')).toBe('keygate-core-api-us-east-1');
  });

  it('KEYGATE_CELLS is what configFromEnv reads', () => {
    const config = configFromEnv({
      AWS_REGION: 'us-east-1',
      KEYGATE_TABLE_NAME: 'keygate-us-east-1',
      KEYGATE_CELLS: cellsEnvironment(['us-east-1', 'ap-southeast-2']),
    });
    expect(config.cells['ap-southeast-2']).toEqual({
      region: 'ap-southeast-2',
      tableName: 'keygate-ap-southeast-2',
      kmsKeyId: 'alias/keygate-ap-southeast-2',
      streamName: 'keygate-telemetry-ap-southeast-2',
    });
  });

  it('regions come from context, first is home, and mistakes fail the synth', () => {
    expect(parseRegions(' us-east-1, eu-west-1 ')).toEqual(['us-east-1', 'eu-west-1']);
    expect(parseRegions(['us-gov-west-1'])).toEqual(['us-gov-west-1']);
    expect(() => parseRegions('')).toThrow(/No regions/);
    expect(() => parseRegions('us-east-1,US-EAST-1')).toThrow(/Not a region/);
    expect(() => parseRegions('us-east-1,us-east-1')).toThrow(/twice/);
    expect(() => parseRegions('eu-west-1;us-east-1')).toThrow(/Not a region/);
  });

  it('bad context values fail the synth with a readable message', () => {
    const build = (context: Record<string, string>) => () =>
      buildKeygateApp(new App({ context: { 'aws:cdk:bundling-stacks': [], ...context } }), {
        compliance: false,
      });
    expect(build({ proxyRateLimit: '-5' })).toThrow(/proxyRateLimit/);
    expect(build({ logRetentionDays: '42' })).toThrow(/logRetentionDays/);
    expect(build({ apiDomain: 'api.example.com' })).toThrow(/apiCertificateArn/);
    expect(build({ stage: 'Prod' })).toThrow(/Not a stage name/);
    expect(build({ stage: 'averyveryverylongstage' })).toThrow(/Not a stage name/);
    expect(build({ egress: 'nat' })).toThrow(/egress/);
    expect(build({ hostedZoneId: 'Z1' })).toThrow(/hostedZoneName/);
    expect(build({ coreApiReservedConcurrency: '0' })).toThrow(/coreApiReservedConcurrency/);
  });

  it('a stage prefixes every name; without one the names stay as they were', () => {
    expect(cellNames('eu-west-1', 'prod')).toEqual({
      region: 'eu-west-1',
      tableName: 'keygate-prod-eu-west-1',
      keyAlias: 'alias/keygate-prod-eu-west-1',
      streamName: 'keygate-prod-telemetry-eu-west-1',
    });
    expect(coreApiRoleName('us-east-1', 'prod')).toBe('keygate-prod-core-api-us-east-1');
    expect(installPrefix(undefined)).toBe('keygate');
    expect(JSON.parse(cellsEnvironment(['us-east-1'], 'dev'))['us-east-1'].tableName).toBe(
      'keygate-dev-us-east-1',
    );
  });
});

describe('custom domains and thresholds from context', () => {
  it('maps the domains, switches the execute-api endpoints off and passes the compliance packs', () => {
    const cert = 'arn:aws:acm:us-east-1:111111111111:certificate/abc';
    const { templates } = synthKeygate({
      regions: 'us-east-1',
      apiDomain: 'api.example.com',
      apiCertificateArn: cert,
      'proxyDomain.us-east-1': 'proxy.example.com',
      'proxyCertificateArn.us-east-1': cert,
      alarmDeniedPer5Minutes: '7',
      alarmAnomalyFlagsPer5Minutes: '0',
    });
    const t = templates[0]!;
    // Both APIs are REST APIs now: the Core API (WAF, lib/core-api.ts) and the streaming proxy.
    t.resourceCountIs('AWS::ApiGatewayV2::DomainName', 0);
    for (const domain of ['api.example.com', 'proxy.example.com'])
      t.hasResourceProperties('AWS::ApiGateway::DomainName', {
        DomainName: domain,
        RegionalCertificateArn: cert,
        EndpointConfiguration: { Types: ['REGIONAL'] },
        SecurityPolicy: 'TLS_1_2',
      });
    t.resourceCountIs('AWS::ApiGateway::BasePathMapping', 2);
    for (const api of Object.values(t.findResources('AWS::ApiGatewayV2::Api'))) {
      expect(api.Properties.DisableExecuteApiEndpoint).toBe(true);
    }
    for (const api of Object.values(t.findResources('AWS::ApiGateway::RestApi'))) {
      expect(api.Properties.DisableExecuteApiEndpoint).toBe(true);
    }
    const denied = Object.entries(t.findResources('AWS::CloudWatch::Alarm')).find(([id]) =>
      id.includes('DeniedSurge'),
    )!;
    expect(denied[1].Properties.Threshold).toBe(7);
    // 0 turns the anomaly alarm off.
    expect(
      Object.keys(t.findResources('AWS::CloudWatch::Alarm')).some((id) => id.includes('AnomalyFlags')),
    ).toBe(false);
  });
});
