import { describe, expect, it } from '@jest/globals';
import { evaluateRules, resolveJsonPath, type ScopedRules } from '../../lambdas/rules/evaluator.ts';
import { MAX_RULE_VALUE_LENGTH } from '../../lambdas/rules/limits.ts';
import { compilePattern, MAX_PATTERN_LENGTH } from '../../lambdas/rules/patterns.ts';
import type { CanonicalRequest, Rule } from '../../lambdas/rules/types.ts';

const req = (over: Partial<CanonicalRequest> = {}): CanonicalRequest => ({
  method: 'GET',
  path: '/v2/inventory/items',
  headers: {},
  query: [],
  ...over,
});
const none = (): ScopedRules => ({ proxyCredential: [], targetCredential: [], proxy: [], target: [] });
const inventoryRead: Rule = {
  ruleId: 'r-inv',
  effect: 'allow',
  methods: ['GET'],
  path: { path: { pattern: '^/v2/inventory/.*' }, presence: 'must_exist' },
  priority: 10,
};

describe('evaluateRules', () => {
  it('allows the reference rule and denies everything else by default', () => {
    const rules = { ...none(), proxyCredential: [inventoryRead] };
    const defaults = { proxyDefault: 'deny' as const };
    expect(evaluateRules(req(), rules, defaults)).toMatchObject({
      effect: 'allow',
      ruleId: 'r-inv',
      scope: 'proxyCredential',
    });
    expect(evaluateRules(req({ method: 'POST' }), rules, defaults)).toMatchObject({
      effect: 'deny',
      reason: 'default',
    });
    expect(evaluateRules(req({ path: '/v2/orders' }), rules, defaults)).toMatchObject({
      effect: 'deny',
      reason: 'default',
    });
  });

  it('denies when no rule matches unless both defaults allow', () => {
    expect(evaluateRules(req(), none(), {}).effect).toBe('deny');
    expect(evaluateRules(req(), none(), { proxyDefault: 'allow' }).effect).toBe('deny');
    expect(evaluateRules(req(), none(), { proxyDefault: 'allow', targetDefault: 'allow' }).effect).toBe(
      'allow',
    );
  });

  it('never lets an allow outrank a deny, whatever the priorities', () => {
    const deny: Rule = { ruleId: 'd', effect: 'deny', priority: 1000, methods: ['GET'] };
    const allow: Rule = { ...inventoryRead, priority: 0 };
    const rules = { ...none(), proxy: [allow], target: [deny] };
    expect(evaluateRules(req(), rules, { proxyDefault: 'allow', targetDefault: 'allow' })).toMatchObject({
      effect: 'deny',
      ruleId: 'd',
      scope: 'target',
    });
  });

  it('names the lowest-priority matching rule as the decider', () => {
    const a: Rule = { ...inventoryRead, ruleId: 'a', priority: 50 };
    const b: Rule = { ...inventoryRead, ruleId: 'b', priority: 5 };
    expect(evaluateRules(req(), { ...none(), proxy: [a], target: [b] }, {})).toMatchObject({ ruleId: 'b' });
  });

  it('checks must_not_exist, headers, query and body', () => {
    const rule: Rule = {
      ruleId: 'x',
      effect: 'allow',
      priority: 1,
      path: { path: { pattern: '/admin' }, presence: 'must_not_exist' },
      headerChecks: [
        { name: { pattern: '^x-tenant$' }, value: { pattern: '^acme$' }, presence: 'must_exist' },
      ],
      queryChecks: [{ name: { pattern: '^debug$' }, presence: 'must_not_exist' }],
      body: [{ jsonPath: '$.order.items[*].sku', matchValue: { pattern: '^SKU-' }, presence: 'must_exist' }],
    };
    const rules = { ...none(), proxy: [rule] };
    const ok = req({
      method: 'POST',
      path: '/orders',
      headers: { 'x-tenant': 'acme' },
      query: [['page', '1']],
      body: { order: { items: [{ sku: 'SKU-1' }] } },
    });
    expect(evaluateRules(ok, rules, {}).effect).toBe('allow');
    expect(evaluateRules({ ...ok, path: '/admin/orders' }, rules, {}).effect).toBe('deny');
    expect(evaluateRules({ ...ok, headers: { 'X-Tenant': 'other' } }, rules, {}).effect).toBe('deny');
    expect(evaluateRules({ ...ok, query: [['debug', '1']] }, rules, {}).effect).toBe('deny');
    expect(evaluateRules({ ...ok, body: { order: { items: [{ sku: 'X' }] } } }, rules, {}).effect).toBe(
      'deny',
    );
    expect(evaluateRules({ ...ok, body: undefined }, rules, {}).effect).toBe('deny');
  });

  it('honours regexFlags', () => {
    const rule: Rule = {
      ...inventoryRead,
      path: { path: { pattern: '^/V2/INVENTORY/' }, presence: 'must_exist' },
      regexFlags: 'i',
    };
    expect(evaluateRules(req(), { ...none(), proxy: [rule] }, {}).effect).toBe('allow');
  });
});

describe('patterns', () => {
  it('compiles RE2 syntax and refuses backtracking-only constructs and huge patterns', () => {
    expect(() => compilePattern('^(a+)+$')).not.toThrow();
    expect(() => compilePattern('(?=x)')).toThrow(/unsupported/);
    expect(() => compilePattern('(a')).toThrow(/missing closing/);
    expect(() => compilePattern('a'.repeat(MAX_PATTERN_LENGTH + 1))).toThrow(/longer/);
    expect(() => compilePattern('a', 'g')).toThrow(/flag/);
  });

  it('runs a classic ReDoS pattern in linear time', () => {
    const rule: Rule = {
      ruleId: 'redos',
      effect: 'allow',
      priority: 1,
      path: { path: { pattern: '^(a+)+$' }, presence: 'must_exist' },
    };
    const evil = `/${'a'.repeat(MAX_RULE_VALUE_LENGTH - 2)}!`;
    expect(evaluateRules(req({ path: evil }), { ...none(), proxy: [rule] }, {}).effect).toBe('deny');
    // Longer than the cap: refused, not matched.
    expect(() => evaluateRules(req({ path: `${evil}a` }), { ...none(), proxy: [rule] }, {})).toThrow(
      /limit is 16384/,
    );
  });
});

describe('resolveJsonPath', () => {
  it('resolves the supported subset', () => {
    const doc = { a: { b: [1, { c: 'x' }] }, 'we ird': 2 };
    expect(resolveJsonPath(doc, '$.a.b[1].c')).toEqual(['x']);
    expect(resolveJsonPath(doc, "$['we ird']")).toEqual([2]);
    expect(resolveJsonPath(doc, '$.a.b[*]')).toEqual([1, { c: 'x' }]);
    expect(resolveJsonPath(doc, '$.missing')).toEqual([]);
    expect(resolveJsonPath(doc, '$..bad')).toEqual([]);
  });
});
