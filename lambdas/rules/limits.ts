/**
 * What one request's rule evaluation may cost, in numbers (docs/rules.md "Limits"). Each bound is
 * enforced where it is cheapest: pattern size when a rule is saved, value length and the work
 * budget while a request is evaluated, body size and JSON depth while the body is read.
 */

/** A pattern's source text, in characters. */
export const MAX_PATTERN_LENGTH = 1024;
/**
 * A compiled pattern's program size (RE2 instructions). Matching costs at most about program size
 * × input length steps; `[a-z]{1,100}` is ~200 instructions, `^/v2/inventory/.*` ~20.
 */
export const MAX_PROGRAM_SIZE = 400;
/** The longest value (path, header, query or form value, JSON string or source text) a pattern is run on. */
export const MAX_RULE_VALUE_LENGTH = 16 * 1024;
/**
 * Work budget of one request: the sum over every pattern run of program size × (value length + 1).
 * The worst step measured (re2js's NFA, `(.{0,60}a){3}$` on "aaa…", a loaded 2-core machine) is
 * ~55 ns warm and ~290 ns in a cold process, so a request's rules cost at most ~8 ms warm and
 * ~45 ms cold, under the 50 ms bound.
 */
export const RULE_WORK_BUDGET = 150_000;
/**
 * A safety net on top of the budget, for a machine far slower than measured: once a request's rule
 * work has taken this long, no further pattern is run and the request is refused. It is set well
 * above what the step budget allows on a loaded machine, so the decision stays deterministic (the
 * same request is never allowed on an idle machine and refused on a busy one); the step budget is
 * the bound.
 */
export const RULE_TIME_LIMIT_MS = 1000;
/** The largest body (after content decoding) read for body checks. */
export const MAX_RULE_BODY_BYTES = 1024 * 1024;
/** Deepest JSON nesting read for body checks. */
export const MAX_JSON_DEPTH = 64;
