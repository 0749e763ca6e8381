import { randomUUID } from 'node:crypto';
import { parseJsonPath } from '../rules/evaluator.ts';
import { ALLOWED_FLAGS, compilePattern, PatternError } from '../rules/patterns.ts';
import type { Rule } from '../rules/types.ts';
import type { Cell, Deps } from '../shared/deps.ts';
import { BadRequestError, ConflictError, NotFoundError } from '../shared/errors.ts';
import type { ProxyItem, RuleItem } from '../storage/items.ts';
import { type Key, keys, type RuleScope as ParentType } from '../storage/keys.ts';
import { commitChange } from '../storage/snapshot.ts';
import { getItem, type Item, publicView, queryPrefix } from '../storage/table.ts';
import {
  retryOnConflict,
  type TxItem,
  txCreate,
  txDelete,
  txReplace,
  txTouch,
  versionOf,
} from '../storage/transact.ts';
import { proxiesUsing } from './cells.ts';
import { authorizeClient } from './clients.ts';
import { loadCredential } from './credentials.ts';
import type { Caller } from './identity.ts';
import { listAnswer } from './paging.ts';
import { loadProxy } from './proxies.ts';
import type { RuleInput } from './schemas.ts';
import { loadTarget } from './targets.ts';

/**
 * Rules on three parents: a credential, a target or a proxy. A rule lives beside its parent (same
 * cell, same client partition) and every write rebuilds the snapshot of each proxy that uses the
 * parent, before answering. Every pattern is compiled at save time on RE2 (linear time, length
 * capped); one that does not compile is a 400 naming its field.
 */
/**
 * Caps that keep a proxy's snapshot (four scopes of rules in one item) well under DynamoDB's 400 KB
 * item limit: 4 scopes × 25 rules × 3.5 KB ≈ 350 KB at most. `notes` are not in the snapshot.
 */
export const MAX_RULES_PER_PARENT = 25;
export const MAX_RULE_BYTES = 3500;

function fieldError(field: string, message: string) {
  return new BadRequestError(`${field}: ${message}`, 'invalid_pattern', [{ field, message }]);
}

/** Compiles every pattern of a rule with its flags; throws a 400 naming the first bad field. */
export function checkRulePatterns(rule: RuleInput) {
  const flags = rule.regexFlags ?? '';
  for (const f of flags)
    if (!ALLOWED_FLAGS.includes(f))
      throw fieldError('body.regexFlags', `unknown regex flag '${f}' (allowed: ${ALLOWED_FLAGS})`);
  const compile = (field: string, pattern: string) => {
    try {
      compilePattern(pattern, flags);
    } catch (error) {
      if (error instanceof PatternError) throw fieldError(field, error.message);
      throw error;
    }
  };
  if (rule.path) compile('body.path.path.pattern', rule.path.path.pattern);
  for (const list of ['headerChecks', 'queryChecks'] as const)
    rule[list]?.forEach((check, i) => {
      compile(`body.${list}.${i}.name.pattern`, check.name.pattern);
      if (check.value) compile(`body.${list}.${i}.value.pattern`, check.value.pattern);
    });
  rule.body?.forEach((check, i) => {
    if (!parseJsonPath(check.jsonPath))
      throw fieldError(`body.body.${i}.jsonPath`, "supported: $, .name, ['name'], [n], [*]");
    if (check.matchValue) compile(`body.body.${i}.matchValue.pattern`, check.matchValue.pattern);
  });
  const { notes: _notes, ...conditions } = rule;
  const size = Buffer.byteLength(JSON.stringify(conditions), 'utf8');
  if (size > MAX_RULE_BYTES)
    throw new BadRequestError(
      `body: a rule's conditions may take ${MAX_RULE_BYTES} bytes, this one takes ${size}; split it`,
      'rule_too_large',
      [{ field: 'body', message: 'rule too large' }],
    );
}

export interface Parent {
  cell: Cell;
  key: Key;
  /** The parent as read (its version orders rule changes against changes of the parent). */
  item: Item;
  /** The proxies whose snapshots hold this parent's rules. */
  proxies: () => Promise<string[]>;
}

export async function loadParent(
  deps: Deps,
  clientId: string,
  parentType: ParentType,
  parentId: string,
): Promise<Parent> {
  if (parentType === 'proxy') {
    const { cell, item } = await loadProxy(deps, clientId, parentId);
    return {
      cell,
      key: keys.proxy(clientId, parentId),
      item: item as unknown as Item,
      proxies: async () => [parentId],
    };
  }
  const { cell, item } =
    parentType === 'credential'
      ? await loadCredential(deps, clientId, parentId)
      : await loadTarget(deps, clientId, parentId);
  const uses =
    parentType === 'credential'
      ? (p: ProxyItem) => p.proxyProxyCredentialId === parentId || p.proxyTargetCredentialId === parentId
      : (p: ProxyItem) => p.proxyTargetId === parentId;
  return {
    cell,
    key: parentType === 'credential' ? keys.credential(clientId, parentId) : keys.target(clientId, parentId),
    item: item as unknown as Item,
    proxies: async () => (await proxiesUsing(cell, clientId, uses)).map((p) => p.proxyId),
  };
}

/**
 * Writes one change of a parent's child (a rule, or a meter: meters.ts): the child, a version bump of its parent (so concurrent rule changes of one
 * parent are serialised, which keeps the per-parent cap exact) and the snapshot of every proxy
 * holding the parent's rules, in one transaction.
 */
