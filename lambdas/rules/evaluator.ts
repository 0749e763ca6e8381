import { RuleInputError } from './errors.ts';
import { MAX_RULE_VALUE_LENGTH, RULE_TIME_LIMIT_MS, RULE_WORK_BUDGET } from './limits.ts';
import { compilePattern } from './patterns.ts';
import { FormBody, readRuleBody } from './request-body.ts';
import { foldName, JsonNumber, sourceOf } from './strict-json.ts';
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
 * Semantics (SPEC "Rules", docs/rules.md): a rule matches when all its conditions hold. The
 * matching rules of the four scopes are collected; any matching deny → deny; otherwise any matching
 * allow → allow; otherwise the defaults decide: allow only when both the proxy's and the target's
 * default effect are allow. Priority (lower first) orders evaluation and names the deciding rule;
 * it never lets an allow outrank a deny.
 *
 * Several values (a repeated query parameter, a list header, a form field sent twice, a JSONPath
 * reaching several values, a number's two readings) are several ways the vendor may read the
 * request. A request must pass under each of them: a condition of an allow rule holds only when it
 * holds for every value alone, a condition of a deny rule as soon as it holds for one. A top-level
 * JSON array is a batch: each element is judged alone and the request passes only if all pass.
 *
 * Cost is metered: every pattern run costs program size × (value length + 1) steps against
 * RULE_WORK_BUDGET; a value over MAX_RULE_VALUE_LENGTH is refused, not matched (RuleInputError).
 */
export const SCOPE_ORDER: readonly RuleScope[] = ['proxyCredential', 'targetCredential', 'proxy', 'target'];

export type ScopedRules = Record<RuleScope, Rule[]>;

/** allow rules: a condition must hold for every value; deny rules: for some value. */
type Quantifier = 'every' | 'some';

/** Counts the steps of one request's evaluation (all batch elements together). */
export class WorkMeter {
  steps = 0;
  readonly budget: number;
  readonly timeLimitMs: number;
  private readonly started = performance.now();
  constructor(budget = RULE_WORK_BUDGET, timeLimitMs = RULE_TIME_LIMIT_MS) {
    this.budget = budget;
    this.timeLimitMs = timeLimitMs;
  }

  /** Runs the pattern on the input, charging its cost first; refuses what is over a limit. */
  finds(pattern: string, input: string, flags: string): boolean {
    if (input.length > MAX_RULE_VALUE_LENGTH)
      throw new RuleInputError(
        400,
        'proxy-rule-input-too-long',
        `A value checked by a rule is ${input.length} characters long; the limit is ${MAX_RULE_VALUE_LENGTH}`,
      );
    const compiled = compilePattern(pattern, flags);
    this.steps += compiled.programSize() * (input.length + 1);
    if (this.steps > this.budget || performance.now() - this.started > this.timeLimitMs)
      throw new RuleInputError(
        400,
        'proxy-rule-budget-exceeded',
        `Checking this request against the rules is over the work budget (${this.budget} steps, ${this.timeLimitMs} ms)`,
      );
    return compiled.matcher(input).find();
  }
}

function holds(presence: Presence, found: boolean): boolean {
  return presence === 'must_exist' ? found : !found;
}

/** One condition over several readings: absent → presence decides; else per value, quantified. */
function holdsOver(
  presence: Presence,
  values: string[][],
  pattern: string | undefined,
  q: Quantifier,
  test: (pattern: string, value: string) => boolean,
): boolean {
  if (values.length === 0) return holds(presence, false);
  if (pattern === undefined) return holds(presence, true);
  const alone = (v: string) => holds(presence, test(pattern, v));
  const readings = values.flat();
  return q === 'every' ? readings.every(alone) : readings.some(alone);
}

// Headers whose value is one item by definition, commas included (RFC 9110 dates, User-Agent).
const SINGLE_VALUE_HEADERS = new Set([
  'user-agent',
  'date',
  'expires',
  'last-modified',
  'if-modified-since',
  'if-unmodified-since',
  'if-range',
  'retry-after',
]);

/**
 * A header's readings: its whole value and, for list headers, each comma-separated element (a
 * repeated header arrives joined with commas, and vendors read either form).
 */
export function headerReadings(name: string, value: string): string[] {
  if (SINGLE_VALUE_HEADERS.has(name) || !value.includes(',')) return [value];
  return [value, ...value.split(',').map((v) => v.trim())];
}

function namedCheckHolds(
  check: NamedCheck,
  entries: Array<[string, string[]]>,
  flags: string,
  q: Quantifier,
  meter: WorkMeter,
) {
  const nameFlags = flags.includes('i') ? flags : `${flags}i`;
  const values = entries
    .filter(([name]) => meter.finds(check.name.pattern, name, nameFlags))
    .map(([, readings]) => readings);
  return holdsOver(check.presence, values, check.value?.pattern, q, (p, v) => meter.finds(p, v, flags));
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

/**
 * Resolves a small JSONPath subset: `$`, `.name`, `['name']`, `[n]`, `[*]`. Names match object
 * keys case-insensitively (the strict reader refuses keys equal but for case).
 */
export function resolveJsonPath(root: unknown, path: string): unknown[] {
  const tokens = parseJsonPath(path);
  if (!tokens) return [];
  if (root instanceof FormBody) return resolveFormPath(root, tokens);
  let current: unknown[] = [root];
  for (const t of tokens) {
    const next: unknown[] = [];
    for (const v of current) {
      if (v === null || typeof v !== 'object' || v instanceof JsonNumber) continue;
      if (t === '*') next.push(...(Array.isArray(v) ? v : Object.values(v)));
      else if (typeof t === 'number') {
        if (Array.isArray(v) && t < v.length) next.push(v[t]);
      } else if (!Array.isArray(v)) {
        const folded = foldName(t);
        for (const [key, value] of Object.entries(v)) if (foldName(key) === folded) next.push(value);
      }
    }
    current = next;
  }
  return current;
}

/**
 * Form fields by path: `$` is the whole body; `$.name` every field so named; `$.a.b[0]` also the
 * fields written in bracket form, `a[b][0]` (and `a[b][]`, which may be any index).
 */
function resolveFormPath(form: FormBody, tokens: Array<string | number | '*'>): unknown[] {
  if (tokens.length === 0) return [form.text];
  const out: string[] = [];
  for (const [name, value] of form.fields) {
    const steps = formNameSteps(name);
    const plain =
      tokens.length === 1 && typeof tokens[0] === 'string' && foldName(tokens[0]) === foldName(name);
    const bracketed =
      steps !== undefined &&
      steps.length === tokens.length &&
      tokens.every((t, i) => {
        const s = steps[i]!;
        if (t === '*') return true;
        if (typeof t === 'number') return s === '' || s === String(t);
        return foldName(t) === foldName(s);
      });
    if (plain || bracketed) out.push(value);
  }
  return out;
}

/** `a[b][0]` → ['a', 'b', '0']; undefined when the name has no brackets. */
function formNameSteps(name: string): string[] | undefined {
  const m = /^([^[\]]+)((?:\[[^[\]]*\])+)$/.exec(name);
  if (!m) return undefined;
  return [m[1]!, ...[...m[2]!.matchAll(/\[([^[\]]*)\]/g)].map((x) => x[1]!)];
}

/** What a pattern is run on for one resolved value: strings as they are, numbers in both forms. */
function valueReadings(v: unknown): string[] {
  if (typeof v === 'string') return [v];
  if (v instanceof JsonNumber) {
    const canonical = String(Number(v.source));
    return canonical === v.source ? [v.source] : [v.source, canonical];
  }
  if (v !== null && typeof v === 'object') return [sourceOf(v) ?? JSON.stringify(v)];
  return [JSON.stringify(v) ?? String(v)];
}

function bodyCheckHolds(check: BodyCheck, body: unknown, flags: string, q: Quantifier, meter: WorkMeter) {
  const values = body === undefined ? [] : resolveJsonPath(body, check.jsonPath);
  return holdsOver(check.presence, values.map(valueReadings), check.matchValue?.pattern, q, (p, v) =>
    meter.finds(p, v, flags),
  );
}

/** True when every condition of the rule holds for the request (one batch element at most). */
export function ruleMatches(rule: Rule, req: CanonicalRequest, meter = new WorkMeter()): boolean {
  const flags = rule.regexFlags ?? '';
  const q: Quantifier = rule.effect === 'allow' ? 'every' : 'some';
  if (rule.methods && rule.methods.length > 0 && !rule.methods.includes(req.method)) return false;
  if (rule.path && !holds(rule.path.presence, meter.finds(rule.path.path.pattern, req.path, flags)))
    return false;
  if (rule.headerChecks?.length) {
    const headers = Object.entries(req.headers).map(([name, value]): [string, string[]] => [
      name,
      headerReadings(name, value),
    ]);
    for (const check of rule.headerChecks)
      if (!namedCheckHolds(check, headers, flags, q, meter)) return false;
  }
  if (rule.queryChecks?.length) {
    const query = req.query.map(([name, value]): [string, string[]] => [name, [value]]);
    for (const check of rule.queryChecks) if (!namedCheckHolds(check, query, flags, q, meter)) return false;
  }
  for (const check of rule.body ?? []) if (!bodyCheckHolds(check, req.body, flags, q, meter)) return false;
  return true;
}

/** True when some rule has a body check: only then is the body read (and refused when unreadable). */
export function hasBodyChecks(rules: ScopedRules): boolean {
  return SCOPE_ORDER.some((scope) => (rules[scope] ?? []).some((r) => (r.body?.length ?? 0) > 0));
}

/**
 * Reads the raw body into `body` when a rule has a body check (strictly; throws RuleInputError).
 * `decoded` is set when the body was content-decoded: the data plane sends those bytes instead.
 */
export function prepareRuleRequest(
  req: CanonicalRequest,
  rules: ScopedRules,
): { req: CanonicalRequest; decoded?: Buffer } {
  if (req.rawBody === undefined || !hasBodyChecks(rules)) return { req };
  const { rawBody, ...rest } = req;
  const read = readRuleBody(rawBody, req.headers);
  return { req: { ...rest, body: read.body }, decoded: read.decoded };
}

/** The elements of a batch, nested batches flattened; a body that is not an array is one element. */
function batchElements(body: unknown): unknown[] {
  if (!Array.isArray(body)) return [body];
  const out: unknown[] = [];
  const walk = (items: unknown[]) => {
    for (const item of items) {
      if (Array.isArray(item)) walk(item);
      else out.push(item);
    }
  };
  walk(body);
  if (out.length === 0)
    throw new RuleInputError(400, 'proxy-body-unreadable', 'Body checks apply and the JSON batch is empty');
  return out;
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

/**
 * Decides a request. Deny wins over allow whatever the priorities; no match → the defaults. A batch
 * passes only if every element passes alone (the first element's denial is reported). Throws
 * RuleInputError when the request cannot be judged within the limits.
 */
export function evaluateRules(
  request: CanonicalRequest,
  rules: ScopedRules,
  defaults: { proxyDefault?: Effect; targetDefault?: Effect },
  meter = new WorkMeter(),
): Decision {
  const { req } = prepareRuleRequest(request, rules);
  const ordered = orderedRules(rules);
  const elements = hasBodyChecks(rules) ? batchElements(req.body) : [req.body];
  let first: Decision | undefined;
  for (const body of elements) {
    const decision = decideOne({ ...req, body }, ordered, defaults, meter);
    if (decision.effect === 'deny') return decision;
    first ??= decision;
  }
  return first!;
}

function decideOne(
  req: CanonicalRequest,
  ordered: Array<{ scope: RuleScope; rule: Rule }>,
  defaults: { proxyDefault?: Effect; targetDefault?: Effect },
  meter: WorkMeter,
): Decision {
  let firstAllow: { scope: RuleScope; rule: Rule } | undefined;
  for (const entry of ordered) {
    if (!ruleMatches(entry.rule, req, meter)) continue;
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
