/**
 * Rule shapes shared by the Core API (validation, storage), the evaluator and the data plane.
 * Field names follow SPEC (and the reference walk-through's nested `path` shape).
 */
export type Effect = 'allow' | 'deny';
/** `present`/`absent` are accepted aliases and stored as `must_exist`/`must_not_exist`. */
export type Presence = 'must_exist' | 'must_not_exist';
export type RuleScope = 'proxyCredential' | 'targetCredential' | 'proxy' | 'target';

export interface NamedCheck {
  /** Pattern the header/parameter name must match (case-insensitive for headers). */
  name: { pattern: string };
  /** Pattern its value must match; absent: any value. */
  value?: { pattern: string };
  presence: Presence;
}

export interface BodyCheck {
  jsonPath: string;
  matchValue?: { pattern: string };
  presence: Presence;
}

export interface Rule {
  ruleId: string;
  effect: Effect;
  priority: number;
  methods?: string[];
  path?: { path: { pattern: string }; presence: Presence };
  headerChecks?: NamedCheck[];
  queryChecks?: NamedCheck[];
  body?: BodyCheck[];
  regexFlags?: string;
  notes?: string;
}

/** The request as the rules see it: canonical path, upper-case method, lower-case header names. */
export interface CanonicalRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  /** Query parameters in order, decoded; a name may repeat. */
  query: Array<[string, string]>;
  /**
   * The body as rules read it: a JSON value (a top-level array is a batch), or form fields
   * (`FormBody`). Filled from `rawBody` by `prepareRuleRequest` when a rule has a body check.
   */
  body?: unknown;
  /** The body bytes as received, not yet read. */
  rawBody?: Buffer;
}

export type Decision =
  | { effect: 'allow' | 'deny'; reason: 'rule'; scope: RuleScope; ruleId: string; priority: number }
  | { effect: 'allow' | 'deny'; reason: 'default'; proxyDefault: Effect; targetDefault: Effect };
