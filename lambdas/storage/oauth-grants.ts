import { DeleteCommand, PutCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import {
  credentialContext,
  type DataKeyCache,
  openSecret,
  type SealedSecret,
  sealSecret,
} from '../crypto/envelope.ts';
import type { Cell } from '../shared/deps.ts';
import { keys } from './keys.ts';
import { getItem, isConditionFailure } from './table.ts';

/**
 * The tokens an oauth2 `authorization_code` credential got from the user's consent (keys.ts
 * pattern 22): one item per credential in its cell's table, apart from the credential and the
 * snapshot, so a refresh writes only here and the hot path stays one read.
 *
 * The tokens are sealed like every secret, under the context { clientId, credentialId:
 * `<id>#grant`, secretRevision: `<version>` }: a blob copied onto another credential, or an older
 * version restored (a refresh token the provider already rotated away), does not open.
 *
 * Guarantees:
 *  - `secretRevision` names the credential secret the consent was given for: a grant of an older
 *    secret (client id or scopes replaced since) is ignored by the proxy;
 *  - writes are conditional on `version`: a rotated refresh token is never overwritten by a stale
 *    one, and a grant deleted with its credential is never written back by a refresh in flight;
 *  - one refresher at a time across every proxy instance: a refresh first takes a short lease
 *    (`leaseUntil`), conditional on the version it read and on no live lease. Providers that rotate
 *    refresh tokens refuse the old one after one use, so two refreshers would lose the grant.
 */
export interface GrantTokens {
  refreshToken?: string;
  accessToken?: string;
  /** Epoch ms at which the access token expires. */
  accessExpiresAt?: number;
  /** Epoch ms at which it was fetched (its refresh margin is a tenth of its lifetime, ≤ 60 s). */
  accessFetchedAt?: number;
}

export interface GrantItem {
  clientId: string;
  credentialId: string;
  /** The credential's secretRevision the consent was given for. */
  secretRevision: number;
  version: number;
  sealed: SealedSecret;
  leaseUntil?: number;
  updatedAt: string;
}

function grantContext(clientId: string, credentialId: string, version: number) {
  return credentialContext(clientId, `${credentialId}#grant`, version);
}

export async function sealGrant(
  cell: Cell,
  ids: { clientId: string; credentialId: string },
  version: number,
  tokens: GrantTokens,
): Promise<SealedSecret> {
  return sealSecret(
    cell.kms,
    cell.kmsKeyId,
    JSON.stringify(tokens),
    grantContext(ids.clientId, ids.credentialId, version),
  );
}

export async function openGrant(cell: Cell, grant: GrantItem, cache?: DataKeyCache): Promise<GrantTokens> {
  const json = await openSecret(
    cell.kms,
    grant.sealed,
    grantContext(grant.clientId, grant.credentialId, grant.version),
    cache,
  );
  return JSON.parse(json) as GrantTokens;
}

export function readGrant(cell: Cell, credentialId: string): Promise<GrantItem | undefined> {
  return getItem<GrantItem>(cell, keys.oauthGrant(credentialId));
}

/**
 * Stores the tokens of a (new) consent, replacing any earlier grant of the credential. Retries on a
 * concurrent refresh of the old grant (its version moved); answers the version written.
 */
export async function putConsentGrant(
  cell: Cell,
  ids: { clientId: string; credentialId: string; secretRevision: number },
  tokens: GrantTokens,
  now: Date,
): Promise<number> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const previous = await readGrant(cell, ids.credentialId);
    const version = (previous?.version ?? 0) + 1;
    const sealed = await sealGrant(cell, ids, version, tokens);
    try {
      await cell.ddb.send(
        new PutCommand({
          TableName: cell.tableName,
          Item: {
            ...keys.oauthGrant(ids.credentialId),
            type: 'OAuthGrant',
            clientId: ids.clientId,
            credentialId: ids.credentialId,
            secretRevision: ids.secretRevision,
            version,
            sealed,
            updatedAt: now.toISOString(),
          },
          ConditionExpression: previous ? '#v = :v' : 'attribute_not_exists(pk)',
          ExpressionAttributeNames: previous ? { '#v': 'version' } : undefined,
          ExpressionAttributeValues: previous ? { ':v': previous.version } : undefined,
        }),
      );
      return version;
    } catch (error) {
      if (!isConditionFailure(error)) throw error;
    }
  }
  throw new Error('the grant kept changing while the consent was stored');
}

/** Takes the refresh lease on `grant` (as read) until `until`; false when someone else holds it or the grant moved on. */
export async function takeLease(cell: Cell, grant: GrantItem, now: number, until: number): Promise<boolean> {
  try {
    await cell.ddb.send(
      new UpdateCommand({
        TableName: cell.tableName,
        Key: keys.oauthGrant(grant.credentialId),
        UpdateExpression: 'SET leaseUntil = :until',
        ConditionExpression: '#v = :v AND (attribute_not_exists(leaseUntil) OR leaseUntil < :now)',
        ExpressionAttributeNames: { '#v': 'version' },
        ExpressionAttributeValues: { ':v': grant.version, ':now': now, ':until': until },
      }),
    );
    return true;
  } catch (error) {
    if (isConditionFailure(error)) return false;
    throw error;
  }
}

/**
 * Writes refreshed tokens as the next version and releases the lease, only if the grant is still
 * the version leased with this very lease (`until`). False when it is not (deleted, re-consented).
 */
export async function commitRefresh(
  cell: Cell,
  grant: GrantItem,
  until: number,
  tokens: GrantTokens,
  now: Date,
): Promise<boolean> {
  const version = grant.version + 1;
  const sealed = await sealGrant(cell, grant, version, tokens);
  try {
    await cell.ddb.send(
      new UpdateCommand({
        TableName: cell.tableName,
        Key: keys.oauthGrant(grant.credentialId),
        UpdateExpression: 'SET #v = :next, sealed = :sealed, updatedAt = :at REMOVE leaseUntil',
        ConditionExpression: '#v = :v AND leaseUntil = :until',
        ExpressionAttributeNames: { '#v': 'version' },
        ExpressionAttributeValues: {
          ':v': grant.version,
          ':next': version,
          ':until': until,
          ':sealed': sealed,
          ':at': now.toISOString(),
        },
      }),
    );
    return true;
  } catch (error) {
    if (isConditionFailure(error)) return false;
    throw error;
  }
}

/** Gives a lease back without changing the grant (the refresh failed). Best effort. */
export async function releaseLease(cell: Cell, grant: GrantItem, until: number): Promise<void> {
  try {
    await cell.ddb.send(
      new UpdateCommand({
        TableName: cell.tableName,
        Key: keys.oauthGrant(grant.credentialId),
        UpdateExpression: 'REMOVE leaseUntil',
        ConditionExpression: '#v = :v AND leaseUntil = :until',
        ExpressionAttributeNames: { '#v': 'version' },
        ExpressionAttributeValues: { ':v': grant.version, ':until': until },
      }),
    );
  } catch (error) {
    if (!isConditionFailure(error)) throw error;
  }
}

/** Deletes the grant and answers what it held (for revocation), or undefined. */
export async function deleteGrant(cell: Cell, credentialId: string): Promise<GrantItem | undefined> {
  const out = await cell.ddb.send(
    new DeleteCommand({
      TableName: cell.tableName,
      Key: keys.oauthGrant(credentialId),
      ReturnValues: 'ALL_OLD',
    }),
  );
  return out.Attributes as GrantItem | undefined;
}
