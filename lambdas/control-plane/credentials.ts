import { randomUUID } from 'node:crypto';
import { credentialContext, sealSecret } from '../crypto/envelope.ts';
import {
  estimateKeyBits,
  KEY_CHARSET,
  MIN_KEY_BITS,
  predictability,
  readablePrefix,
} from '../crypto/key-strength.ts';
import { generateSecret, hashSecret } from '../crypto/secrets.ts';
import { checkTargetUrl } from '../net/target-url.ts';
import type { Cell, Deps } from '../shared/deps.ts';
import {
  ConflictError,
  DependencyUnavailableError,
  isAwsDependencyError,
  NotFoundError,
} from '../shared/errors.ts';
import { validate } from '../shared/http.ts';
import type { CredentialItem, ProxyItem } from '../storage/items.ts';
import { keys } from '../storage/keys.ts';
import { rebuildSnapshots } from '../storage/snapshot.ts';
import {
  deleteItem,
  deleteItems,
  isConditionFailure,
  publicView,
  putItem,
  queryPrefix,
} from '../storage/table.ts';
import { cellFor, findInCells, pageInCells, proxiesUsing } from './cells.ts';
import { authorizeClient } from './clients.ts';
import type { Caller } from './identity.ts';
import type { PageQuery } from './paging.ts';
import {
  type CredentialAuthType,
  type CredentialCreate,
  type CredentialUpdate,
  credentialSecretSchemas,
} from './schemas.ts';
import { checkImmutable, fieldError } from './validation.ts';

/**
 * Credentials: what a consumer presents to a proxy (`proxy`) and the vendor secret keygate injects
 * (`target`). Secret parts are write-only:
 *  - a proxy credential's secret (key, bearer token, basicAuth `username:password`) is stored only
 *    as its SHA-256 hash; when none is given keygate generates a key (`kg_live_`/`kg_test_`, see
 *    crypto/secrets.ts) and answers it once, in that response;
 *  - a target credential's whole credentialSecret is envelope-encrypted (crypto/envelope.ts) under
 *    the encryption context { clientId, credentialId }, so it cannot be moved to another item;
 *  - reads show `credentialSettings` (the non-secret parts) and `credentialSecretHint`.
 * Deleting a credential removes it from every proxy snapshot before the call answers, so the very
 * next proxied request with it fails; its request-log records stay.
 */
const HIDDEN = ['secretHash', 'sealedSecret', 'secretRevision'] as const;
const PROXY_ONLY = new Set(['jwtVerify']);
const TARGET_ONLY = new Set(['custom', 'oauth2', 'none']);
/** Headers a `custom` target credential may not set: they belong to the transport. */
const RESERVED_HEADERS = new Set([
  'host',
  'content-length',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'upgrade',
  'te',
  'trailer',
  'proxy-authorization',
  'proxy-connection',
]);

function checkExpiry(deps: Deps, expiresAt: string | null | undefined) {
  if (expiresAt && Date.parse(expiresAt) <= deps.now().getTime())
    throw fieldError('body.expiresAt', 'must be in the future');
}

/** The hint reads show: type, readable prefix and last four characters (long secrets only). */
/** Seals under the cell's key; a KMS failure is a 503 that names KMS (the KmsErrors metric). */
async function sealWithKms(cell: Cell, plaintext: string, context: Record<string, string>) {
  try {
    return await sealSecret(cell.kms, cell.kmsKeyId, plaintext, context);
  } catch (error) {
    if (isAwsDependencyError(error)) throw new DependencyUnavailableError('kms', error);
    throw error;
  }
}

function hintOf(type: string, secret?: string): CredentialItem['credentialSecretHint'] {
  if (!secret || secret.length < 20) return { type };
  const prefix = readablePrefix(secret);
  return { type, ...(prefix ? { prefix } : {}), last4: secret.slice(-4) };
}

/**
 * A user-supplied proxy secret must carry ≥128 bits by length and alphabet, and must not be
 * predictable by structure (zxcvbn: words, repeats, keyboard rows, sequences).
 */
function checkStrength(field: string, secret: string) {
  if (!KEY_CHARSET.test(secret)) throw fieldError(field, 'only printable ASCII without spaces', 'weak_key');
  const bits = estimateKeyBits(secret);
  if (bits < MIN_KEY_BITS)
    throw fieldError(
      field,
      `carries about ${bits} bits; at least ${MIN_KEY_BITS} are needed (e.g. 32 hex or 22 base64url characters after any prefix), or omit it to have one generated`,
      'weak_key',
    );
  const predictable = predictability(secret);
  if (predictable)
    throw fieldError(field, `${predictable}; use a random key, or omit it to have one generated`, 'weak_key');
}

