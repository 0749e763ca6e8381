import { describe, expect, it } from '@jest/globals';
import { App, Stack, Validations } from 'aws-cdk-lib';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { addCompliancePacks } from '../../lib/compliance.ts';
import { synthKeygate } from './synth.ts';

/** A stack with a bare S3 bucket: every pack has rules it breaks (access logs, TLS, replication…). */
function appWithBareBucket(acknowledge: string[] = []) {
  const app = new App();
  const stack = new Stack(app, 'unsafe', { env: { region: 'us-east-1' } });
  const bucket = new s3.Bucket(stack, 'Bucket');
  for (const id of acknowledge) Validations.of(bucket).acknowledge({ id, reason: 'test' });
  addCompliancePacks(app);
  return app;
}

function synthError(app: App): string {
  try {
    app.synth();
    return '';
  } catch (error) {
    return String((error as Error).message);
  }
}

describe('compliance packs in synthesis', () => {
  const message = synthError(appWithBareBucket());
  const findings = [...message.matchAll(/Acknowledge with '([^']+)'/g)].map((m) => m[1]!);

  it('an unacknowledged finding of any of the three packs or of Control Tower (cfn-guard) fails synthesis', () => {
    expect(message).not.toBe('');
    for (const pack of [
      'AwsSolutions::',
      'HIPAA.Security::',
      'NIST.800.53.R5::',
      'cdk-validator-cfnguard::',
    ]) {
      expect(findings.some((f) => f.startsWith(pack))).toBe(true);
    }
  });

  it('the same findings, acknowledged, let synthesis pass: acknowledgment is the only way through', () => {
    expect(synthError(appWithBareBucket(findings))).toBe('');
  });

  it('keygate synthesises with every pack on and no unacknowledged finding', () => {
    expect(synthError(synthKeygate({ regions: 'us-east-1' }).app)).toBe('');
  });

  it('every acknowledgment in keygate carries a written reason', () => {
    const { app } = synthKeygate({ regions: 'us-east-1,eu-west-1' });
    const acks: { id: string; reason: string }[] = [];
    for (const c of app.node.findAll()) {
      for (const entry of c.node.metadata) {
        if (entry.type !== Validations.ACKNOWLEDGED_RULES_METADATA_KEY) continue;
        for (const [id, reason] of Object.entries(entry.data as Record<string, string>))
          acks.push({ id, reason });
      }
    }
    expect(acks.length).toBeGreaterThan(10);
    for (const a of acks) expect({ id: a.id, long: a.reason.length > 80 }).toEqual({ id: a.id, long: true });
  });
});
