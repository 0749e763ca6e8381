import { randomUUID } from 'node:crypto';
import { canonicalRequest } from '../data-plane/canonical-path.ts';
import { evaluateRules } from '../rules/evaluator.ts';
import type { Cell, Deps } from '../shared/deps.ts';
import { ConflictError, NotFoundError } from '../shared/errors.ts';
import { claimInHome, releaseInHome } from '../storage/home-claim.ts';
import type { CredentialItem, ProxyItem, TargetItem } from '../storage/items.ts';
import { type Key, keys } from '../storage/keys.ts';
import { aliasOwner, commitChange, commitReplace, readSnapshot } from '../storage/snapshot.ts';
import { deleteItems, getItem, type Item, publicView, queryPrefix } from '../storage/table.ts';
import { retryOnConflict, type TxItem, txCreate, txDelete, txTouch, versionOf } from '../storage/transact.ts';
import { cellFor, findInCells, MAX_PROXIES_PER_RESOURCE, pageInCells, proxiesUsing } from './cells.ts';
import { authorizeClient } from './clients.ts';

import type { Caller } from './identity.ts';
import { listAnswer, type PageQuery } from './paging.ts';
import type { ProxyCreate, ProxyUpdate, SimulateInput } from './schemas.ts';
import { checkImmutable, fieldError } from './validation.ts';

/**
 * Proxies wire a proxy credential, a target and a target credential together, in one region.
 * References are checked on every write: they exist in this client, live in the proxy's region,
 * and are of the right kind (a target credential is never a proxy credential). Limits default to
 * the client's configuration. Every write rebuilds the proxy's hot-path snapshot before answering;
 * `PUT` of `proxyTargetCredentialId`/`proxyProxyCredentialId` is the zero-downtime rotation step.
 */
function view(item: ProxyItem) {
  return publicView(item as unknown as Record<string, unknown>);
}

/** Loads a proxy of the client from whichever cell holds it, or 404. */
export async function loadProxy(deps: Deps, clientId: string, proxyId: string) {
  const found = await findInCells<ProxyItem>(deps, keys.proxy(clientId, proxyId), 'proxyRegion');
  if (!found) throw new NotFoundError('Proxy not found');
  return found;
}

/** Checks the three references of a proxy (all in this client and in the proxy's region). */
async function checkReferences(
  deps: Deps,
  clientId: string,
  region: string,
  refs: Pick<ProxyItem, 'proxyProxyCredentialId' | 'proxyTargetId' | 'proxyTargetCredentialId'>,
  changed: (field: string) => boolean = () => true,
): Promise<Array<{ field: string; key: Key; item: Item }>> {
  const [pc, target, tc] = await Promise.all([
    findInCells<CredentialItem>(
      deps,
      keys.credential(clientId, refs.proxyProxyCredentialId),
      'credentialRegion',
    ),
    findInCells<TargetItem>(deps, keys.target(clientId, refs.proxyTargetId), 'targetRegion'),
    findInCells<CredentialItem>(
      deps,
      keys.credential(clientId, refs.proxyTargetCredentialId),
      'credentialRegion',
    ),
  ]);
  const checks: Array<[string, { region: string; credentialType?: string } | undefined, string?]> = [
    [
      'proxyProxyCredentialId',
      pc && { region: pc.item.credentialRegion, credentialType: pc.item.credentialType },
      'proxy',
    ],
    ['proxyTargetId', target && { region: target.item.targetRegion }],
    [
      'proxyTargetCredentialId',
      tc && { region: tc.item.credentialRegion, credentialType: tc.item.credentialType },
      'target',
    ],
  ];
  const found: Array<{ field: string; key: Key; item: Item }> = [];
  const keyOf: Record<string, Key> = {
    proxyProxyCredentialId: keys.credential(clientId, refs.proxyProxyCredentialId),
    proxyTargetId: keys.target(clientId, refs.proxyTargetId),
    proxyTargetCredentialId: keys.credential(clientId, refs.proxyTargetCredentialId),
  };
  const items: Record<string, Item | undefined> = {
    proxyProxyCredentialId: pc?.item as Item | undefined,
    proxyTargetId: target?.item as Item | undefined,
    proxyTargetCredentialId: tc?.item as Item | undefined,
  };
  for (const [field, found, credentialType] of checks) {
    if (!changed(field)) continue;
    if (!found) throw fieldError(`body.${field}`, 'no such resource in this client', 'unknown_reference');
    if (found.region !== region)
      throw fieldError(
        `body.${field}`,
        `lives in ${found.region}, not in the proxy's region ${region}`,
        'region_mismatch',
      );
    if (credentialType && found.credentialType !== credentialType)
      throw fieldError(
        `body.${field}`,
        `must be a ${credentialType} credential, not a ${found.credentialType} credential`,
        'wrong_credential_type',
      );
  }
  for (const field of Object.keys(keyOf))
    if (changed(field)) found.push({ field, key: keyOf[field]!, item: items[field]! });
  return found;
}

