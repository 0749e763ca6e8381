import { randomUUID } from 'node:crypto';
import { digestsEqual, generateSecret, hashSecret, hasValidChecksum, secretHint } from '../crypto/secrets.ts';
import type { Deps } from '../shared/deps.ts';
import { BadRequestError, ForbiddenError, NotFoundError, UnauthorizedError } from '../shared/errors.ts';
import { keys } from '../storage/keys.ts';
import { getItem, type Item, publicView, putItem, queryPrefix, queryPrefixPage } from '../storage/table.ts';
import { retryOnConflict, transact, txCreate, txDeleteAny } from '../storage/transact.ts';
import { cutPage } from './cells.ts';
import { listAnswer, type PageQuery, pageRequest } from './paging.ts';

/**
 * Users and their Core API tokens. A token is shown once, stored as a SHA-256 hash in two places:
 * on the token item (for listing and rotation) and as the key of a lookup item (for authentication
 * with one strongly consistent GetItem). Revoking or rotating deletes the lookup item before the
 * call answers, so the old token fails on the very next request.
 */
export interface Caller {
  userId: string;
  tokenId: string;
  platformAdmin: boolean;
}

interface UserItem extends Item {
  userId: string;
  userName: string;
  userEmail?: string;
  platformAdmin: boolean;
  createdAt: string;
}

interface TokenItem extends Item {
  tokenId: string;
  userId: string;
  tokenName?: string;
  tokenHash: string;
  tokenHint: string;
  createdAt: string;
  rotatedAt?: string;
  expiresAt?: string;
}

interface TokenHashItem extends Item {
  userId: string;
  tokenId: string;
  tokenHash: string;
  expiresAt?: string;
}

const TOKEN_HIDDEN = ['tokenHash'] as const;

/** Reads `Authorization: <token>` or `Bearer <token>`; answers the caller or throws 401. */
export async function authenticate(deps: Deps, authorization: string | undefined): Promise<Caller> {
  const raw = (authorization ?? '').trim();
  const token = /^bearer\s+/i.test(raw) ? raw.replace(/^bearer\s+/i, '') : raw;
  // A malformed token or a bad checksum is refused without touching the store.
  if (!hasValidChecksum(token) || !token.startsWith('kg_user_')) throw new UnauthorizedError();
  const hash = hashSecret(token);
  const found = await getItem<TokenHashItem>(deps.home, keys.tokenHash(hash));
  if (!found || !digestsEqual(found.tokenHash, hash)) throw new UnauthorizedError();
  if (found.expiresAt && Date.parse(found.expiresAt) <= deps.now().getTime()) throw new UnauthorizedError();
  // The token item must agree too: a lookup item left behind by anything (a crash of an older
  // version, a restored backup) authenticates nobody.
  const [user, tokenItem] = await Promise.all([
    getItem<UserItem>(deps.home, keys.user(found.userId)),
    getItem<TokenItem>(deps.home, keys.userToken(found.userId, found.tokenId)),
  ]);
  if (!user || !tokenItem || !digestsEqual(tokenItem.tokenHash, hash)) throw new UnauthorizedError();
  return { userId: user.userId, tokenId: found.tokenId, platformAdmin: user.platformAdmin === true };
}

async function issueToken(
  deps: Deps,
  userId: string,
  input: { tokenName?: string; expiresAt?: string },
): Promise<{ item: TokenItem; token: string }> {
  const token = generateSecret('kg_user_');
  const tokenHash = hashSecret(token);
  const item: TokenItem = {
    tokenId: randomUUID(),
    userId,
    tokenName: input.tokenName,
    tokenHash,
    tokenHint: secretHint(token),
    createdAt: deps.now().toISOString(),
    expiresAt: input.expiresAt,
  };
  await transact(deps.home, [
    txCreate(deps.home, {
      ...keys.tokenHash(tokenHash),
      type: 'TokenHash',
      userId,
      tokenId: item.tokenId,
      tokenHash,
      expiresAt: input.expiresAt,
    }),
    txCreate(deps.home, { ...keys.userToken(userId, item.tokenId), type: 'Token', ...item }),
  ]);
  return { item, token };
}

function checkExpiry(deps: Deps, expiresAt: string | undefined) {
  if (expiresAt && Date.parse(expiresAt) <= deps.now().getTime())
    throw new BadRequestError('expiresAt must be in the future', 'validation_failed');
}