export async function commitRule(
  deps: Deps,
  clientId: string,
  parent: Parent,
  write: TxItem,
  key: Key,
  after: Item | null,
) {
  await commitChange(
    parent.cell,
    clientId,
    {
      writes: [write, txTouch(parent.cell, parent.key, versionOf(parent.item))],
      after: [[key, after]],
      proxyIds: await parent.proxies(),
    },
    deps.now(),
  );
}

function ruleFields(input: RuleInput): Omit<Rule, 'ruleId'> {
  const rule: Omit<Rule, 'ruleId'> = { effect: input.effect, priority: input.priority };
  if (input.methods?.length) rule.methods = [...new Set(input.methods)];
  if (input.path) rule.path = input.path;
  if (input.headerChecks?.length) rule.headerChecks = input.headerChecks;
  if (input.queryChecks?.length) rule.queryChecks = input.queryChecks;
  if (input.body?.length) rule.body = input.body;
  if (input.regexFlags) rule.regexFlags = input.regexFlags;
  if (input.notes !== undefined) rule.notes = input.notes;
  return rule;
}

function view(item: RuleItem) {
  return publicView(item as unknown as Record<string, unknown>);
}

export async function createRule(
  deps: Deps,
  caller: Caller,
  clientId: string,
  parentType: ParentType,
  parentId: string,
  input: RuleInput,
) {
  checkRulePatterns(input);
  const ruleId = randomUUID();
  return retryOnConflict(clientId, async () => {
    await authorizeClient(deps, caller, clientId, 'admin');
    const parent = await loadParent(deps, clientId, parentType, parentId);
    const existing = await queryPrefix(parent.cell, keys.rulesPrefix(clientId, parentType, parentId));
    if (existing.length >= MAX_RULES_PER_PARENT)
      throw new ConflictError(`A ${parentType} holds at most ${MAX_RULES_PER_PARENT} rules`, 'rule_limit');
    const now = deps.now().toISOString();
    const item: RuleItem = {
      ruleId,
      ...ruleFields(input),
      clientId,
      parentType,
      parentId,
      createdAt: now,
      updatedAt: now,
    };
    const key = keys.rule(clientId, parentType, parentId, ruleId);
    const stored = { ...key, type: 'Rule', ...item } as Key & Item;
    await commitRule(deps, clientId, parent, txCreate(parent.cell, stored), key, stored);
    return view(item);
  });
}

export async function listRules(
  deps: Deps,
  caller: Caller,
  clientId: string,
  parentType: ParentType,
  parentId: string,
) {
  await authorizeClient(deps, caller, clientId, 'user');
  const parent = await loadParent(deps, clientId, parentType, parentId);
  const items = await queryPrefix<RuleItem>(parent.cell, keys.rulesPrefix(clientId, parentType, parentId));
  items.sort((a, b) => a.priority - b.priority || a.ruleId.localeCompare(b.ruleId));
  return listAnswer('rules', items.map(view));
}

async function loadRule(
  deps: Deps,
  clientId: string,
  parentType: ParentType,
  parentId: string,
  ruleId: string,
) {
  const parent = await loadParent(deps, clientId, parentType, parentId);
  const item = await getItem<RuleItem>(parent.cell, keys.rule(clientId, parentType, parentId, ruleId));
  if (!item) throw new NotFoundError('Rule not found');
  return { parent, item };
}

export async function getRule(
  deps: Deps,
  caller: Caller,
  clientId: string,
  parentType: ParentType,
  parentId: string,
  ruleId: string,
) {
  await authorizeClient(deps, caller, clientId, 'user');
  return view((await loadRule(deps, clientId, parentType, parentId, ruleId)).item);
}

/** Replaces a rule's conditions whole (PUT); read-only fields sent back are ignored. */
export async function updateRule(
  deps: Deps,
  caller: Caller,
  clientId: string,
  parentType: ParentType,
  parentId: string,
  ruleId: string,
  input: RuleInput & { ruleId?: string },
) {
  if (input.ruleId !== undefined && input.ruleId !== ruleId)
    throw new BadRequestError('body.ruleId: cannot be changed', 'immutable_field');
  checkRulePatterns(input);
  return retryOnConflict(clientId, async () => {
    await authorizeClient(deps, caller, clientId, 'admin');
    const { parent, item } = await loadRule(deps, clientId, parentType, parentId, ruleId);
    const updated: RuleItem = {
      ruleId,
      ...ruleFields(input),
      clientId,
      parentType,
      parentId,
      createdAt: item.createdAt,
      updatedAt: deps.now().toISOString(),
    };
    const key = keys.rule(clientId, parentType, parentId, ruleId);
    const stored = { ...key, type: 'Rule', ...updated } as Key & Item;
    const write = txReplace(parent.cell, stored, versionOf(item as unknown as Item));
    await commitRule(deps, clientId, parent, write, key, stored);
    return view(updated);
  });
}

export async function deleteRule(
  deps: Deps,
  caller: Caller,
  clientId: string,
  parentType: ParentType,
  parentId: string,
  ruleId: string,
) {
  await retryOnConflict(clientId, async () => {
    await authorizeClient(deps, caller, clientId, 'admin');
    const { parent, item } = await loadRule(deps, clientId, parentType, parentId, ruleId);
    const key = keys.rule(clientId, parentType, parentId, ruleId);
    const write = txDelete(parent.cell, key, versionOf(item as unknown as Item));
    await commitRule(deps, clientId, parent, write, key, null);
  });
}