/**
 * What a proxy starting to use credentials and a target adds to its transaction: a version bump of
 * each (storage/snapshot.ts, point 2), and a check that none already serves the most proxies one
 * change can rebuild atomically.
 */
async function startUsing(
  cell: Cell,
  clientId: string,
  refs: Array<{ field: string; key: Key; item: Item }>,
): Promise<TxItem[]> {
  if (refs.length === 0) return [];
  const proxies = await proxiesUsing(cell, clientId, () => true);
  for (const { field, item } of refs) {
    const id = String(item.credentialId ?? item.targetId);
    const using = proxies.filter(
      (p) => p.proxyProxyCredentialId === id || p.proxyTargetCredentialId === id || p.proxyTargetId === id,
    );
    // An aliased proxy's snapshot is written twice (its alias copy): it counts twice.
    const users = using.length + using.filter((p) => p.proxyAlias).length;
    if (users >= MAX_PROXIES_PER_RESOURCE)
      throw new ConflictError(
        `body.${field}: already used by ${users} proxies; one credential or target serves at most ${MAX_PROXIES_PER_RESOURCE}`,
        'too_many_proxies',
      );
  }
  return refs.map(({ key, item }) => txTouch(cell, key, versionOf(item)));
}

/**
 * An alias routes in place of the id (data plane), so it is unique: one taken by another proxy is
 * a 409. In the cell, a race between two claims is settled by the alias copy's conditional put in
 * the commit (storage/snapshot.ts); across regions by a claim in the home table
 * (storage/home-claim.ts), taken before the commit and released after a delete or rename.
 */
async function checkAliasFree(cell: Cell, alias: string | undefined, proxyId: string) {
  if (!alias) return;
  const owner = await aliasOwner(cell, alias);
  if (owner !== undefined && owner !== proxyId) throw aliasTaken();
}

const aliasTaken = () => new ConflictError('body.proxyAlias: already used by another proxy', 'alias_taken');
/** How long an alias claim may wait for its proxy to be written before it counts as orphaned. */
const ALIAS_CLAIM_GRACE_MS = 60_000;

async function claimAlias(
  deps: Deps,
  alias: string | undefined,
  owner: Pick<ProxyItem, 'clientId' | 'proxyId' | 'proxyRegion'>,
) {
  if (!alias) return;
  await claimInHome(deps.home, {
    key: keys.aliasClaim(alias),
    item: { type: 'AliasClaim', ...owner },
    owner: 'proxyId',
    // Live while its proxy exists and still carries the alias (a rename whose release failed is not).
    holderLive: async (held) => {
      const cell = deps.cells[String(held.proxyRegion)];
      const proxy =
        cell && (await getItem<ProxyItem>(cell, keys.proxy(String(held.clientId), String(held.proxyId))));
      return proxy?.proxyAlias === alias;
    },
    taken: aliasTaken,
    graceMs: ALIAS_CLAIM_GRACE_MS,
    now: deps.now(),
  });
}

async function releaseAlias(deps: Deps, alias: string | undefined, proxyId: string) {
  if (alias) await releaseInHome(deps.home, keys.aliasClaim(alias), 'proxyId', proxyId);
}

/**
 * After a failed create or rename: releases the alias claimed for it unless the proxy carries it
 * after all (the write may have been applied although its answer was lost). Best effort: a claim
 * left behind is taken over after the grace.
 */
