import type { Cell, Deps } from '../shared/deps.ts';
import { BadRequestError } from '../shared/errors.ts';
import type { ProxyItem } from '../storage/items.ts';
import { type Key, keys } from '../storage/keys.ts';
import { getItem, queryPrefix, queryPrefixPage } from '../storage/table.ts';
import { encodeCursor, type PageQuery, pageRequest } from './paging.ts';

/**
 * Data residency: a credential, target or proxy (and its rules) lives in the table of the cell of
 * its region. Finding one by id means asking the client's partition of every served cell, in
 * parallel (a deployment serves few regions). Locally all regions share one table, so an item is
 * only taken from the cell its own region names.
 */
export function cellFor(deps: Deps, region: string, field: string): Cell {
  const cell = deps.cells[region];
  if (!cell)
    throw new BadRequestError(
      `${field}: region ${JSON.stringify(region)} is not served by this deployment (served: ${Object.keys(deps.cells).join(', ')})`,
      'unknown_region',
    );
  return cell;
}

/** Finds an item by key in whichever cell holds it (the one its `regionField` names). */
export async function findInCells<T extends object>(
  deps: Deps,
  key: Key,
  regionField: keyof T & string,
): Promise<{ item: T; cell: Cell } | undefined> {
  const cells = Object.values(deps.cells);
  const found = await Promise.all(cells.map((cell) => getItem<T>(cell, key)));
  for (let i = 0; i < cells.length; i++) {
    const item = found[i];
    const cell = cells[i]!;
    if (item && (item as Record<string, unknown>)[regionField] === cell.region) return { item, cell };
  }
  return undefined;
}

/**
 * One page of the items under a key prefix of the client's partition, across all cells: each cell
 * is read from the same point on, the answers are merged in sort-key order and cut at the limit, so
 * the next page starts right after the last item answered, whichever cell held it.
 */
export async function pageInCells<T extends object>(
  deps: Deps,
  where: { pk: string; skPrefix: string },
  regionField: keyof T & string,
  query: PageQuery | undefined,
): Promise<{ items: T[]; nextToken?: string }> {
  const page = pageRequest(query, where.skPrefix);
  const cells = Object.values(deps.cells);
  const lists = await Promise.all(
    cells.map((cell) =>
      queryPrefixPage<T>(
        cell,
        where,
        page,
        (it) => (it as Record<string, unknown>)[regionField] === cell.region,
      ),
    ),
  );
  return cutPage(lists.flat(), page.limit);
}

/** Sorts by sort key, keeps `limit` items and names the last one when more follow. */
export function cutPage<T extends object>(items: T[], limit: number): { items: T[]; nextToken?: string } {
  const sk = (it: T) => String((it as Record<string, unknown>).sk);
  const sorted = [...items].sort((a, b) => (sk(a) < sk(b) ? -1 : sk(a) > sk(b) ? 1 : 0));
  const kept = sorted.slice(0, limit);
  return sorted.length > limit
    ? { items: kept, nextToken: encodeCursor('after', sk(kept[kept.length - 1]!)) }
    : { items: kept };
}

/**
 * How many proxies one credential or target may serve: a change of it rebuilds every one of their
 * snapshots in the same transaction as the change itself, and a transaction holds at most 100
 * actions (storage/transact.ts).
 */
export const MAX_PROXIES_PER_RESOURCE = 90;

/** The proxies of a cell that satisfy `uses` (which use a credential, either side, or a target). */
export async function proxiesUsing(
  cell: Cell,
  clientId: string,
  uses: (p: ProxyItem) => boolean,
): Promise<ProxyItem[]> {
  return (await queryPrefix<ProxyItem>(cell, keys.proxiesPrefix(clientId))).filter(
    (p) => p.proxyRegion === cell.region && uses(p),
  );
}
