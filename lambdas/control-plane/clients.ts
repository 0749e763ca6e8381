import { randomUUID } from 'node:crypto';
import type { Deps, TableRef } from '../shared/deps.ts';
import { BadRequestError, ForbiddenError, NotFoundError } from '../shared/errors.ts';
import { type Key, keys } from '../storage/keys.ts';
import {
  deleteItem,
  deleteItems,
  getItem,
  type Item,
  publicView,
  putItem,
  queryPrefix,
  queryPrefixPage,
} from '../storage/table.ts';
import {
  MAX_TX_ITEMS,
  retryOnConflict,
  type TxItem,
  transact,
  txCreate,
  txDeleteAny,
  txReplace,
  versionOf,
} from '../storage/transact.ts';
import { cutPage } from './cells.ts';
import type { Caller } from './identity.ts';
import { userExists } from './identity.ts';
import { listAnswer, type PageQuery, pageRequest } from './paging.ts';

/**
 * Clients (tenants) and who may touch them. Members are embedded in the client item, so one
 * strongly consistent read answers "may this caller do this here"; a membership item per user
 * (USER#…/MEMBER#…) serves "which clients are mine". A client a caller is not a member of is a 404,
 * the same answer as a client that does not exist.
 */
export type Role = 'owner' | 'admin' | 'user';
const RANK: Record<Role, number> = { user: 1, admin: 2, owner: 3 };

export interface ClientMember {
  userId: string;
  roles: Role[];
}

export interface Limits {
  requestsPerMinute: number;
  requestsPerDay: number;
}

export interface ClientItem extends Item {
  clientId: string;
  clientName: string;
  clientMembers: ClientMember[];
  configuration: { limits: Limits };
  /** Set when a DELETE began: the client is gone for every route but finishing that DELETE. */
  deleting?: boolean;
  createdAt: string;
  updatedAt: string;
}

export const DEFAULT_LIMITS: Limits = { requestsPerMinute: 600, requestsPerDay: 100_000 };

function topRole(member: ClientMember): Role {
  return member.roles.reduce<Role>((best, r) => (RANK[r] > RANK[best] ? r : best), 'user');
}

/**
 * Loads a client the caller may act on with at least `minRole`. Not a member: 404 (no hint that
 * the client exists). A member with too small a role: 403.
 */
export async function authorizeClient(
  deps: Deps,
  caller: Caller,
  clientId: string,
  minRole: Role,
  options: { deleting?: boolean } = {},
): Promise<ClientItem> {
  const client = await getItem<ClientItem>(deps.home, keys.client(clientId));
  const member = client?.clientMembers.find((m) => m.userId === caller.userId);
  // A client being deleted is gone for everything but finishing its deletion.
  if (!client || !member || (client.deleting && !options.deleting))
    throw new NotFoundError('Client not found');
  if (RANK[topRole(member)] < RANK[minRole])
    throw new ForbiddenError(`This needs the ${minRole} role on the client`);
  return client;
}

function view(client: ClientItem) {
  return publicView(client);
}

async function checkMembers(deps: Deps, members: ClientMember[]) {
  const ids = new Set<string>();
  for (const m of members) {
    if (ids.has(m.userId)) throw new BadRequestError(`User ${m.userId} is listed twice`, 'validation_failed');
    ids.add(m.userId);
  }
  if (!members.some((m) => m.roles.includes('owner')))
    throw new BadRequestError('A client needs at least one owner', 'validation_failed');
  const exists = await Promise.all(members.map((m) => userExists(deps, m.userId)));
  const missing = members.filter((_, i) => !exists[i]).map((m) => m.userId);
  if (missing.length > 0) throw new BadRequestError(`Unknown user(s): ${missing.join(', ')}`, 'unknown_user');
}

/**
 * The membership items (USER#…/MEMBER#…) that a change of the member list touches: new or changed
 * members are put, removed ones deleted.
 */
function membershipWrites(
  deps: Deps,
  clientId: string,
  before: ClientMember[],
  after: ClientMember[],
): TxItem[] {
  const old = new Map(before.map((m) => [m.userId, JSON.stringify(m.roles)]));
  const kept = new Set(after.map((m) => m.userId));
  return [
    ...after
      .filter((m) => old.get(m.userId) !== JSON.stringify(m.roles))
      .map(
        (m): TxItem => ({
          Put: {
            TableName: deps.home.tableName,
            Item: {
              ...keys.membership(m.userId, clientId),
              type: 'Membership',
              clientId,
              userId: m.userId,
              roles: m.roles,
            },
          },
        }),
      ),
    ...before
      .filter((m) => !kept.has(m.userId))
      .map((m) => txDeleteAny(deps.home, keys.membership(m.userId, clientId))),
  ];
}

/**
 * Stores a client item (created, or changed conditional on the version read) with its membership
 * items, in one transaction. The client item's member list is the authority (every route reads it);
 * membership items only index "which clients are mine". A change too big for one transaction (a
 * member list replaced wholesale) writes the client item first and the index after.
 */
async function writeClient(deps: Deps, before: ClientItem | undefined, after: ClientItem) {
  const stored = { ...keys.client(after.clientId), type: 'Client', ...after } as Record<string, unknown>;
  delete stored.version;
  const main = before
    ? txReplace(deps.home, stored as Key & Item, versionOf(before))
    : txCreate(deps.home, stored as Key & Item);
  const index = membershipWrites(deps, after.clientId, before?.clientMembers ?? [], after.clientMembers);
  if (index.length < MAX_TX_ITEMS) return transact(deps.home, [main, ...index]);
  await transact(deps.home, [main]);
  for (let i = 0; i < index.length; i += 25) await transact(deps.home, index.slice(i, i + 25));
}