async function releaseUnused(
  deps: Deps,
  cell: Cell,
  clientId: string,
  proxyId: string,
  alias: string | undefined,
) {
  if (!alias) return;
  try {
    const proxy = await getItem<ProxyItem>(cell, keys.proxy(clientId, proxyId));
    if (proxy?.proxyAlias !== alias) await releaseAlias(deps, alias, proxyId);
  } catch {
    // the grace takes it over
  }
}

/** The version bumps of the items a proxy stops using (those that still exist). */
async function stopUsing(cell: Cell, keysOf: Key[]): Promise<TxItem[]> {
  const items = await Promise.all(keysOf.map((k) => getItem<Item>(cell, k)));
  return keysOf.flatMap((k, i) => (items[i] ? [txTouch(cell, k, versionOf(items[i]))] : []));
}

export async function createProxy(deps: Deps, caller: Caller, clientId: string, input: ProxyCreate) {
  const proxyId = randomUUID();
  const created = retryOnConflict(clientId, async () => {
    const client = await authorizeClient(deps, caller, clientId, 'admin');
    const cell = cellFor(deps, input.proxyRegion, 'body.proxyRegion');
    const refs = await checkReferences(deps, clientId, input.proxyRegion, input);
    await checkAliasFree(cell, input.proxyAlias, proxyId);
    await claimAlias(deps, input.proxyAlias, { clientId, proxyId, proxyRegion: input.proxyRegion });
    const now = deps.now().toISOString();
    const limits = client.configuration.limits;
    const item: ProxyItem = {
      proxyId,
      clientId,
      proxyName: input.proxyName,
      proxyAlias: input.proxyAlias,
      proxyRegion: input.proxyRegion,
      proxyProxyCredentialId: input.proxyProxyCredentialId,
      proxyTargetId: input.proxyTargetId,
      proxyTargetCredentialId: input.proxyTargetCredentialId,
      proxyDefaultRuleEffect: input.proxyDefaultRuleEffect ?? 'deny',
      proxyActive: input.proxyActive ?? true,
      proxyMaxRequestsPerMinute: input.proxyMaxRequestsPerMinute ?? limits.requestsPerMinute,
      proxyMaxRequestsPerDay: input.proxyMaxRequestsPerDay ?? limits.requestsPerDay,
      proxyTimeouts: input.proxyTimeouts,
      createdAt: now,
      updatedAt: now,
    };
    const key = keys.proxy(clientId, proxyId);
    const stored = {
      ...key,
      type: 'Proxy',
      ...keys.byRegion(item.proxyRegion, 'PROXY', clientId, proxyId),
      ...item,
    } as Key & Item;
    // The proxy item, its snapshot and the version bumps of what it uses: one transaction.
    await commitChange(
      cell,
      clientId,
      {
        writes: [txCreate(cell, stored), ...(await startUsing(cell, clientId, refs))],
        after: [[key, stored]],
        proxyIds: [proxyId],
        createdProxyId: proxyId,
      },
      deps.now(),
    );
    return view(item);
  });
  return created.catch(async (error) => {
    const cell = deps.cells[input.proxyRegion];
    if (cell) await releaseUnused(deps, cell, clientId, proxyId, input.proxyAlias);
    throw error;
  });
}

export async function listProxies(deps: Deps, caller: Caller, clientId: string, query?: PageQuery) {
  await authorizeClient(deps, caller, clientId, 'user');
  const where = keys.proxiesPrefix(clientId);
  const { items, nextToken } = await pageInCells<ProxyItem>(deps, where, 'proxyRegion', query);
  return listAnswer('proxies', items.map(view), nextToken);
}

export async function getProxy(deps: Deps, caller: Caller, clientId: string, proxyId: string) {
  await authorizeClient(deps, caller, clientId, 'user');
  return view((await loadProxy(deps, clientId, proxyId)).item);
}

