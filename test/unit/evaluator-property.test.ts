import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { evaluateRules, ruleMatches, type ScopedRules } from '../../lambdas/rules/evaluator.ts';
import type { CanonicalRequest, Rule } from '../../lambdas/rules/types.ts';

const METHODS = ['GET', 'POST', 'PUT', 'DELETE'];
const SEGMENTS = ['v1', 'v2', 'inventory', 'orders', 'admin', 'items'];
const PATTERNS = ['^/v2/', 'inventory', '^/v1/orders$', 'admin', '.*', '^/$', 'items$', '[0-9]+'];

const pathArb = fc.array(fc.constantFrom(...SEGMENTS, '42'), { maxLength: 4 }).map((s) => `/${s.join('/')}`);
const requestArb: fc.Arbitrary<CanonicalRequest> = fc.record({
  method: fc.constantFrom(...METHODS),
  path: pathArb,
  headers: fc.dictionary(fc.constantFrom('x-role', 'x-env'), fc.constantFrom('admin', 'prod', 'dev')),
  query: fc.array(fc.tuple(fc.constantFrom('limit', 'debug'), fc.constantFrom('1', 'true')), {
    maxLength: 2,
  }),
});
const ruleArb: fc.Arbitrary<Rule> = fc.record(
  {
    ruleId: fc.uuid(),
    effect: fc.constantFrom('allow' as const, 'deny' as const),
    priority: fc.integer({ min: 0, max: 1000 }),
    methods: fc.subarray(METHODS),
    path: fc.record({
      path: fc.record({ pattern: fc.constantFrom(...PATTERNS) }),
      presence: fc.constantFrom('must_exist' as const, 'must_not_exist' as const),
    }),
    headerChecks: fc.array(
      fc.record({
        name: fc.record({ pattern: fc.constantFrom('^x-role$', '^x-env$') }),
        value: fc.record({ pattern: fc.constantFrom('admin', 'prod') }),
        presence: fc.constantFrom('must_exist' as const, 'must_not_exist' as const),
      }),
      { maxLength: 1 },
    ),
    queryChecks: fc.array(
      fc.record({
        name: fc.record({ pattern: fc.constantFrom('^debug$', '^limit$') }),
        presence: fc.constantFrom('must_exist' as const, 'must_not_exist' as const),
      }),
      { maxLength: 1 },
    ),
  },
  { requiredKeys: ['ruleId', 'effect', 'priority'] },
);
const rulesArb: fc.Arbitrary<ScopedRules> = fc.record({
  proxyCredential: fc.array(ruleArb, { maxLength: 4 }),
  targetCredential: fc.array(ruleArb, { maxLength: 4 }),
  proxy: fc.array(ruleArb, { maxLength: 4 }),
  target: fc.array(ruleArb, { maxLength: 4 }),
});
const effectArb = fc.constantFrom('allow' as const, 'deny' as const, undefined);

describe('evaluateRules (property)', () => {
  it('never allows when any matching rule of any scope denies, whatever the priorities and defaults', () => {
    fc.assert(
      fc.property(requestArb, rulesArb, effectArb, effectArb, (req, rules, proxyDefault, targetDefault) => {
        const all = Object.values(rules).flat();
        const decision = evaluateRules(req, rules, { proxyDefault, targetDefault });
        const anyDeny = all.some((r) => r.effect === 'deny' && ruleMatches(r, req));
        if (anyDeny) {
          expect(decision.effect).toBe('deny');
          expect(decision.reason).toBe('rule');
        }
        // And an allow always names a matching allow rule, or both defaults allowed.
        if (decision.effect === 'allow') {
          if (decision.reason === 'rule') {
            const rule = all.find((r) => r.ruleId === decision.ruleId)!;
            expect(rule.effect).toBe('allow');
            expect(ruleMatches(rule, req)).toBe(true);
          } else {
            expect([proxyDefault, targetDefault]).toEqual(['allow', 'allow']);
          }
        }
      }),
      { numRuns: 2000 },
    );
  });
});
