import { DeleteCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import type { TableRef } from '../shared/deps.ts';
import type { Key } from './keys.ts';
import { getItem, type Item, isConditionFailure, putItem } from './table.ts';

/**
 * Claims in the home table: one item per name that must be unique across every region (a proxy
 * secret's hash per client, a proxy alias), owned by the id of what uses it. The claim lives in the
 * home table and its owner in its region's table, so the two cannot change in one transaction; a
 * claim whose owner does not exist (a crash between the two writes, or a release that failed) is
 * taken over once it is older than the grace, which covers a creation still in flight. Nothing on
 * the data plane reads claims: an orphaned one can only refuse a name, never let anything in.
 */
export interface HomeClaim {
  key: Key;
  /** The claim's attributes besides the key; `owner` names the field holding the owner's id. */
  item: Record<string, unknown>;
  owner: string;
  /** True when the claim's current holder still exists (its claim stands whatever its age). */
  holderLive(held: Item): Promise<boolean>;
  /** The error a claim held by another live owner raises (a 409). */
  taken(): Error;
  graceMs: number;
  now: Date;
}

/** Takes the claim, or keeps it if it is already ours; another live (or recent) holder: `taken()`. */
export async function claimInHome(home: TableRef, claim: HomeClaim): Promise<void> {
  const mine = String(claim.item[claim.owner]);
  const item = { ...claim.key, ...claim.item, claimedAt: claim.now.toISOString() };
  try {
    await putItem(home, item, { ifAbsent: true });
    return;
  } catch (error) {
    if (!isConditionFailure(error)) throw error;
  }
  const held = await getItem<Item>(home, claim.key);
  const heldBy = held ? String(held[claim.owner]) : undefined;
  if (held && heldBy !== mine) {
    const age = claim.now.getTime() - Date.parse(String(held.claimedAt ?? '1970-01-01T00:00:00Z'));
    if (age < claim.graceMs || (await claim.holderLive(held))) throw claim.taken();
  }
  // Ours already (a retry), or orphaned: take it over, unless someone else just did.
  try {
    await home.ddb.send(
      new PutCommand({
        TableName: home.tableName,
        Item: item,
        ConditionExpression: 'attribute_not_exists(pk) OR #owner = :held',
        ExpressionAttributeNames: { '#owner': claim.owner },
        ExpressionAttributeValues: { ':held': heldBy ?? mine },
      }),
    );
  } catch (error) {
    if (isConditionFailure(error)) throw claim.taken();
    throw error;
  }
}

/** Releases a claim, only if `owner` still holds it. */
export async function releaseInHome(home: TableRef, key: Key, owner: string, ownerId: string): Promise<void> {
  try {
    await home.ddb.send(
      new DeleteCommand({
        TableName: home.tableName,
        Key: key,
        ConditionExpression: '#owner = :mine',
        ExpressionAttributeNames: { '#owner': owner },
        ExpressionAttributeValues: { ':mine': ownerId },
      }),
    );
  } catch (error) {
    if (!isConditionFailure(error)) throw error;
  }
}
