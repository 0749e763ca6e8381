import type { Rule } from '../rules/types.ts';
import type { Cell } from '../shared/deps.ts';
import { NotFoundError } from '../shared/errors.ts';
import {
  type CredentialItem,
  type MeterItem,
  normalizeAuthType,
  type ProxyItem,
  type RuleItem,
  type TargetItem,
} from './items.ts';
import { type Key, keys } from './keys.ts';
import type {
  MeterView,
  ProxyCredentialView,
  ProxySnapshot,
  TargetCredentialView,
} from './snapshot-types.ts';
import { getItem, type Item, queryPrefix } from './table.ts';
import { TxConflict, type TxItem, transact, txDeleteAny, txReplace, versionOf } from './transact.ts';

/**
 * The per-proxy hot-path snapshot (keys.proxySnapshot), the one item the data plane reads per
 * request, is a materialised view of source items (proxy, target, both credentials, the rules of
 * the four scopes). It changes only **in the same transaction** as the sources it is built from
 * ({@link commitChange}), so the data plane can never read a view more permissive than the sources
 * the Core API shows, at any instant, after any failed step or crash.
 *
 * Why a built view cannot go stale under concurrency:
 *  1. A change reads the current snapshot of each affected proxy *first*, then the sources, then
 *     writes source items and snapshots in one transaction, each snapshot conditional on the version
 *     it read. Every change that affects a proxy writes its snapshot, so two changes affecting one
 *     proxy are serialised by that item: if another change committed after our snapshot read, our
 *     transaction is cancelled and re-run on fresh reads (storage/transact.ts retryOnConflict).
 *  2. "Which proxies does a change of X affect" is itself protected: a proxy that starts or stops
 *     using a credential or target bumps that item's version in its own transaction (txTouch), and
 *     every change of X is conditional on X's version, so a change of X either sees the new proxy
 *     or is cancelled.
 *  3. A deleted proxy's snapshot is deleted in the deleting transaction; snapshot writes are
 *     conditional on the version read, which a missing item never has, so nothing brings it back.
 *  4. Deleting a client first marks it deleted in every cell (keys.clientCell); every change that
 *     writes a snapshot checks that mark in its transaction, so none commits after the mark.
 */
export type SnapshotRules = ProxySnapshot['rules'];

/** Source items as a pending change will leave them: reads fall through to the table. */
class Sources {
  readonly #pending = new Map<string, Item | null>();
  readonly #cell: Cell;
  constructor(cell: Cell, after: Array<[Key, Item | null]>) {
    this.#cell = cell;
    for (const [key, item] of after) this.#pending.set(`${key.pk}\u0000${key.sk}`, item);
  }

