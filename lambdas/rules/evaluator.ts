import { patternFinds } from './patterns.ts';
import type {
  BodyCheck,
  CanonicalRequest,
  Decision,
  Effect,
  NamedCheck,
  Presence,
  Rule,
  RuleScope,
} from './types.ts';

/**
 * The one rule evaluator: the data plane decides with it and the Core API's simulate endpoint
 * answers with it, so the two cannot disagree.
 *
 * Semantics (SPEC "Rules"): a rule matches when all its conditions hold. The matching rules of the
 * four scopes are collected; any matching deny → deny; otherwise any matching allow → allow;
 * otherwise the defaults decide: allow only when both the proxy's and the target's default effect
 * are allow. Priority (lower first) orders evaluation and names the deciding rule; it never lets an
 * allow outrank a deny.
 */
export const SCOPE_ORDER: readonly RuleScope[] = ['proxyCredential', 'targetCredential', 'proxy', 'target'];

export type ScopedRules = Record<RuleScope, Rule[]>;

function holds(presence: Presence, found: boolean): boolean {
  return presence === 'must_exist' ? found : !found;
}

function namedCheckHolds(
  check: NamedCheck,
  pairs: Array<[string, string]>,
  flags: string,
  caseInsensitiveNames: boolean,
) {
  const nameFlags = caseInsensitiveNames && !flags.includes('i') ? `${flags}i` : flags;
  const found = pairs.some(
    ([name, value]) =>
      patternFinds(check.name.pattern, name, nameFlags) &&
      (check.value === undefined || patternFinds(check.value.pattern, value, flags)),
  );
  return holds(check.presence, found);
}

/**
 * Splits a JSONPath of the supported subset (`$`, `.name`, `['name']`, `[n]`, `[*]`) into steps;
 * undefined when the path is outside it (rule validation refuses such paths).
 */
export function parseJsonPath(path: string): Array<string | number | '*'> | undefined {
  const tokens: Array<string | number | '*'> = [];
  const re = /\.([A-Za-z_$][\w$-]*)|\[(\d+)\]|\['((?:[^'\\]|\\.)*)'\]|\["((?:[^"\\]|\\.)*)"\]|\[\*\]|\.\*/y;
  let i = path.startsWith('$') ? 1 : 0;
  re.lastIndex = i;
  while (i < path.length) {
    const m = re.exec(path);
    if (!m) return undefined;
    if (m[1] !== undefined) tokens.push(m[1]);
    else if (m[2] !== undefined) tokens.push(Number(m[2]));
    else if (m[3] !== undefined) tokens.push(m[3]);
    else if (m[4] !== undefined) tokens.push(m[4]);
    else tokens.push('*');
    i = re.lastIndex;
  }
  return tokens;
}

/** Resolves a small JSONPath subset: `$`, `.name`, `['name']`, `[n]`, `[*]`. */
export function resolveJsonPath(root: unknown, path: string): unknown[] {
  const tokens = parseJsonPath(path);
  if (!tokens) return [];
  let current: unknown[] = [root];
  for (const t of tokens) {
    const next: unknown[] = [];
    for (const v of current) {
      if (v === null || typeof v !== 'object') continue;
      if (t === '*') next.push(...(Array.isArray(v) ? v : Object.values(v)));
      else if (typeof t === 'number') {
        if (Array.isArray(v) && t < v.length) next.push(v[t]);
      } else if (!Array.isArray(v) && Object.hasOwn(v, t)) next.push((v as Record<string, unknown>)[t]);
    }
    current = next;
  }
  return current;
}

function bodyCheckHolds(check: BodyCheck, body: unknown, flags: string): boolean {
  const values = body === undefined ? [] : resolveJsonPath(body, check.jsonPath);
  const found = values.some((v) => {
    if (check.matchValue === undefined) return true;
    const text = typeof v === 'string' ? v : JSON.stringify(v);
    return patternFinds(check.matchValue.pattern, text, flags);
  });
  return holds(check.presence, found);
}

/** True when every condition of the rule holds for the request. */
export function ruleMatches(rule: Rule, req: CanonicalRequest): boolean {
  const flags = rule.regexFlags ?? '';
  if (rule.methods && rule.methods.length > 0 && !rule.methods.includes(req.method)) return false;
  if (rule.path && !holds(rule.path.presence, patternFinds(rule.path.path.pattern, req.path, flags)))
    return false;
  const headerPairs = Object.entries(req.headers);
  for (const check of rule.headerChecks ?? [])
    if (!namedCheckHolds(check, headerPairs, flags, true)) return false;
  for (const check of rule.queryChecks ?? [])
    if (!namedCheckHolds(check, req.query, flags, false)) return false;
  for (const check of rule.body ?? []) if (!bodyCheckHolds(check, req.body, flags)) return false;
  return true;
}

/** Rules of all scopes in evaluation order: priority, then scope order, then ruleId. */
export function orderedRules(rules: ScopedRules): Array<{ scope: RuleScope; rule: Rule }> {
  const all = SCOPE_ORDER.flatMap((scope) => (rules[scope] ?? []).map((rule) => ({ scope, rule })));
  return all.sort(
    (a, b) =>
      a.rule.priority - b.rule.priority ||
      SCOPE_ORDER.indexOf(a.scope) - SCOPE_ORDER.indexOf(b.scope) ||
      a.rule.ruleId.localeCompare(b.rule.ruleId),
  );
}

/** Decides a request. Deny wins over allow whatever the priorities; no match → the defaults. */
export function evaluateRules(
  req: CanonicalRequest,
  rules: ScopedRules,
  defaults: { proxyDefault?: Effect; targetDefault?: Effect },
): Decision {
  let firstAllow: { scope: RuleScope; rule: Rule } | undefined;
  for (const entry of orderedRules(rules)) {
    if (!ruleMatches(entry.rule, req)) continue;
    if (entry.rule.effect === 'deny') {
      return {
        effect: 'deny',
        reason: 'rule',
        scope: entry.scope,
        ruleId: entry.rule.ruleId,
        priority: entry.rule.priority,
      };
    }
    firstAllow ??= entry;
  }
  if (firstAllow) {
    return {
      effect: 'allow',
      reason: 'rule',
      scope: firstAllow.scope,
      ruleId: firstAllow.rule.ruleId,
      priority: firstAllow.rule.priority,
    };
  }
  const proxyDefault = defaults.proxyDefault ?? 'deny';
  const targetDefault = defaults.targetDefault ?? 'deny';
  const effect = proxyDefault === 'allow' && targetDefault === 'allow' ? 'allow' : 'deny';
  return { effect, reason: 'default', proxyDefault, targetDefault };
}
