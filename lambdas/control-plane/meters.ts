import { randomUUID } from 'node:crypto';
import { compilePattern, PatternError } from '../rules/patterns.ts';
import type { Deps } from '../shared/deps.ts';
import { BadRequestError, ConflictError, NotFoundError } from '../shared/errors.ts';
import type { MeterItem } from '../storage/items.ts';
import { type Key, keys, type MeterScope } from '../storage/keys.ts';
import { getItem, type Item, publicView, queryPrefix } from '../storage/table.ts';
import { retryOnConflict, txCreate, txDelete, txReplace, versionOf } from '../storage/transact.ts';
import { authorizeClient } from './clients.ts';
import type { Caller } from './identity.ts';
import { listAnswer } from './paging.ts';
import { commitRule, loadParent } from './rules.ts';
import type { MeterInput } from './schemas.ts';

/**
 * Meters (docs/meters.md) on two parents: a proxy, or a target credential (one budget shared by
 * every proxy that sends that vendor secret). A meter lives beside its parent, like a rule, and
 * every write rebuilds the snapshot of each proxy it applies to in the same transaction
 * (rules.ts commitRule, storage/snapshot.ts), so a new blocking meter reaches the data plane
 * atomically with the answer that shows it. The data plane enforces them (data-plane/meters.ts).
 */

/** A proxy carries at most 10 meters of its own and 10 of its target credential in its snapshot. */
export const MAX_METERS_PER_PARENT = 10;

function fieldError(field: string, message: string, code = 'invalid_meter') {
  return new BadRequestError(`${field}: ${message}`, code, [{ field, message }]);
}

/** The checks a schema cannot make: the path pattern compiles on RE2 within the pattern limits. */
function checkMeter(input: MeterInput) {
  if (input.pathPattern === undefined) return;
  try {
    compilePattern(input.pathPattern, '');
  } catch (error) {
    if (error instanceof PatternError) throw fieldError('body.pathPattern', error.message, 'invalid_pattern');
    throw error;
  }
}

async function meterParent(deps: Deps, clientId: string, scope: MeterScope, parentId: string) {
  const parent = await loadParent(deps, clientId, scope, parentId);
  if (scope === 'credential' && parent.item.credentialType !== 'target')
    throw new BadRequestError(
      'Meters go on target credentials (the vendor secret) or on proxies',
      'not_a_target_credential',
    );
  return parent;
}

function meterFields(input: MeterInput) {
  const fields: Omit<
    MeterItem,
    'meterId' | 'clientId' | 'parentType' | 'parentId' | 'createdAt' | 'updatedAt'
  > = {
    meterName: input.meterName,
    meterType: input.meterType,
    window: input.window,
    limit: input.limit,
    action: input.action,
  };
  if (input.valuePath !== undefined) fields.valuePath = input.valuePath;
  if (input.methods?.length) fields.methods = [...new Set(input.methods)];
  if (input.pathPattern !== undefined) fields.pathPattern = input.pathPattern;
  return fields;
}

function view(item: MeterItem) {
  return publicView(item as unknown as Item);
}

export async function createMeter(
  deps: Deps,
  caller: Caller,
  clientId: string,
  scope: MeterScope,
  parentId: string,
  input: MeterInput,
) {
  checkMeter(input);
  const meterId = randomUUID();
  return retryOnConflict(clientId, async () => {
    await authorizeClient(deps, caller, clientId, 'admin');
    const parent = await meterParent(deps, clientId, scope, parentId);
    const existing = await queryPrefix(parent.cell, keys.metersPrefix(clientId, scope, parentId));
    if (existing.length >= MAX_METERS_PER_PARENT)
      throw new ConflictError(`A ${scope} holds at most ${MAX_METERS_PER_PARENT} meters`, 'meter_limit');
    const now = deps.now().toISOString();
    const item: MeterItem = {
      meterId,
      ...meterFields(input),
      clientId,
      parentType: scope,
      parentId,
      createdAt: now,
      updatedAt: now,
    };
    const key = keys.meter(clientId, scope, parentId, meterId);
    const stored = { ...key, type: 'Meter', ...item } as Key & Item;
    await commitRule(deps, clientId, parent, txCreate(parent.cell, stored), key, stored);
    return view(item);
  });
}

export async function listMeters(
  deps: Deps,
  caller: Caller,
  clientId: string,
  scope: MeterScope,
  parentId: string,
) {
  await authorizeClient(deps, caller, clientId, 'user');
  const parent = await meterParent(deps, clientId, scope, parentId);
  const items = await queryPrefix<MeterItem>(parent.cell, keys.metersPrefix(clientId, scope, parentId));
  items.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.meterId.localeCompare(b.meterId));
  return listAnswer('meters', items.map(view));
}

async function loadMeter(deps: Deps, clientId: string, scope: MeterScope, parentId: string, meterId: string) {
  const parent = await meterParent(deps, clientId, scope, parentId);
  const item = await getItem<MeterItem>(parent.cell, keys.meter(clientId, scope, parentId, meterId));
  if (!item) throw new NotFoundError('Meter not found');
  return { parent, item };
}

export async function getMeter(
  deps: Deps,
  caller: Caller,
  clientId: string,
  scope: MeterScope,
  parentId: string,
  meterId: string,
) {
  await authorizeClient(deps, caller, clientId, 'user');
  return view((await loadMeter(deps, clientId, scope, parentId, meterId)).item);
}

/**
 * Replaces a meter's definition whole (PUT). Its counters are keyed by meterId and window, so a
 * changed limit applies to what was already counted in the current window; a changed window starts
 * counting in the new window kind.
 */
export async function updateMeter(
  deps: Deps,
  caller: Caller,
  clientId: string,
  scope: MeterScope,
  parentId: string,
  meterId: string,
  input: MeterInput & { meterId?: string },
) {
  if (input.meterId !== undefined && input.meterId !== meterId)
    throw new BadRequestError('body.meterId: cannot be changed', 'immutable_field');
  checkMeter(input);
  return retryOnConflict(clientId, async () => {
    await authorizeClient(deps, caller, clientId, 'admin');
    const { parent, item } = await loadMeter(deps, clientId, scope, parentId, meterId);
    const updated: MeterItem = {
      meterId,
      ...meterFields(input),
      clientId,
      parentType: scope,
      parentId,
      createdAt: item.createdAt,
      updatedAt: deps.now().toISOString(),
    };
    const key = keys.meter(clientId, scope, parentId, meterId);
    const stored = { ...key, type: 'Meter', ...updated } as Key & Item;
    const write = txReplace(parent.cell, stored, versionOf(item as unknown as Item));
    await commitRule(deps, clientId, parent, write, key, stored);
    return view(updated);
  });
}

export async function deleteMeter(
  deps: Deps,
  caller: Caller,
  clientId: string,
  scope: MeterScope,
  parentId: string,
  meterId: string,
) {
  await retryOnConflict(clientId, async () => {
    await authorizeClient(deps, caller, clientId, 'admin');
    const { parent, item } = await loadMeter(deps, clientId, scope, parentId, meterId);
    const key = keys.meter(clientId, scope, parentId, meterId);
    const write = txDelete(parent.cell, key, versionOf(item as unknown as Item));
    await commitRule(deps, clientId, parent, write, key, null);
  });
}
