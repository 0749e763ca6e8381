import { describe, expect, it } from '@jest/globals';
import { App } from 'aws-cdk-lib';
import { buildKeygateApp } from '../../lib/keygate-app.ts';
import { actionsOf, cdkJsonContext, statementsOfRole, synthKeygate } from './synth.ts';

/**
 * Context `assumableTargetRoleArns`: the proxy (and nothing else) gets sts:AssumeRole on exactly
 * the roles listed, with the compliance packs (cdk-nag, cfn-guard) still passing the synth.
 */
const ROLES = [
  'arn:aws:iam::123456789012:role/keygate-bedrock',
  'arn:aws:iam::210987654321:role/team/keygate-s3-reader',
];

describe('assumableTargetRoleArns', () => {
  it('grants the proxy sts:AssumeRole on exactly the listed roles, and no other function any STS right', () => {
    const { templates } = synthKeygate({ regions: 'us-east-1', assumableTargetRoleArns: ROLES });
    const template = templates[0]!;
    const sts = statementsOfRole(template, 'ProxyFunctionRole').filter((s) =>
      actionsOf(s).some((a) => a.startsWith('sts:')),
    );
    expect(sts).toEqual([{ Action: 'sts:AssumeRole', Effect: 'Allow', Resource: ROLES }]);
    for (const role of ['TelemetryAggregatorRole', 'CoreApiFunctionRole'])
      expect(
        statementsOfRole(template, role).some((s) => actionsOf(s).some((a) => a.startsWith('sts:'))),
      ).toBe(false);
  });

  it('accepts a comma-separated string (-c) and refuses anything but full role ARNs', () => {
    const build = (value: unknown) =>
      buildKeygateApp(
        new App({
          context: { ...cdkJsonContext, 'aws:cdk:bundling-stacks': [], assumableTargetRoleArns: value },
        }),
        { compliance: false },
      );
    expect(() => build(ROLES.join(', '))).not.toThrow();
    for (const bad of [
      'arn:aws:iam::123456789012:role/*',
      'arn:aws:iam::*:role/x',
      '*',
      'arn:aws:iam::123456789012:user/x',
    ])
      expect(() => build([bad])).toThrow(/assumableTargetRoleArns/);
  });
});