export async function createClient(
  deps: Deps,
  caller: Caller,
  input: { clientName: string; clientMembers?: ClientMember[] },
) {
  const members = [...(input.clientMembers ?? [])];
  const self = members.find((m) => m.userId === caller.userId);
  if (self) {
    if (!self.roles.includes('owner')) self.roles = [...self.roles, 'owner'];
  } else {
    members.unshift({ userId: caller.userId, roles: ['owner'] });
  }
  await checkMembers(deps, members);
  const now = deps.now().toISOString();
  const client: ClientItem = {
    clientId: randomUUID(),
    clientName: input.clientName,
    clientMembers: members,
    configuration: { limits: { ...DEFAULT_LIMITS } },
    createdAt: now,
    updatedAt: now,
  };
  await writeClient(deps, undefined, client);
  return view(client);
}

export async function listClients(deps: Deps, caller: Caller, query?: PageQuery) {
  const where = keys.membershipsPrefix(caller.userId);
  const page = pageRequest(query, where.skPrefix);
  const { items: memberships, nextToken } = cutPage(
    await queryPrefixPage<Item>(deps.home, where, page),
    page.limit,
  );
  const clients = await Promise.all(
    memberships.map((m) => getItem<ClientItem>(deps.home, keys.client(String(m.clientId)))),
  );
  // Membership items trail the client item; the embedded member list is the authority (a page
  // may therefore hold fewer clients than memberships).
  return listAnswer(
    'clients',
    clients
      .filter((c): c is ClientItem => !!c && c.clientMembers.some((m) => m.userId === caller.userId))
      .map(view),
    nextToken,
  );
}

export async function getClient(deps: Deps, caller: Caller, clientId: string) {
  return view(await authorizeClient(deps, caller, clientId, 'user'));
}

/**
 * Renames (admin) and/or changes members (owner only). Conditional on the version read, with the
 * membership items in the same transaction; a concurrent change re-runs the whole step, authorisation
 * included, so a member removed meanwhile is refused, and a removal is never undone by a rename.
 */
export async function updateClient(
  deps: Deps,
  caller: Caller,
  clientId: string,
  input: { clientName?: string; clientMembers?: ClientMember[] },
) {
  const minRole: Role = input.clientMembers ? 'owner' : 'admin';
  if (input.clientMembers) await checkMembers(deps, input.clientMembers);
  return retryOnConflict(clientId, async () => {
    const client = await authorizeClient(deps, caller, clientId, minRole);
    const updated: ClientItem = {
      ...client,
      clientName: input.clientName ?? client.clientName,
      clientMembers: input.clientMembers ?? client.clientMembers,
      updatedAt: deps.now().toISOString(),
    };
    await writeClient(deps, client, updated);
    return view(updated);
  });
}

export async function configureClient(
  deps: Deps,
  caller: Caller,
  clientId: string,
  input: { limits: Partial<Limits> },
) {
  return retryOnConflict(clientId, async () => {
    const client = await authorizeClient(deps, caller, clientId, 'admin');
    const updated: ClientItem = {
      ...client,
      configuration: { ...client.configuration, limits: { ...client.configuration.limits, ...input.limits } },
      updatedAt: deps.now().toISOString(),
    };
    await writeClient(deps, client, updated);
    return updated.configuration;
  });
}

/**
 * Deletes a client and everything in it, revoking first:
 *  1. each cell gets the client's deletion mark, which every snapshot-writing transaction checks,
 *     so no proxy of the client can be created or rebuilt any more;
 *  2. every proxy snapshot goes: traffic stops;
 *  3. only then is the client item marked `deleting` (every route but this DELETE answers 404);
 *  4. every item of the client, its memberships, and the client item last.
 * A failure midway leaves a client that serves nothing and that a retried DELETE finishes.
 * Request-log records and telemetry stay (they age out by TTL).
 */
export async function deleteClient(deps: Deps, caller: Caller, clientId: string) {
  await authorizeClient(deps, caller, clientId, 'owner', { deleting: true });
  // Locally every region (and the home table) is one table: visit each table once.
  const distinct = <T extends TableRef>(tables: T[]) => [
    ...new Map(tables.map((t) => [t.tableName, t])).values(),
  ];
  for (const cell of distinct(Object.values(deps.cells)))
    await putItem(cell, { ...keys.clientCell(clientId), type: 'ClientCell', clientId, deleting: true });
  for (const cell of distinct(Object.values(deps.cells))) {
    const proxies = await queryPrefix<Item>(cell, keys.proxiesPrefix(clientId));
    await deleteItems(
      cell,
      proxies.flatMap((p) => [
        keys.proxySnapshot(String(p.proxyId)),
        keys.proxySnapshotSeq(String(p.proxyId)),
      ]),
    );
  }
  const client = await retryOnConflict(clientId, async () => {
    const client = await authorizeClient(deps, caller, clientId, 'owner', { deleting: true });
    if (!client.deleting) await writeClient(deps, client, { ...client, deleting: true });
    return client;
  });
  for (const table of distinct<TableRef>([...Object.values(deps.cells), deps.home])) {
    const items = await queryPrefix<Item & { pk: string; sk: string }>(table, {
      pk: keys.client(clientId).pk,
    });
    await deleteItems(
      table,
      items.filter((i) => i.sk !== 'CLIENT' && i.sk !== 'CELLSTATE').map((i) => ({ pk: i.pk, sk: i.sk })),
    );
  }
  await deleteItems(
    deps.home,
    client.clientMembers.map((m) => keys.membership(m.userId, clientId)),
  );
  await deleteItem(deps.home, keys.client(clientId));
}
