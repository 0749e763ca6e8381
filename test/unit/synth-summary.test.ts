import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from '@jest/globals';
import { summarizeAssembly } from '../../scripts/synth.ts';

/** `npm run synth` prints a summary of the cloud assembly, not the template. */
describe('synth summary', () => {
  it('counts resources by type per stack and reports each compliance plugin', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kg-assembly-'));
    const write = (name: string, value: unknown) => writeFileSync(join(dir, name), JSON.stringify(value));
    write('manifest.json', {
      artifacts: {
        'keygate-eu-west-1': {
          type: 'aws:cloudformation:stack',
          properties: { templateFile: 'eu.template.json' },
        },
        Tree: { type: 'cdk:tree' },
      },
    });
    write('eu.template.json', {
      Resources: {
        A: { Type: 'AWS::Lambda::Function' },
        B: { Type: 'AWS::IAM::Role' },
        C: { Type: 'AWS::Lambda::Function' },
      },
    });
    write('validation-report.json', {
      pluginReports: [
        {
          pluginName: 'cdk-validator-cfnguard',
          conclusion: 'success',
          violations: [],
          suppressedViolations: [{}, {}],
        },
      ],
    });
    const lines = summarizeAssembly(dir);
    expect(lines[0]).toMatch(/^Stack keygate-eu-west-1: 3 resources → .*eu\.template\.json$/);
    expect(lines.slice(1, 3)).toEqual(['     2  AWS::Lambda::Function', '     1  AWS::IAM::Role']);
    expect(lines[3]).toMatch(/^Compliance checks .*: passed$/);
    expect(lines[4]).toMatch(/^ {2}cdk-validator-cfnguard: success, 0 open findings, 2 acknowledged/);
    expect(lines).toHaveLength(5);
  });
});
