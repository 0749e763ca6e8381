import { CfnGuardValidator } from '@cdklabs/cdk-validator-cfnguard';
import { Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks, HIPAASecurityChecks, NIST80053R5Checks } from 'cdk-nag';
import type { IConstruct } from 'constructs';

/**
 * Wires cdk-nag's AWS Solutions, HIPAA Security and NIST 800-53 rev 5 packs, and AWS Control
 * Tower's proactive controls (cfn-guard rules, run offline by `@cdklabs/cdk-validator-cfnguard`),
 * into synthesis as CDK policy-validation plugins: any finding that no construct acknowledges
 * (`Validations.of(x).acknowledge({ id, reason })`, always next to the resource and with a
 * specific reason) fails `cdk synth`, `cdk deploy` and the tests.
 */
export function addCompliancePacks(app: IConstruct): void {
  Validations.of(app).addPlugins(
    new AwsSolutionsChecks(app),
    new HIPAASecurityChecks(app),
    new NIST80053R5Checks(app),
    new CfnGuardValidator({ controlTowerRulesEnabled: true }),
  );
}