/** Creates a user (platform admins only) and its first token, shown once. */
export async function createUser(
  deps: Deps,
  caller: Caller | undefined,
  input: { userName: string; userEmail?: string; platformAdmin?: boolean },
) {
  if (caller && !caller.platformAdmin) throw new ForbiddenError('Only platform admins may create users');
  const user: UserItem = {
    userId: randomUUID(),
    userName: input.userName,
    userEmail: input.userEmail,
    platformAdmin: input.platformAdmin ?? false,
    createdAt: deps.now().toISOString(),
  };
  await putItem(deps.home, { ...keys.user(user.userId), type: 'User', ...user }, { ifAbsent: true });
  const { item, token } = await issueToken(deps, user.userId, { tokenName: 'initial' });
  return { ...publicView(user), tokenId: item.tokenId, token };
}

export async function getMe(deps: Deps, caller: Caller) {
  const user = await getItem<UserItem>(deps.home, keys.user(caller.userId));
  if (!user) throw new UnauthorizedError();
  const memberships = await queryPrefix<Item>(deps.home, keys.membershipsPrefix(caller.userId));
  return {
    ...publicView(user),
    clients: memberships.map((m) => ({ clientId: m.clientId, roles: m.roles })),
  };
}

export async function createToken(
  deps: Deps,
  caller: Caller,
  input: { tokenName?: string; expiresAt?: string },
) {
  checkExpiry(deps, input.expiresAt);
  const { item, token } = await issueToken(deps, caller.userId, input);
  return { ...publicView(item, TOKEN_HIDDEN), token };
}

export async function listTokens(deps: Deps, caller: Caller, query?: PageQuery) {
  const where = keys.userTokensPrefix(caller.userId);
  const page = pageRequest(query, where.skPrefix);
  const { items, nextToken } = cutPage(await queryPrefixPage<TokenItem>(deps.home, where, page), page.limit);
  return listAnswer(
    'tokens',
    items.map((t) => publicView(t, TOKEN_HIDDEN)),
    nextToken,
  );
}

async function ownToken(deps: Deps, caller: Caller, tokenId: string): Promise<TokenItem> {
  const item = await getItem<TokenItem>(deps.home, keys.userToken(caller.userId, tokenId));
  if (!item) throw new NotFoundError('Token not found');
  return item;
}

/**
 * Rotates a token: the token item switches to the new hash, the old lookup item goes and the new
 * one comes, in one transaction conditional on the hash read — so a rotation racing a revocation
 * (or another rotation) of the same token either sees its result or is cancelled and re-read.
 * When this answers, the old token is dead.
 */
export async function rotateToken(deps: Deps, caller: Caller, tokenId: string) {
  const newToken = generateSecret('kg_user_');
  const newHash = hashSecret(newToken);
  return retryOnConflict(caller.userId, async () => {
    const current = await ownToken(deps, caller, tokenId);
    const rotatedAt = deps.now().toISOString();
    await transact(deps.home, [
      {
        Update: {
          TableName: deps.home.tableName,
          Key: keys.userToken(caller.userId, tokenId),
          UpdateExpression: 'SET tokenHash = :new, tokenHint = :hint, rotatedAt = :at',
          ConditionExpression: 'tokenHash = :old',
          ExpressionAttributeValues: {
            ':new': newHash,
            ':old': current.tokenHash,
            ':hint': secretHint(newToken),
            ':at': rotatedAt,
          },
        },
      },
      txDeleteAny(deps.home, keys.tokenHash(current.tokenHash)),
      txCreate(deps.home, {
        ...keys.tokenHash(newHash),
        type: 'TokenHash',
        userId: caller.userId,
        tokenId,
        tokenHash: newHash,
        expiresAt: current.expiresAt,
      }),
    ]);
    return { tokenId, newToken, rotatedAt };
  });
}

/**
 * Revokes a token: the token item (conditional on the hash read) and its lookup item go in one
 * transaction; a rotation that raced it cancels it, and the re-read deletes the rotated token.
 */
export async function deleteToken(deps: Deps, caller: Caller, tokenId: string) {
  await retryOnConflict(caller.userId, async () => {
    const current = await ownToken(deps, caller, tokenId);
    await transact(deps.home, [
      {
        Delete: {
          TableName: deps.home.tableName,
          Key: keys.userToken(caller.userId, tokenId),
          ConditionExpression: 'tokenHash = :current',
          ExpressionAttributeValues: { ':current': current.tokenHash },
        },
      },
      txDeleteAny(deps.home, keys.tokenHash(current.tokenHash)),
    ]);
  });
}

/** True when a user with this id exists. */
export async function userExists(deps: Deps, userId: string): Promise<boolean> {
  return (await getItem(deps.home, keys.user(userId))) !== undefined;
}
