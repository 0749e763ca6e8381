import { DeleteCommand, PutCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import type { Rule } from '../rules/types.ts';
import type { Cell } from '../shared/deps.ts';
import {
  type CredentialItem,
  normalizeAuthType,
  type ProxyItem,
  type RuleItem,
  type TargetItem,
} from './items.ts';
import { keys } from './keys.ts';
import type { ProxyCredentialView, ProxySnapshot, TargetCredentialView } from './snapshot-types.ts';
import { getItem, isConditionFailure, queryPrefix } from './table.ts';

/**
 * Builds and writes the per-proxy hot-path snapshot (keys.proxySnapshot), the one item the data
 * plane reads per request. Called by the Core API *after* every source write that changes anything
 * a snapshot holds, and awaited before the API call answers.
 *
 * Consistency without transactions:
 *  1. Every rebuild first draws a ticket from an atomic per-proxy counter (UpdateItem ADD on
 *     keys.proxySnapshotSeq), then reads every source item with strongly consistent reads, then
 *     writes the snapshot with `version = ticket` under the condition `version < ticket`. Tickets are
 *     totally ordered, and a rebuild's reads happen after its ticket was drawn, so a rebuild with a
 *     higher ticket has seen every source write a lower-ticket rebuild saw (and more).
 *  2. A source write W is followed by a rebuild R drawing ticket m, so R sees W. R's conditional
 *     write either succeeds, or fails because a snapshot with a version > m is already stored — and
 *     that one also saw W. Versions only grow, so once the API call that made W returns, every
 *     snapshot the data plane can read reflects W (a deleted credential is gone from it, a new rule
 *     is in it). A stale rebuild can never overwrite a newer one.
 *  3. Deletion cannot be undone by a late stale rebuild: only a proxy's first build may create the
 *     snapshot item (condition `attribute_not_exists`), and it runs before the proxy item exists, so
 *     no other writer can know the proxy yet. Every later rebuild requires the item to exist. After
 *     a proxy's snapshot is deleted, nothing can bring it back. Proxy creation then rebuilds once
 *     more after writing the proxy item, so a change that raced with the creation is not lost.
 *  4. Callers find the proxies to rebuild with a strongly consistent query *after* their own write
 *     (and a proxy write rebuilds its proxy after writing it): both sides write, then read, in the
 *     same partition, so of two concurrent changes (a proxy repointed at a credential while the
 *     credential changes) at least one rebuild sees both.
 */
export type SnapshotRules = ProxySnapshot['rules'];

async function drawTicket(cell: Cell, proxyId: string): Promise<number> {
  const out = await cell.ddb.send(
    new UpdateCommand({
      TableName: cell.tableName,
      Key: keys.proxySnapshotSeq(proxyId),
      UpdateExpression: 'ADD #seq :one SET #type = :type',
      ExpressionAttributeNames: { '#seq': 'seq', '#type': 'type' },
      ExpressionAttributeValues: { ':one': 1, ':type': 'SnapshotSeq' },
      ReturnValues: 'UPDATED_NEW',
    }),
  );
  return Number(out.Attributes?.seq);
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

function proxyCredentialView(c: CredentialItem | undefined): ProxyCredentialView | undefined {
  if (c?.credentialType !== 'proxy') return undefined;
  const view: ProxyCredentialView = {
    credentialId: c.credentialId,
    credentialAuthType: normalizeAuthType(c.credentialAuthType),
  };
  if (c.secretHash) view.secretHash = c.secretHash;
  if (typeof c.credentialSettings.prefix === 'string') view.prefix = c.credentialSettings.prefix;
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
export async function buildSnapshot(
  cell: Cell,
  proxy: ProxyItem,
  version: number,
  builtAt: string,
): Promise<ProxySnapshot> {
  const { clientId } = proxy;
  const rulesOf = async (scope: 'credential' | 'target' | 'proxy', parentId: string) =>
    (await queryPrefix<RuleItem>(cell, keys.rulesPrefix(clientId, scope, parentId))).map(ruleOf);
  const [target, proxyCred, targetCred, pcRules, tcRules, pRules, tRules] = await Promise.all([
    getItem<TargetItem>(cell, keys.target(clientId, proxy.proxyTargetId)),
    getItem<CredentialItem>(cell, keys.credential(clientId, proxy.proxyProxyCredentialId)),
    getItem<CredentialItem>(cell, keys.credential(clientId, proxy.proxyTargetCredentialId)),
    rulesOf('credential', proxy.proxyProxyCredentialId),
    rulesOf('credential', proxy.proxyTargetCredentialId),
    rulesOf('proxy', proxy.proxyId),
    rulesOf('target', proxy.proxyTargetId),
  ]);
  const proxyCredential = proxyCredentialView(proxyCred);
  const targetCredential = targetCredentialView(targetCred);
  const snapshot: ProxySnapshot = {
    proxyId: proxy.proxyId,
    clientId,
    proxyRegion: proxy.proxyRegion,
    // A proxy whose target is gone (a race with a target delete) serves nothing.
    proxyActive: proxy.proxyActive && target !== undefined,
    proxyDefaultRuleEffect: proxy.proxyDefaultRuleEffect,
    proxyMaxRequestsPerMinute: proxy.proxyMaxRequestsPerMinute,
    proxyMaxRequestsPerDay: proxy.proxyMaxRequestsPerDay,
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
  return snapshot;
}

/**
 * (Re)builds one proxy's snapshot. `initial` is the proxy being created, before its item is
 * written: only that build may create the snapshot item. Answers the version written, or undefined
 * when a newer snapshot was already there or the proxy is gone.
 */
export async function rebuildSnapshot(
  cell: Cell,
  clientId: string,
  proxyId: string,
  now: Date,
  initial?: ProxyItem,
): Promise<number | undefined> {
  const ticket = await drawTicket(cell, proxyId);
  const proxy = initial ?? (await getItem<ProxyItem>(cell, keys.proxy(clientId, proxyId)));
  if (!proxy) return undefined;
  const snapshot = await buildSnapshot(cell, proxy, ticket, now.toISOString());
  try {
    await cell.ddb.send(
      new PutCommand({
        TableName: cell.tableName,
        Item: { ...keys.proxySnapshot(proxyId), type: 'ProxySnapshot', ...snapshot },
        ConditionExpression: initial
          ? 'attribute_not_exists(pk)'
          : 'attribute_exists(pk) AND #version < :version',
        ExpressionAttributeNames: initial ? undefined : { '#version': 'version' },
        ExpressionAttributeValues: initial ? undefined : { ':version': ticket },
      }),
    );
    return ticket;
  } catch (error) {
    if (isConditionFailure(error)) return undefined;
    throw error;
  }
}

/** Rebuilds the snapshots of several proxies of one cell, a few at a time. */
export async function rebuildSnapshots(cell: Cell, clientId: string, proxyIds: string[], now: Date) {
  for (let i = 0; i < proxyIds.length; i += 8) {
    await Promise.all(proxyIds.slice(i, i + 8).map((id) => rebuildSnapshot(cell, clientId, id, now)));
  }
}

/** Deletes a proxy's snapshot (the data plane answers 401 from the next request) and its counter. */
export async function deleteSnapshot(cell: Cell, proxyId: string) {
  await cell.ddb.send(new DeleteCommand({ TableName: cell.tableName, Key: keys.proxySnapshot(proxyId) }));
  await cell.ddb.send(new DeleteCommand({ TableName: cell.tableName, Key: keys.proxySnapshotSeq(proxyId) }));
}

/** Reads a proxy's current snapshot (strongly consistent), as the data plane does. */
export async function readSnapshot(cell: Cell, proxyId: string): Promise<ProxySnapshot | undefined> {
  return getItem<ProxySnapshot>(cell, keys.proxySnapshot(proxyId));
}