export async function updateProxy(
  deps: Deps,
  caller: Caller,
  clientId: string,
  proxyId: string,
  input: ProxyUpdate,
) {
  let claimed: { cell: Cell; alias?: string; previous?: string } | undefined;
  const updatedView = retryOnConflict(clientId, async () => {
    await authorizeClient(deps, caller, clientId, 'admin');
    const { item, cell } = await loadProxy(deps, clientId, proxyId);
    checkImmutable('proxyId', input.proxyId, item.proxyId);
    checkImmutable('clientId', input.clientId, item.clientId);
    checkImmutable('proxyRegion', input.proxyRegion, item.proxyRegion);
    const updated: ProxyItem = {
      ...item,
      proxyName: input.proxyName ?? item.proxyName,
      proxyAlias: input.proxyAlias === null ? undefined : (input.proxyAlias ?? item.proxyAlias),
      proxyProxyCredentialId: input.proxyProxyCredentialId ?? item.proxyProxyCredentialId,
      proxyTargetId: input.proxyTargetId ?? item.proxyTargetId,
      proxyTargetCredentialId: input.proxyTargetCredentialId ?? item.proxyTargetCredentialId,
      proxyDefaultRuleEffect: input.proxyDefaultRuleEffect ?? item.proxyDefaultRuleEffect,
      proxyActive: input.proxyActive ?? item.proxyActive,
      proxyMaxRequestsPerMinute: input.proxyMaxRequestsPerMinute ?? item.proxyMaxRequestsPerMinute,
      proxyMaxRequestsPerDay: input.proxyMaxRequestsPerDay ?? item.proxyMaxRequestsPerDay,
      proxyTimeouts: input.proxyTimeouts === null ? undefined : (input.proxyTimeouts ?? item.proxyTimeouts),
      updatedAt: deps.now().toISOString(),
    };
    const changed = (field: string) => updated[field as keyof ProxyItem] !== item[field as keyof ProxyItem];
    // Only references this PUT changes are checked: a proxy whose credential was revoked can still
    // be renamed or deactivated, and is repaired by pointing it at a new credential.
    const refs = await checkReferences(deps, clientId, item.proxyRegion, updated, changed);
    if (changed('proxyAlias')) {
      await checkAliasFree(cell, updated.proxyAlias, proxyId);
      await claimAlias(deps, updated.proxyAlias, { clientId, proxyId, proxyRegion: item.proxyRegion });
      claimed = { cell, alias: updated.proxyAlias, previous: item.proxyAlias };
    } else claimed = undefined;
    const dropped = refs.map(({ field }) =>
      field === 'proxyTargetId'
        ? keys.target(clientId, item.proxyTargetId)
        : keys.credential(clientId, String(item[field as keyof ProxyItem])),
    );
    await commitReplace(
      cell,
      clientId,
      keys.proxy(clientId, proxyId),
      {
        before: item,
        after: updated,
        proxyIds: [proxyId],
        extra: [...(await startUsing(cell, clientId, refs)), ...(await stopUsing(cell, dropped))],
      },
      deps.now(),
    );
    return view(updated);
  });
  try {
    const answer = await updatedView;
    // Renamed or unaliased: the old alias is free for any proxy, in any region.
    if (claimed?.previous) await releaseAlias(deps, claimed.previous, proxyId).catch(() => undefined);
    return answer;
  } catch (error) {
    if (claimed) await releaseUnused(deps, claimed.cell, clientId, proxyId, claimed.alias);
    throw error;
  }
}

/**
 * Deletes a proxy: its item and its snapshot in one transaction (the data plane answers 401 from
 * then on), then its rules and meters (unreachable once the proxy is gone; a failure there leaves nothing
 * visible or usable).
 */
export async function deleteProxy(deps: Deps, caller: Caller, clientId: string, proxyId: string) {
  let alias: string | undefined;
  const cell = await retryOnConflict(clientId, async () => {
    await authorizeClient(deps, caller, clientId, 'admin');
    const { item, cell } = await loadProxy(deps, clientId, proxyId);
    alias = item.proxyAlias;
    const key = keys.proxy(clientId, proxyId);
    await commitChange(
      cell,
      clientId,
      {
        writes: [
          txDelete(cell, key, versionOf(item as unknown as Item)),
          ...(await stopUsing(cell, [
            keys.credential(clientId, item.proxyProxyCredentialId),
            keys.target(clientId, item.proxyTargetId),
            keys.credential(clientId, item.proxyTargetCredentialId),
          ])),
        ],
        after: [[key, null]],
        proxyIds: [],
        deletedProxyId: proxyId,
      },
      deps.now(),
    );
    return cell;
  });
  await releaseAlias(deps, alias, proxyId).catch(() => undefined);
  const rules = await queryPrefix<Key>(cell, keys.rulesPrefix(clientId, 'proxy', proxyId));
  const meters = await queryPrefix<Key>(cell, keys.metersPrefix(clientId, 'proxy', proxyId));
  await deleteItems(cell, [
    ...[...rules, ...meters].map((r) => ({ pk: r.pk, sk: r.sk })),
    keys.proxySnapshotSeq(proxyId),
  ]);
}