interface PreparedSecret {
  settings: Record<string, unknown>;
  hint: CredentialItem['credentialSecretHint'];
  secretHash?: string;
  sealed?: CredentialItem['sealedSecret'];
  /** A secret keygate generated: answered once, never stored. */
  generated?: Record<string, string>;
}

type SecretInput = Record<string, unknown>;

/**
 * Validates a credentialSecret for its type and turns it into what is stored: a hash (proxy), a
 * sealed blob (target, jwtVerify secret) and the non-secret settings.
 */
async function prepareSecret(
  deps: Deps,
  cell: Cell,
  ids: { clientId: string; credentialId: string; secretRevision: number },
  credentialType: 'proxy' | 'target',
  authType: CredentialAuthType,
  rawSecret: unknown,
): Promise<PreparedSecret> {
  const type = authType === 'key' ? 'apiKey' : authType;
  const base = 'body.credentialSecret';
  if (credentialType === 'target' && PROXY_ONLY.has(type))
    throw fieldError('body.credentialAuthType', `${authType} is for proxy credentials only`);
  if (credentialType === 'proxy' && TARGET_ONLY.has(type))
    throw fieldError('body.credentialAuthType', `${authType} is for target credentials only`);
  const secret = validate(
    credentialSecretSchemas[type as keyof typeof credentialSecretSchemas],
    rawSecret ?? {},
    base,
  ) as SecretInput;
  const str = (k: string) => (typeof secret[k] === 'string' ? (secret[k] as string) : undefined);
  const context = credentialContext(ids.clientId, ids.credentialId, ids.secretRevision);

  if (credentialType === 'proxy') {
    if (type === 'jwtVerify') {
      const jwksUrl = str('jwksUrl');
      const shared = str('secret');
      if (!jwksUrl && !shared) throw fieldError(base, 'jwtVerify needs jwksUrl or secret');
      let normalizedJwks: string | undefined;
      if (jwksUrl) {
        const checked = checkTargetUrl(jwksUrl, deps.config.targetAllowlist);
        if (!checked.ok) throw fieldError(`${base}.jwksUrl`, checked.reason, 'unsafe_url');
        normalizedJwks = checked.url.href;
      }
      if (shared) checkStrength(`${base}.secret`, shared);
      return {
        settings: { jwksUrl: normalizedJwks, issuer: str('issuer'), audience: str('audience') },
        hint: { type },
        sealed: shared ? await sealWithKms(cell, shared, context) : undefined,
      };
    }
    for (const k of ['headerName', 'queryParam'])
      if (secret[k] !== undefined) throw fieldError(`${base}.${k}`, 'only applies to target credentials');
    const field = type === 'apiKey' ? 'key' : type === 'bearer' ? 'token' : 'password';
    let value = str(field);
    let generated: Record<string, string> | undefined;
    if (value) {
      if (secret.keyEnvironment !== undefined)
        throw fieldError(`${base}.keyEnvironment`, `only applies when keygate generates the ${field}`);
      checkStrength(`${base}.${field}`, value);
    } else {
      value = generateSecret(secret.keyEnvironment === 'test' ? 'kg_test_' : 'kg_live_');
      generated = { [field]: value };
    }
    const settings: Record<string, unknown> = {};
    let presented = value;
    if (type === 'bearer') settings.prefix = str('prefix') ?? 'Bearer ';
    if (type === 'basicAuth') {
      settings.username = str('username');
      presented = `${str('username')}:${value}`;
    }
    return { settings, hint: hintOf(type, value), secretHash: hashSecret(presented), generated };
  }

  // Target credentials: the secret is sealed whole, with defaults applied, for the data plane.
  if (secret.keyEnvironment !== undefined)
    throw fieldError(`${base}.keyEnvironment`, 'only applies to proxy credentials');
  let sealedValue: SecretInput = secret;
  let settings: Record<string, unknown> = {};
  let hint = hintOf(type);
  switch (type) {
    case 'apiKey': {
      if (!str('key')) throw fieldError(`${base}.key`, 'required for a target credential');
      if (secret.headerName !== undefined && secret.queryParam !== undefined)
        throw fieldError(`${base}.queryParam`, 'give headerName or queryParam, not both');
      settings = str('queryParam')
        ? { queryParam: str('queryParam') }
        : { headerName: str('headerName') ?? 'X-API-Key' };
      sealedValue = { key: str('key'), ...settings };
      hint = hintOf(type, str('key'));
      break;
    }
    case 'bearer': {
      if (!str('token')) throw fieldError(`${base}.token`, 'required for a target credential');
      settings = { prefix: str('prefix') ?? 'Bearer ' };
      sealedValue = { token: str('token'), ...settings };
      hint = hintOf(type, str('token'));
      break;
    }
    case 'basicAuth': {
      if (!str('password')) throw fieldError(`${base}.password`, 'required for a target credential');
      settings = { username: str('username') };
      break;
    }
    case 'custom': {
      const headers = secret.headers as Record<string, string>;
      for (const name of Object.keys(headers))
        if (RESERVED_HEADERS.has(name.toLowerCase()))
          throw fieldError(`${base}.headers.${name}`, 'this header belongs to the transport');
      settings = { headerNames: Object.keys(headers) };
      break;
    }
    case 'oauth2': {
      const checked = checkTargetUrl(str('tokenUrl')!, deps.config.targetAllowlist);
      if (!checked.ok) throw fieldError(`${base}.tokenUrl`, checked.reason, 'unsafe_url');
      sealedValue = { ...secret, tokenUrl: checked.url.href };
      settings = {
        tokenUrl: checked.url.href,
        clientId: str('clientId'),
        scope: str('scope'),
        audience: str('audience'),
      };
      break;
    }
  }
  return {
    settings,
    hint,
    sealed: await sealWithKms(cell, JSON.stringify(sealedValue), context),
  };
}

