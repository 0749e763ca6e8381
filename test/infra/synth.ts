import { readFileSync } from 'node:fs';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import type { CellStack } from '../../lib/cell-stack.ts';
import { buildKeygateApp } from '../../lib/keygate-app.ts';

/**
 * Builds the keygate app the way `cdk synth` does, compliance packs on. Without `bundle`, asset
 * bundling is skipped (CDK's own switch, `aws:cdk:bundling-stacks`), which keeps construct tests
 * fast; the two-region test bundles for real.
 */
/** The context of cdk.json (feature flags, default regions), which `cdk synth` passes to the app. */
export const cdkJsonContext: Record<string, unknown> = JSON.parse(
  readFileSync(new URL('../../cdk.json', import.meta.url), 'utf8'),
).context;

export function synthKeygate(context: Record<string, unknown> = {}, options: { bundle?: boolean } = {}) {
  const app = new App({
    context: {
      ...cdkJsonContext,
      ...(options.bundle ? {} : { 'aws:cdk:bundling-stacks': [] }),
      ...context,
    },
  });
  const stacks = buildKeygateApp(app);
  // Template.fromStack synthesises the app, which runs the cdk-nag validation plugins: an
  // unacknowledged finding throws here.
  const templates = stacks.map((stack) => Template.fromStack(stack));
  return { app, stacks, templates };
}

/** Resources of one type, as [logicalId, resource] pairs. */
export function resourcesOf(template: Template, type: string): [string, any][] {
  return Object.entries(template.findResources(type));
}

/** Every IAM policy statement attached to the role whose logical id starts with `rolePrefix`. */
export function statementsOfRole(template: Template, rolePrefix: string): any[] {
  const out: any[] = [];
  for (const [, policy] of resourcesOf(template, 'AWS::IAM::Policy')) {
    const roles: any[] = policy.Properties.Roles ?? [];
    if (roles.some((r) => typeof r.Ref === 'string' && r.Ref.startsWith(rolePrefix))) {
      out.push(...policy.Properties.PolicyDocument.Statement);
    }
  }
  if (out.length === 0) throw new Error(`no policy for role ${rolePrefix}`);
  return out;
}

/** Actions of a statement as an array. */
export function actionsOf(statement: any): string[] {
  return Array.isArray(statement.Action) ? statement.Action : [statement.Action];
}

export type { CellStack };