function encodeQuery(query: SimulateInput['query']): string {
  if (query === undefined) return '';
  if (typeof query === 'string') return query.replace(/^\?/, '');
  const parts: string[] = [];
  for (const [name, value] of Object.entries(query))
    for (const v of Array.isArray(value) ? value : [value])
      parts.push(`${encodeURIComponent(name)}=${encodeURIComponent(v)}`);
  return parts.join('&');
}

function credentialState(view: { expiresAt?: string } | undefined, now: Date) {
  if (!view) return 'missing';
  if (view.expiresAt && Date.parse(view.expiresAt) <= now.getTime()) return 'expired';
  return 'ok';
}

/**
 * What the data plane would decide for a request on this proxy, and why: the same canonical
 * request builder and the same evaluator, on the proxy's current snapshot (the very item the data
 * plane reads). A path the data plane would refuse is answered with its 400 reason.
 */
export async function simulate(
  deps: Deps,
  caller: Caller,
  clientId: string,
  proxyId: string,
  input: SimulateInput,
) {
  await authorizeClient(deps, caller, clientId, 'user');
  const { cell } = await loadProxy(deps, clientId, proxyId);
  const snapshot = await snapshotOf(cell, proxyId);
  const q = input.path.indexOf('?');
  const rawPath = q >= 0 ? input.path.slice(0, q) : input.path;
  const rawQuery = [q >= 0 ? input.path.slice(q + 1) : '', encodeQuery(input.query)]
    .filter(Boolean)
    .join('&');
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(input.headers ?? {})) headers[name.toLowerCase()] = value;
  let body: string | undefined;
  if (typeof input.body === 'string') body = input.body;
  else if (input.body !== undefined) {
    body = JSON.stringify(input.body);
    headers['content-type'] ??= 'application/json';
  }
  const now = deps.now();
  const common = {
    proxyId,
    proxyActive: snapshot.proxyActive,
    credentials: {
      proxyCredential: credentialState(snapshot.proxyCredential, now),
      targetCredential: credentialState(snapshot.targetCredential, now),
    },
    defaults: {
      proxyDefault: snapshot.proxyDefaultRuleEffect,
      targetDefault: snapshot.target.targetDefaultRuleEffect,
    },
    snapshotVersion: snapshot.version,
  };
  const canonical = canonicalRequest({ method: input.method, rawPath, rawQuery, headers, body });
  if (!canonical.ok) {
    return { decision: 'deny', reason: 'invalid_request', status: 400, message: canonical.reason, ...common };
  }
  const decision = evaluateRules(canonical.value, snapshot.rules, {
    proxyDefault: snapshot.proxyDefaultRuleEffect,
    targetDefault: snapshot.target.targetDefaultRuleEffect,
  });
  const rule =
    decision.reason === 'rule'
      ? { scope: decision.scope, ...snapshot.rules[decision.scope].find((r) => r.ruleId === decision.ruleId) }
      : undefined;
  return {
    decision: decision.effect,
    reason: decision.reason,
    ...(decision.effect === 'deny' ? { status: 403 } : {}),
    rule,
    canonical: {
      method: canonical.value.method,
      path: canonical.value.path,
      query: canonical.value.query,
    },
    ...common,
  };
}

async function snapshotOf(cell: Cell, proxyId: string) {
  const snapshot = await readSnapshot(cell, proxyId);
  if (!snapshot) throw new ConflictError('The proxy has no snapshot yet; try again', 'snapshot_missing');
  return snapshot;
}
