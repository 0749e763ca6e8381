import { randomUUID } from 'node:crypto';
import { canonicalizePath } from '../data-plane/canonical-path.ts';
import { checkTargetUrl } from '../net/target-url.ts';
import type { Deps } from '../shared/deps.ts';
import { ConflictError, NotFoundError } from '../shared/errors.ts';
import type { ProxyItem, TargetItem } from '../storage/items.ts';
import { type Key, keys } from '../storage/keys.ts';
import { commitChange, commitReplace } from '../storage/snapshot.ts';
import { deleteItems, type Item, publicView, queryPrefix } from '../storage/table.ts';
import { retryOnConflict, txCreate, txDelete, versionOf } from '../storage/transact.ts';
import { cellFor, findInCells, pageInCells, proxiesUsing } from './cells.ts';
import { authorizeClient } from './clients.ts';

import type { Caller } from './identity.ts';
import { listAnswer, type PageQuery } from './paging.ts';
import type { TargetCreate, TargetUpdate } from './schemas.ts';
import { checkImmutable, fieldError } from './validation.ts';

/**
 * Targets: where a proxy's calls go. The base URL is checked when it is saved (https only, public
 * addresses and names only, see net/target-url.ts) and stored normalised without a trailing `/`;
 * the data plane checks resolved addresses again at connect time. `targetRegion` is immutable.
 * A target still used by a proxy cannot be deleted (409): repoint or delete those proxies first.
 */
function checkBaseUrl(deps: Deps, raw: string): string {
  const checked = checkTargetUrl(raw, deps.config.targetAllowlist, deps.config.ownPorts);
  if (!checked.ok) throw fieldError('body.targetBaseURL', checked.reason, 'unsafe_url');
  if (checked.url.search) throw fieldError('body.targetBaseURL', 'a base URL has no query', 'unsafe_url');
  return checked.normalized;
}

function checkTestPath(path: string): string {
  const canonical = canonicalizePath(path);
  if (!path.startsWith('/') || !canonical.ok)
    throw fieldError('body.targetTestPath', canonical.ok ? 'must start with "/"' : canonical.reason);
  return path;
}

function view(item: TargetItem) {
  return publicView(item as unknown as Record<string, unknown>);
}

/** Loads a target of the client from whichever cell holds it, or 404. */
export async function loadTarget(deps: Deps, clientId: string, targetId: string) {
  const found = await findInCells<TargetItem>(deps, keys.target(clientId, targetId), 'targetRegion');
  if (!found) throw new NotFoundError('Target not found');
  return found;
}

const usesTarget = (targetId: string) => (p: ProxyItem) => p.proxyTargetId === targetId;

export async function createTarget(deps: Deps, caller: Caller, clientId: string, input: TargetCreate) {
  await authorizeClient(deps, caller, clientId, 'admin');
  const cell = cellFor(deps, input.targetRegion, 'body.targetRegion');
  const now = deps.now().toISOString();
  const item: TargetItem = {
    targetId: randomUUID(),
    clientId,
    targetName: input.targetName,
    targetBaseURL: checkBaseUrl(deps, input.targetBaseURL),
    targetTestPath: input.targetTestPath === undefined ? undefined : checkTestPath(input.targetTestPath),
    targetRegion: input.targetRegion,
    targetDefaultRuleEffect: input.targetDefaultRuleEffect ?? 'deny',
    createdAt: now,
    updatedAt: now,
  };
  const key = keys.target(clientId, item.targetId);
  const stored = {
    ...key,
    type: 'Target',
    ...keys.byRegion(item.targetRegion, 'TARGET', clientId, item.targetId),
    ...item,
  } as Key & Item;
  await retryOnConflict(clientId, () =>
    commitChange(
      cell,
      clientId,
      { writes: [txCreate(cell, stored)], after: [[key, stored]], proxyIds: [] },
      deps.now(),
    ),
  );
  return view(item);
}

export async function listTargets(deps: Deps, caller: Caller, clientId: string, query?: PageQuery) {
  await authorizeClient(deps, caller, clientId, 'user');
  const where = keys.targetsPrefix(clientId);
  const { items, nextToken } = await pageInCells<TargetItem>(deps, where, 'targetRegion', query);
  return listAnswer('targets', items.map(view), nextToken);
}

export async function getTarget(deps: Deps, caller: Caller, clientId: string, targetId: string) {
  await authorizeClient(deps, caller, clientId, 'user');
  return view((await loadTarget(deps, clientId, targetId)).item);
}

export async function updateTarget(
  deps: Deps,
  caller: Caller,
  clientId: string,
  targetId: string,
  input: TargetUpdate,
) {
  return retryOnConflict(clientId, async () => {
    await authorizeClient(deps, caller, clientId, 'admin');
    const { item, cell } = await loadTarget(deps, clientId, targetId);
    checkImmutable('targetId', input.targetId, item.targetId);
    checkImmutable('clientId', input.clientId, item.clientId);
    checkImmutable('targetRegion', input.targetRegion, item.targetRegion);
    const updated: TargetItem = {
      ...item,
      targetName: input.targetName ?? item.targetName,
      targetBaseURL:
        input.targetBaseURL === undefined ? item.targetBaseURL : checkBaseUrl(deps, input.targetBaseURL),
      targetTestPath:
        input.targetTestPath === null
          ? undefined
          : input.targetTestPath === undefined
            ? item.targetTestPath
            : checkTestPath(input.targetTestPath),
      targetDefaultRuleEffect: input.targetDefaultRuleEffect ?? item.targetDefaultRuleEffect,
      updatedAt: deps.now().toISOString(),
    };
    const proxies = await proxiesUsing(cell, clientId, usesTarget(targetId));
    await commitReplace(
      cell,
      clientId,
      keys.target(clientId, targetId),
      { before: item, after: updated, proxyIds: proxies.map((p) => p.proxyId) },
      deps.now(),
    );
    return view(updated);
  });
}

/**
 * Deletes a target no proxy uses (409 otherwise). A proxy starting to use it concurrently bumps
 * its version, so this delete is then cancelled and re-checked. Its rules go after the item.
 */
export async function deleteTarget(deps: Deps, caller: Caller, clientId: string, targetId: string) {
  const cell = await retryOnConflict(clientId, async () => {
    await authorizeClient(deps, caller, clientId, 'admin');
    const { cell, item } = await loadTarget(deps, clientId, targetId);
    const users = await proxiesUsing(cell, clientId, usesTarget(targetId));
    if (users.length > 0)
      throw new ConflictError(
        `Target is used by proxies ${users.map((p) => p.proxyId).join(', ')}; repoint or delete them first`,
        'target_in_use',
      );
    const key = keys.target(clientId, targetId);
    await commitChange(
      cell,
      clientId,
      {
        writes: [txDelete(cell, key, versionOf(item as unknown as Item))],
        after: [[key, null]],
        proxyIds: [],
      },
      deps.now(),
    );
    return cell;
  });
  const rules = await queryPrefix<Key>(cell, keys.rulesPrefix(clientId, 'target', targetId));
  await deleteItems(
    cell,
    rules.map((r) => ({ pk: r.pk, sk: r.sk })),
  );
}