function view(item: CredentialItem) {
  return publicView(item as unknown as Record<string, unknown>, HIDDEN);
}

/** Loads a credential of the client from whichever cell holds it, or 404. */
export async function loadCredential(deps: Deps, clientId: string, credentialId: string) {
  const found = await findInCells<CredentialItem>(
    deps,
    keys.credential(clientId, credentialId),
    'credentialRegion',
  );
  if (!found) throw new NotFoundError('Credential not found');
  return found;
}

function usesCredential(credentialId: string) {
  return (p: ProxyItem) =>
    p.proxyProxyCredentialId === credentialId || p.proxyTargetCredentialId === credentialId;
}

/**
 * Claims a proxy secret's hash for a credential in the client's home partition, so one key serves
 * one identity: a supplied key another credential of this client already uses is a 409.
 */
async function claimSecretHash(deps: Deps, clientId: string, credentialId: string, hash: string | undefined) {
  if (!hash) return;
  try {
    await putItem(
      deps.home,
      { ...keys.proxyKeyHash(clientId, hash), type: 'ProxyKeyHash', clientId, credentialId },
      { ifAbsent: true },
    );
  } catch (error) {
    if (isConditionFailure(error))
      throw new ConflictError(
        'body.credentialSecret: this secret is already used by another credential of this client; use one key per identity',
        'duplicate_key',
      );
    throw error;
  }
}

async function releaseSecretHash(deps: Deps, clientId: string, hash: string | undefined) {
  if (hash) await deleteItem(deps.home, keys.proxyKeyHash(clientId, hash));
}

export async function createCredential(
  deps: Deps,
  caller: Caller,
  clientId: string,
  input: CredentialCreate,
) {
  await authorizeClient(deps, caller, clientId, 'admin');
  const cell = cellFor(deps, input.credentialRegion, 'body.credentialRegion');
  checkExpiry(deps, input.expiresAt);
  const credentialId = randomUUID();
  const prepared = await prepareSecret(
    deps,
    cell,
    { clientId, credentialId, secretRevision: 1 },
    input.credentialType,
    input.credentialAuthType,
    input.credentialSecret,
  );
  const now = deps.now().toISOString();
  const item: CredentialItem = {
    credentialId,
    clientId,
    credentialType: input.credentialType,
    credentialAuthType: input.credentialAuthType,
    credentialName: input.credentialName,
    credentialRegion: input.credentialRegion,
    expiresAt: input.expiresAt,
    credentialSettings: prepared.settings,
    credentialSecretHint: prepared.hint,
    secretHash: prepared.secretHash,
    sealedSecret: prepared.sealed,
    secretRevision: 1,
    secretUpdatedAt: now,
    createdAt: now,
    updatedAt: now,
  };
  await claimSecretHash(deps, clientId, credentialId, prepared.secretHash);
  try {
    await putItem(
      cell,
      {
        ...keys.credential(clientId, credentialId),
        type: 'Credential',
        ...keys.byRegion(item.credentialRegion, 'CREDENTIAL', clientId, credentialId),
        ...item,
      },
      { ifAbsent: true },
    );
  } catch (error) {
    await releaseSecretHash(deps, clientId, prepared.secretHash).catch(() => undefined);
    throw error;
  }
  return prepared.generated ? { ...view(item), credentialSecret: prepared.generated } : view(item);
}