  async get<T>(key: Key): Promise<T | undefined> {
    const pending = this.#pending.get(`${key.pk}\u0000${key.sk}`);
    if (pending !== undefined) return (pending ?? undefined) as T | undefined;
    return getItem<T>(this.#cell, key);
  }

  async query<T>(where: { pk: string; skPrefix: string }): Promise<T[]> {
    const stored = await queryPrefix<T & Key>(this.#cell, where);
    const out = new Map<string, T>();
    for (const item of stored) out.set(item.sk, item);
    for (const [id, item] of this.#pending) {
      const [pk, sk] = id.split('\u0000') as [string, string];
      if (pk !== where.pk || !sk.startsWith(where.skPrefix)) continue;
      if (item === null) out.delete(sk);
      else out.set(sk, item as T);
    }
    return [...out.values()];
  }
}

function ruleOf(item: RuleItem): Rule {
  const rule: Rule = { ruleId: item.ruleId, effect: item.effect, priority: item.priority };
  if (item.methods?.length) rule.methods = item.methods;
  if (item.path) rule.path = item.path;
  if (item.headerChecks?.length) rule.headerChecks = item.headerChecks;
  if (item.queryChecks?.length) rule.queryChecks = item.queryChecks;
  if (item.body?.length) rule.body = item.body;
  if (item.regexFlags) rule.regexFlags = item.regexFlags;
  return rule;
}

function meterOf(item: MeterItem): MeterView {
  const { meterId, meterName, meterType, valuePath, methods, pathPattern, window, limit, action } = item;
  const meter: MeterView = { meterId, scope: item.parentType, meterName, meterType, window, limit, action };
  if (valuePath) meter.valuePath = valuePath;
  if (methods?.length) meter.methods = methods;
  if (pathPattern) meter.pathPattern = pathPattern;
  return meter;
}

function proxyCredentialView(c: CredentialItem | undefined): ProxyCredentialView | undefined {
  if (c?.credentialType !== 'proxy') return undefined;
  const view: ProxyCredentialView = {
    credentialId: c.credentialId,
    credentialAuthType: normalizeAuthType(c.credentialAuthType),
  };
  if (c.secretHash) view.secretHash = c.secretHash;
  if (typeof c.credentialSettings.prefix === 'string') view.prefix = c.credentialSettings.prefix;
  if (c.credentialKeyLocations?.length) view.credentialKeyLocations = c.credentialKeyLocations;
  if (c.credentialAuthType === 'jwtVerify') {
    const s = c.credentialSettings as { jwksUrl?: string; issuer?: string; audience?: string };
    view.jwt = { jwksUrl: s.jwksUrl, issuer: s.issuer, audience: s.audience, sealedSecret: c.sealedSecret };
  }
  if (c.secretRevision !== undefined) view.secretRevision = c.secretRevision;
  if (c.expiresAt) view.expiresAt = c.expiresAt;
  return view;
}

function targetCredentialView(c: CredentialItem | undefined): TargetCredentialView | undefined {
  if (c?.credentialType !== 'target') return undefined;
  const view: TargetCredentialView = {
    credentialId: c.credentialId,
    credentialAuthType: normalizeAuthType(c.credentialAuthType),
  };
  if (c.sealedSecret) view.sealedSecret = c.sealedSecret;
  if (c.secretRevision !== undefined) view.secretRevision = c.secretRevision;
  if (c.expiresAt) view.expiresAt = c.expiresAt;
  return view;
}

/** Reads every source of one proxy's snapshot (strongly consistent) and assembles it. */
async function assembleSnapshot(
  sources: Sources,
  proxy: ProxyItem,
  version: number,
  builtAt: string,
): Promise<ProxySnapshot> {
  const { clientId } = proxy;
  const rulesOf = async (scope: 'credential' | 'target' | 'proxy', parentId: string) =>
    (await sources.query<RuleItem>(keys.rulesPrefix(clientId, scope, parentId))).map(ruleOf);
  const metersOf = async (scope: 'credential' | 'proxy', parentId: string) =>
    (await sources.query<MeterItem>(keys.metersPrefix(clientId, scope, parentId))).map(meterOf);
  const [target, proxyCred, targetCred, pcRules, tcRules, pRules, tRules, pMeters, tcMeters] =
    await Promise.all([
      sources.get<TargetItem>(keys.target(clientId, proxy.proxyTargetId)),
      sources.get<CredentialItem>(keys.credential(clientId, proxy.proxyProxyCredentialId)),
      sources.get<CredentialItem>(keys.credential(clientId, proxy.proxyTargetCredentialId)),
      rulesOf('credential', proxy.proxyProxyCredentialId),
      rulesOf('credential', proxy.proxyTargetCredentialId),
      rulesOf('proxy', proxy.proxyId),
      rulesOf('target', proxy.proxyTargetId),
      metersOf('proxy', proxy.proxyId),
      metersOf('credential', proxy.proxyTargetCredentialId),
    ]);
  const proxyCredential = proxyCredentialView(proxyCred);
  const targetCredential = targetCredentialView(targetCred);
  const snapshot: ProxySnapshot = {
    proxyId: proxy.proxyId,
    ...(proxy.proxyAlias ? { proxyAlias: proxy.proxyAlias } : {}),
    clientId,
    proxyRegion: proxy.proxyRegion,
    // A proxy whose target is gone (a race with a target delete) serves nothing.
    proxyActive: proxy.proxyActive && target !== undefined,
    proxyDefaultRuleEffect: proxy.proxyDefaultRuleEffect,
    proxyMaxRequestsPerMinute: proxy.proxyMaxRequestsPerMinute,
    proxyMaxRequestsPerDay: proxy.proxyMaxRequestsPerDay,
    proxyTimeouts: proxy.proxyTimeouts,
    target: target
      ? {
          targetId: target.targetId,
          targetBaseURL: target.targetBaseURL,
          targetDefaultRuleEffect: target.targetDefaultRuleEffect,
        }
      : { targetId: proxy.proxyTargetId, targetBaseURL: '', targetDefaultRuleEffect: 'deny' },
    rules: {
      proxyCredential: proxyCredential ? pcRules : [],
      targetCredential: targetCredential ? tcRules : [],
      proxy: pRules,
      target: target ? tRules : [],
    },
    version,
    builtAt,
  };
  if (proxyCredential) snapshot.proxyCredential = proxyCredential;
  if (targetCredential) snapshot.targetCredential = targetCredential;
  const meters = [...pMeters, ...(targetCredential ? tcMeters : [])];
  if (meters.length > 0) snapshot.meters = meters;
  return snapshot;
}

export interface Change {
  /** The source writes, each already conditional on the version it was read at. */
  writes: TxItem[];
  /** Every source item the writes change, as it will be after them (null: deleted). */
  after: Array<[Key, Item | null]>;
  /** Proxies whose snapshot depends on what changes (found after reading the changed items). */
  proxyIds: string[];
  /** A proxy this change creates: its snapshot is created with it. */
  createdProxyId?: string;
  /** A proxy this change deletes: its snapshot goes with it. */
  deletedProxyId?: string;
}

/** "This client is not being deleted", checked by every transaction that writes a snapshot. */
function clientAlive(cell: Cell, clientId: string): TxItem {
  return {
    ConditionCheck: {
      TableName: cell.tableName,
      Key: keys.clientCell(clientId),
      ConditionExpression: 'attribute_not_exists(deleting)',
    },
  };
}

/**
 * Commits a change of source items together with every snapshot it affects, in one transaction
 * (see the top of this file for why the result is never stale). Raises TxConflict when a
 * concurrent change got there first (the caller re-reads and retries, see retryOnConflict), and
 * 404 when the client is being deleted.
 */
export async function commitChange(cell: Cell, clientId: string, change: Change, now: Date) {
  const ids = [...new Set(change.proxyIds)].filter((id) => id !== change.deletedProxyId);
  // Snapshots first, sources after: see point 1 above.
  const [current, deleted] = await Promise.all([
    Promise.all(ids.map((id) => readSnapshot(cell, id))),
    change.deletedProxyId ? readSnapshot(cell, change.deletedProxyId) : undefined,
  ]);
  const sources = new Sources(cell, change.after);
  const builtAt = now.toISOString();
  const snapshotWrites: TxItem[] = [];
  await Promise.all(
    ids.map(async (proxyId, i) => {
      const created = proxyId === change.createdProxyId;
      const existing = current[i];
      if (!created && !existing) return; // deleted meanwhile: nothing may bring it back
      const proxy = await sources.get<ProxyItem>(keys.proxy(clientId, proxyId));
      if (!proxy) return;
      const version = created ? 1 : existing!.version + 1;
      const snapshot = await assembleSnapshot(sources, proxy, version, builtAt);
      snapshotWrites.push({
        Put: {
          TableName: cell.tableName,
          Item: { ...keys.proxySnapshot(proxyId), type: 'ProxySnapshot', ...snapshot },
          ...(created
            ? { ConditionExpression: 'attribute_not_exists(pk)' }
            : {
                ConditionExpression: '#version = :snapshotVersion',
                ExpressionAttributeNames: { '#version': 'version' },
                ExpressionAttributeValues: { ':snapshotVersion': existing!.version },
              }),
        },
      });
      snapshotWrites.push(...aliasWrites(cell, snapshot, existing?.proxyAlias));
    }),
  );
  if (change.deletedProxyId) {
    snapshotWrites.push(txDeleteAny(cell, keys.proxySnapshot(change.deletedProxyId)));
    if (deleted?.proxyAlias)
      snapshotWrites.push(aliasDelete(cell, deleted.proxyAlias, change.deletedProxyId));
  }
  const items = [clientAlive(cell, clientId), ...change.writes, ...snapshotWrites];
  try {
    await transact(cell, items);
  } catch (error) {
    if (error instanceof TxConflict && error.codes[0] === 'ConditionalCheckFailed')
      throw new NotFoundError('Client not found');
    throw error;
  }
}

/**
 * Replaces one source item read as `before` with `before` + `after` (fields set to undefined are
 * dropped), conditional on the version read, together with the snapshots of `proxyIds` and any
 * `extra` writes (see commitChange).
 */
export async function commitReplace(
  cell: Cell,
  clientId: string,
  key: Key,
  change: { before: object; after: object; proxyIds: string[]; extra?: TxItem[] },
  now: Date,
) {
  const before = change.before as Item;
  const stored = { ...before, ...change.after, ...key } as Key & Item;
  delete stored.version;
  await commitChange(
    cell,
    clientId,
    {
      writes: [txReplace(cell, stored, versionOf(before)), ...(change.extra ?? [])],
      after: [[key, stored]],
      proxyIds: change.proxyIds,
    },
    now,
  );
}

/** "The alias item is absent or this proxy's": the condition that keeps aliases unique in a cell. */
function aliasOwned(proxyId: string) {
  return {
    ConditionExpression: 'attribute_not_exists(pk) OR proxyId = :aliasOwner',
    ExpressionAttributeValues: { ':aliasOwner': proxyId },
  };
}

function aliasDelete(cell: Cell, alias: string, proxyId: string): TxItem {
  return { Delete: { TableName: cell.tableName, Key: keys.aliasSnapshot(alias), ...aliasOwned(proxyId) } };
}

/**
 * The alias copy of a snapshot (keys.aliasSnapshot), so a request naming the alias is still one
 * GetItem: written with the snapshot, and the copy under a previous alias deleted, in the same
 * transaction. A copy that another proxy owns cancels the transaction (the alias is taken).
 */
function aliasWrites(cell: Cell, snapshot: ProxySnapshot, previousAlias: string | undefined): TxItem[] {
  const writes: TxItem[] = [];
  if (snapshot.proxyAlias)
    writes.push({
      Put: {
        TableName: cell.tableName,
        Item: { ...keys.aliasSnapshot(snapshot.proxyAlias), type: 'ProxySnapshot', ...snapshot },
        ...aliasOwned(snapshot.proxyId),
      },
    });
  if (previousAlias && previousAlias !== snapshot.proxyAlias)
    writes.push(aliasDelete(cell, previousAlias, snapshot.proxyId));
  return writes;
}

/** Reads the proxy id that owns an alias in this cell (the Core API's uniqueness check). */
export async function aliasOwner(cell: Cell, alias: string): Promise<string | undefined> {
  return (await getItem<{ proxyId: string }>(cell, keys.aliasSnapshot(alias)))?.proxyId;
}

/** Reads a proxy's current snapshot (strongly consistent), as the data plane does. */
export async function readSnapshot(cell: Cell, proxyId: string): Promise<ProxySnapshot | undefined> {
  return getItem<ProxySnapshot>(cell, keys.proxySnapshot(proxyId));
}