export async function listCredentials(deps: Deps, caller: Caller, clientId: string, query?: PageQuery) {
  await authorizeClient(deps, caller, clientId, 'user');
  const where = keys.credentialsPrefix(clientId);
  const { items, nextToken } = await pageInCells<CredentialItem>(deps, where, 'credentialRegion', query);
  return { credentials: items.map(view), ...(nextToken ? { nextToken } : {}) };
}

export async function getCredential(deps: Deps, caller: Caller, clientId: string, credentialId: string) {
  await authorizeClient(deps, caller, clientId, 'user');
  return view((await loadCredential(deps, clientId, credentialId)).item);
}

/**
 * Renames, sets or clears `expiresAt`, or replaces the secret in place (a generated proxy key is
 * answered once). Every proxy using the credential sees the change before this answers.
 */
export async function updateCredential(
  deps: Deps,
  caller: Caller,
  clientId: string,
  credentialId: string,
  input: CredentialUpdate,
) {
  await authorizeClient(deps, caller, clientId, 'admin');
  const { item, cell } = await loadCredential(deps, clientId, credentialId);
  checkImmutable('credentialId', input.credentialId, item.credentialId);
  checkImmutable('clientId', input.clientId, item.clientId);
  checkImmutable('credentialType', input.credentialType, item.credentialType);
  checkImmutable('credentialAuthType', input.credentialAuthType, item.credentialAuthType);
  checkImmutable('credentialRegion', input.credentialRegion, item.credentialRegion);
  checkExpiry(deps, input.expiresAt);
  const now = deps.now().toISOString();
  const updated: CredentialItem = {
    ...item,
    credentialName: input.credentialName ?? item.credentialName,
    expiresAt: input.expiresAt === null ? undefined : (input.expiresAt ?? item.expiresAt),
    updatedAt: now,
  };
  let generated: Record<string, string> | undefined;
  if (input.credentialSecret !== undefined) {
    const prepared = await prepareSecret(
      deps,
      cell,
      { clientId, credentialId, secretRevision: (item.secretRevision ?? 0) + 1 },
      item.credentialType,
      item.credentialAuthType as CredentialAuthType,
      input.credentialSecret,
    );
    updated.credentialSettings = prepared.settings;
    updated.credentialSecretHint = prepared.hint;
    updated.secretHash = prepared.secretHash;
    updated.sealedSecret = prepared.sealed;
    updated.secretRevision = (item.secretRevision ?? 0) + 1;
    updated.secretUpdatedAt = now;
    generated = prepared.generated;
    if (prepared.secretHash !== item.secretHash)
      await claimSecretHash(deps, clientId, credentialId, prepared.secretHash);
  }
  const stored = { ...keys.credential(clientId, credentialId), ...item, ...updated } as Record<
    string,
    unknown
  >;
  if (updated.expiresAt === undefined) delete stored.expiresAt;
  const hashChanged = updated.secretHash !== item.secretHash;
  try {
    await putItem(cell, stored as typeof stored & { pk: string; sk: string }, { ifExists: true });
  } catch (error) {
    if (hashChanged) await releaseSecretHash(deps, clientId, updated.secretHash).catch(() => undefined);
    if (isConditionFailure(error)) throw new NotFoundError('Credential not found');
    throw error;
  }
  const proxies = await proxiesUsing(cell, clientId, usesCredential(credentialId));
  await rebuildSnapshots(
    cell,
    clientId,
    proxies.map((p) => p.proxyId),
    deps.now(),
  );
  if (hashChanged) await releaseSecretHash(deps, clientId, item.secretHash);
  return generated ? { ...view(updated), credentialSecret: generated } : view(updated);
}

/**
 * Deletes a credential: the item goes first, then every proxy snapshot that used it is rebuilt
 * without it (so the next proxied request fails), then its rules. Request-log records stay.
 */
export async function deleteCredential(deps: Deps, caller: Caller, clientId: string, credentialId: string) {
  await authorizeClient(deps, caller, clientId, 'admin');
  const { cell, item } = await loadCredential(deps, clientId, credentialId);
  await deleteItem(cell, keys.credential(clientId, credentialId));
  const proxies = await proxiesUsing(cell, clientId, usesCredential(credentialId));
  await rebuildSnapshots(
    cell,
    clientId,
    proxies.map((p) => p.proxyId),
    deps.now(),
  );
  const rules = await queryPrefix<{ pk: string; sk: string }>(
    cell,
    keys.rulesPrefix(clientId, 'credential', credentialId),
  );
  await deleteItems(
    cell,
    rules.map((r) => ({ pk: r.pk, sk: r.sk })),
  );
  await releaseSecretHash(deps, clientId, item.secretHash);
}
