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
  BadRequestError,
  ConflictError,
  DependencyUnavailableError,
  isAwsDependencyError,
  NotFoundError,
} from '../shared/errors.ts';
import { validate } from '../shared/http.ts';
import { claimInHome, releaseInHome } from '../storage/home-claim.ts';
import type { CredentialItem, ProxyItem } from '../storage/items.ts';
import { type Key, keys } from '../storage/keys.ts';
import { commitChange, commitReplace } from '../storage/snapshot.ts';
import { deleteItems, type Item, publicView, queryPrefix } from '../storage/table.ts';
import { retryOnConflict, txCreate, txDelete, versionOf } from '../storage/transact.ts';
import { cellFor, findInCells, pageInCells, proxiesUsing } from './cells.ts';
import { authorizeClient } from './clients.ts';
import type { Caller } from './identity.ts';
import {
  type AuthorizationCodeInput,
  consentContext,
  consentPart,
  discardGrant,
  openConsent,
  startAuthorization,
} from './oauth-callback.ts';
import { listAnswer, type PageQuery } from './paging.ts';
import {
  type CredentialAuthType,
  type CredentialCreate,
  type CredentialUpdate,
  credentialSecretSchemas,
} from './schemas.ts';
import { prepareSignedTargetSecret } from './signed-credentials.ts';
import { checkImmutable, fieldError } from './validation.ts';

/**
 * Credentials: what a consumer presents to a proxy (`proxy`) and the vendor secret keygate injects
 * (`target`). Secret parts are write-only:
 *  - a proxy credential's secret (key, bearer token, basicAuth `username:password`) is stored only
 *    as its SHA-256 hash; when none is given keygate generates a key (`kg_live_`/`kg_test_`, see
 *    crypto/secrets.ts) and answers it once, in that response;
 *  - a target credential's whole credentialSecret is envelope-encrypted (crypto/envelope.ts) under
 *    the encryption context { clientId, credentialId }, so it cannot be moved to another item;
 *  - an oauth2 authorization_code secret is also sealed apart for its consent (`sealedConsent`,
 *    oauth-callback.ts): the one blob the Core API itself may open;
 *  - reads show `credentialSettings` (the non-secret parts) and `credentialSecretHint`.
 * Deleting a credential removes it from every proxy snapshot before the call answers, so the very
 * next proxied request with it fails; its request-log records stay.
 */
const HIDDEN = ['secretHash', 'sealedSecret', 'sealedConsent', 'secretRevision'] as const;
const PROXY_ONLY = new Set(['jwtVerify']);
const TARGET_ONLY = new Set(['custom', 'oauth2', 'customToken', 'none']);
/** Target types keygate signs for (signed-credentials.ts); target only too. */
const SIGNED_TARGET_ONLY = new Set(['awsSigV4', 'jwt']);
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
export async function sealWithKms(cell: Cell, plaintext: string, context: Record<string, string>) {
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
async function checkStrength(field: string, secret: string): Promise<void> {
  if (!KEY_CHARSET.test(secret)) throw fieldError(field, 'only printable ASCII without spaces', 'weak_key');
  const bits = estimateKeyBits(secret);
  if (bits < MIN_KEY_BITS)
    throw fieldError(
      field,
      `carries about ${bits} bits; at least ${MIN_KEY_BITS} are needed (e.g. 32 hex or 22 base64url characters after any prefix), or omit it to have one generated`,
      'weak_key',
    );
  const predictable = await predictability(secret);
  if (predictable)
    throw fieldError(field, `${predictable}; use a random key, or omit it to have one generated`, 'weak_key');
}

interface PreparedSecret {
  settings: Record<string, unknown>;
  hint: CredentialItem['credentialSecretHint'];
  secretHash?: string;
  sealed?: CredentialItem['sealedSecret'];
  /** oauth2 authorization_code: what the consent needs, sealed under its own context. */
  sealedConsent?: CredentialItem['sealedConsent'];
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
  if (credentialType === 'proxy' && (TARGET_ONLY.has(type) || SIGNED_TARGET_ONLY.has(type)))
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
        const checked = checkTargetUrl(jwksUrl, deps.config.targetAllowlist, deps.config.ownPorts);
        if (!checked.ok) throw fieldError(`${base}.jwksUrl`, checked.reason, 'unsafe_url');
        normalizedJwks = checked.url.href;
      }
      if (shared) await checkStrength(`${base}.secret`, shared);
      return {
        settings: { jwksUrl: normalizedJwks, issuer: str('issuer'), audience: str('audience') },
        hint: { type },
        sealed: shared ? await sealWithKms(cell, shared, context) : undefined,
      };
    }
    for (const k of ['headerName', 'queryParam'])
      if (secret[k] !== undefined) throw fieldError(`${base}.${k}`, 'only applies to target credentials');
    const field = type === 'apiKey' ? 'key' : type === 'bearer' ? 'token' : 'password';
    if (secret[field] === '')
      throw fieldError(`${base}.${field}`, 'must not be empty; omit it to have one generated');
    let value = str(field);
    let generated: Record<string, string> | undefined;
    if (value) {
      if (secret.keyEnvironment !== undefined)
        throw fieldError(`${base}.keyEnvironment`, `only applies when keygate generates the ${field}`);
      await checkStrength(`${base}.${field}`, value);
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
      // Stripe-style: the key is the user name and the password is empty. The user name is then
      // the secret: it is sealed, never shown; the hint shows what a key's hint shows.
      if (str('password')) settings = { username: str('username') };
      else {
        sealedValue = { username: str('username'), password: '' };
        hint = hintOf(type, str('username'));
      }
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
      if (secret.grantType === 'authorization_code') {
        ({ sealedValue, settings } = authorizationCodeSettings(deps, secret));
        break;
      }
      const checked = checkTargetUrl(str('tokenUrl')!, deps.config.targetAllowlist, deps.config.ownPorts);
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
    case 'awsSigV4':
    case 'jwt':
      ({ sealedValue, settings } = prepareSignedTargetSecret(deps, type, secret, base));
      break;
    case 'customToken':
      ({ sealedValue, settings } = customTokenSettings(deps, secret));
      break;
  }
  const consent =
    type === 'oauth2' && secret.grantType === 'authorization_code'
      ? consentPart(sealedValue as unknown as AuthorizationCodeInput)
      : undefined;
  return {
    settings,
    hint,
    sealed: await sealWithKms(cell, JSON.stringify(sealedValue), context),
    sealedConsent: consent
      ? await sealWithKms(
          cell,
          JSON.stringify(consent),
          consentContext(ids.clientId, ids.credentialId, ids.secretRevision),
        )
      : undefined,
  };
}

/** An absolute URL a target credential's secret names: https and public, as a target's (400 otherwise). */
function checkedUrl(deps: Deps, field: string, url: string): string {
  const checked = checkTargetUrl(url, deps.config.targetAllowlist, deps.config.ownPorts);
  if (!checked.ok) throw fieldError(field, checked.reason, 'unsafe_url');
  return checked.url.href;
}

/** oauth2 authorization_code: URLs checked, every non-secret part shown in the settings. */
function authorizationCodeSettings(deps: Deps, secret: SecretInput) {
  const base = 'body.credentialSecret';
  const s = secret as unknown as AuthorizationCodeInput;
  const urls = {
    authorizationUrl: checkedUrl(deps, `${base}.authorizationUrl`, s.authorizationUrl),
    tokenUrl: checkedUrl(deps, `${base}.tokenUrl`, s.tokenUrl),
    ...(s.revocationUrl ? { revocationUrl: checkedUrl(deps, `${base}.revocationUrl`, s.revocationUrl) } : {}),
  };
  if (!s.usePkce && !s.clientSecret)
    throw fieldError(`${base}.usePkce`, 'a client without clientSecret must use PKCE');
  return {
    sealedValue: { ...secret, ...urls } as SecretInput,
    settings: {
      grantType: 'authorization_code',
      ...urls,
      clientId: s.clientId,
      scope: s.scope,
      usePkce: s.usePkce,
      authorizationParams: s.authorizationParams,
    } as Record<string, unknown>,
  };
}

/** customToken: the token URL checked like a target's; header names (not values) shown. */
function customTokenSettings(deps: Deps, secret: SecretInput) {
  const base = 'body.credentialSecret';
  const s = secret as {
    tokenRequest: { method: string; url: string; headers?: Record<string, string> };
  } & SecretInput;
  const url = checkedUrl(deps, `${base}.tokenRequest.url`, s.tokenRequest.url);
  const headerNames = Object.keys(s.tokenRequest.headers ?? {});
  for (const name of headerNames)
    if (RESERVED_HEADERS.has(name.toLowerCase()))
      throw fieldError(`${base}.tokenRequest.headers.${name}`, 'this header belongs to the transport');
  return {
    sealedValue: { ...secret, tokenRequest: { ...s.tokenRequest, url } } as SecretInput,
    settings: {
      tokenRequest: { method: s.tokenRequest.method, url, headerNames },
      tokenPath: s.tokenPath,
      expiresInPath: s.expiresInPath,
      injectAs: s.injectAs,
    } as Record<string, unknown>,
  };
}

/** Whether a credential is an oauth2 authorization_code one (consent, grant, revocation). */
function isAuthorizationCode(item: Pick<CredentialItem, 'credentialAuthType' | 'credentialSettings'>) {
  return item.credentialAuthType === 'oauth2' && item.credentialSettings.grantType === 'authorization_code';
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

/** How long a claim may wait for its credential to be written before it counts as orphaned. */
const CLAIM_GRACE_MS = 60_000;

/**
 * Claims a proxy secret's hash for a credential in the client's home partition, so one key serves
 * one identity: a supplied key another credential of this client already uses is a 409. A claim
 * whose credential does not exist is taken over after CLAIM_GRACE_MS (storage/home-claim.ts).
 */
async function claimSecretHash(
  deps: Deps,
  claim: { clientId: string; credentialId: string; credentialRegion: string },
  hash: string | undefined,
) {
  if (!hash) return;
  await claimInHome(deps.home, {
    key: keys.proxyKeyHash(claim.clientId, hash),
    item: { type: 'ProxyKeyHash', ...claim },
    owner: 'credentialId',
    holderLive: async (held) =>
      !!(await findInCells<CredentialItem>(
        deps,
        keys.credential(claim.clientId, String(held.credentialId)),
        'credentialRegion',
      )),
    taken: () =>
      new ConflictError(
        'body.credentialSecret: this secret is already used by another credential of this client; use one key per identity',
        'duplicate_key',
      ),
    graceMs: CLAIM_GRACE_MS,
    now: deps.now(),
  });
}

/** Releases a claim, only if it is still this credential's. */
async function releaseSecretHash(
  deps: Deps,
  clientId: string,
  credentialId: string,
  hash: string | undefined,
) {
  if (!hash) return;
  await releaseInHome(deps.home, keys.proxyKeyHash(clientId, hash), 'credentialId', credentialId);
}

/**
 * `credentialKeyLocations` applies to proxy credentials whose key is one string (apiKey/key,
 * bearer); basicAuth and jwtVerify are read from Authorization only.
 */
function checkKeyLocations(credentialType: string, authType: string, locations: string[] | null | undefined) {
  if (locations == null) return;
  if (credentialType !== 'proxy')
    throw fieldError('body.credentialKeyLocations', 'only applies to proxy credentials');
  if (!['apiKey', 'key', 'bearer'].includes(authType))
    throw fieldError(
      'body.credentialKeyLocations',
      `only applies to apiKey and bearer credentials, not ${authType}`,
    );
}

export async function createCredential(
  deps: Deps,
  caller: Caller,
  clientId: string,
  input: CredentialCreate,
  /** Where the provider sends the user back after consent (oauth2 authorization_code). */
  callbackUrl?: string,
) {
  await authorizeClient(deps, caller, clientId, 'admin');
  const cell = cellFor(deps, input.credentialRegion, 'body.credentialRegion');
  checkExpiry(deps, input.expiresAt);
  checkKeyLocations(input.credentialType, input.credentialAuthType, input.credentialKeyLocations);
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
    ...(input.credentialKeyLocations ? { credentialKeyLocations: input.credentialKeyLocations } : {}),
    credentialSettings: prepared.settings,
    credentialSecretHint: prepared.hint,
    secretHash: prepared.secretHash,
    sealedSecret: prepared.sealed,
    sealedConsent: prepared.sealedConsent,
    secretRevision: 1,
    secretUpdatedAt: now,
    createdAt: now,
    updatedAt: now,
  };
  if (isAuthorizationCode(item)) item.temporary = true;
  const claim = { clientId, credentialId, credentialRegion: input.credentialRegion };
  await claimSecretHash(deps, claim, prepared.secretHash);
  const key = keys.credential(clientId, credentialId);
  const stored = {
    ...key,
    type: 'Credential',
    ...keys.byRegion(item.credentialRegion, 'CREDENTIAL', clientId, credentialId),
    ...item,
  } as Key & Item;
  try {
    await retryOnConflict(clientId, async () => {
      await authorizeClient(deps, caller, clientId, 'admin');
      await commitChange(
        cell,
        clientId,
        { writes: [txCreate(cell, stored)], after: [[key, stored]], proxyIds: [] },
        deps.now(),
      );
    });
  } catch (error) {
    await releaseSecretHash(deps, clientId, credentialId, prepared.secretHash).catch(() => undefined);
    throw error;
  }
  if (item.temporary)
    return {
      ...view(item),
      ...(await startAuthorization(
        deps,
        cell,
        item,
        input.credentialSecret as AuthorizationCodeInput,
        callbackUrl!,
      )),
    };
  return prepared.generated ? { ...view(item), credentialSecret: prepared.generated } : view(item);
}

export async function listCredentials(
  deps: Deps,
  caller: Caller,
  clientId: string,
  query?: PageQuery & { includeTemporary?: 'true' | 'false' },
) {
  await authorizeClient(deps, caller, clientId, 'user');
  const where = keys.credentialsPrefix(clientId);
  const { items, nextToken } = await pageInCells<CredentialItem>(deps, where, 'credentialRegion', query);
  // Credentials waiting for consent are listed on request only (RequestRocket's includeTemporary);
  // a page may then hold fewer than `limit` items, and nextToken still leads on.
  const shown = query?.includeTemporary === 'true' ? items : items.filter((c) => !c.temporary);
  return listAnswer('credentials', shown.map(view), nextToken);
}

export async function getCredential(deps: Deps, caller: Caller, clientId: string, credentialId: string) {
  await authorizeClient(deps, caller, clientId, 'user');
  return view((await loadCredential(deps, clientId, credentialId)).item);
}

/**
 * Renames, sets or clears `expiresAt`, or replaces the secret in place (a generated proxy key is
 * answered once). The credential and the snapshot of every proxy using it change in one
 * transaction.
 */
export async function updateCredential(
  deps: Deps,
  caller: Caller,
  clientId: string,
  credentialId: string,
  input: CredentialUpdate,
  callbackUrl?: string,
) {
  await authorizeClient(deps, caller, clientId, 'admin');
  const first = await loadCredential(deps, clientId, credentialId);
  checkImmutable('credentialId', input.credentialId, first.item.credentialId);
  checkImmutable('clientId', input.clientId, first.item.clientId);
  checkImmutable('credentialType', input.credentialType, first.item.credentialType);
  checkImmutable('credentialAuthType', input.credentialAuthType, first.item.credentialAuthType);
  checkImmutable('credentialRegion', input.credentialRegion, first.item.credentialRegion);
  checkExpiry(deps, input.expiresAt);
  checkKeyLocations(first.item.credentialType, first.item.credentialAuthType, input.credentialKeyLocations);
  const { cell } = first;
  // The new secret is sealed (and a key generated) once, whatever retries follow; its encryption
  // context names the revision it replaces the current one with (no rollback to an older blob).
  const secretRevision = (first.item.secretRevision ?? 0) + 1;
  const prepared =
    input.credentialSecret === undefined
      ? undefined
      : await prepareSecret(
          deps,
          cell,
          { clientId, credentialId, secretRevision },
          first.item.credentialType,
          first.item.credentialAuthType as CredentialAuthType,
          input.credentialSecret,
        );
  const claim = { clientId, credentialId, credentialRegion: first.item.credentialRegion };
  if (prepared && prepared.secretHash !== first.item.secretHash)
    await claimSecretHash(deps, claim, prepared.secretHash);
  let before: CredentialItem;
  let updated: CredentialItem;
  try {
    [before, updated] = await retryOnConflict(clientId, async () => {
      await authorizeClient(deps, caller, clientId, 'admin');
      const { item } = await loadCredential(deps, clientId, credentialId);
      const now = deps.now().toISOString();
      const next: CredentialItem = {
        ...item,
        credentialName: input.credentialName ?? item.credentialName,
        expiresAt: input.expiresAt === null ? undefined : (input.expiresAt ?? item.expiresAt),
        credentialKeyLocations:
          input.credentialKeyLocations === null
            ? undefined
            : (input.credentialKeyLocations ?? item.credentialKeyLocations),
        updatedAt: now,
      };
      if (prepared) {
        // The blob was sealed for the revision after the one first read; another replacement in
        // between would make it unopenable: refuse rather than store it.
        if ((item.secretRevision ?? 0) + 1 !== secretRevision)
          throw new ConflictError('The secret was replaced concurrently; send it again', 'conflict');
        next.credentialSettings = prepared.settings;
        next.credentialSecretHint = prepared.hint;
        next.secretHash = prepared.secretHash;
        next.sealedSecret = prepared.sealed;
        next.sealedConsent = prepared.sealedConsent;
        next.secretRevision = secretRevision;
        next.secretUpdatedAt = now;
        // A new client, scopes or endpoints need a new consent: until then the proxies inject nothing.
        if (isAuthorizationCode(next)) next.temporary = true;
      }
      const proxies = await proxiesUsing(cell, clientId, usesCredential(credentialId));
      await commitReplace(
        cell,
        clientId,
        keys.credential(clientId, credentialId),
        { before: item, after: next, proxyIds: proxies.map((p) => p.proxyId) },
        deps.now(),
      );
      return [item, next] as const;
    });
  } catch (error) {
    if (prepared?.secretHash !== first.item.secretHash)
      await releaseSecretHash(deps, clientId, credentialId, prepared?.secretHash).catch(() => undefined);
    throw error;
  }
  if (before.secretHash !== updated.secretHash)
    await releaseSecretHash(deps, clientId, credentialId, before.secretHash);
  if (prepared && isAuthorizationCode(updated)) {
    await discardGrant(deps, cell, before);
    return {
      ...view(updated),
      ...(await startAuthorization(
        deps,
        cell,
        updated,
        input.credentialSecret as unknown as AuthorizationCodeInput,
        callbackUrl!,
      )),
    };
  }
  return prepared?.generated ? { ...view(updated), credentialSecret: prepared.generated } : view(updated);
}

/**
 * Deletes a credential: the item and the snapshot of every proxy using it change in one
 * transaction (the next proxied request with it fails), then its rules go (unreachable once the
 * credential is gone) with its meters, and its key claim is released. Request-log records stay.
 */
export async function deleteCredential(deps: Deps, caller: Caller, clientId: string, credentialId: string) {
  const { cell, item } = await retryOnConflict(clientId, async () => {
    await authorizeClient(deps, caller, clientId, 'admin');
    const { cell, item } = await loadCredential(deps, clientId, credentialId);
    const key = keys.credential(clientId, credentialId);
    const proxies = await proxiesUsing(cell, clientId, usesCredential(credentialId));
    await commitChange(
      cell,
      clientId,
      {
        writes: [txDelete(cell, key, versionOf(item as unknown as Item))],
        after: [[key, null]],
        proxyIds: proxies.map((p) => p.proxyId),
      },
      deps.now(),
    );
    return { cell, item };
  });
  const rules = await queryPrefix<Key>(cell, keys.rulesPrefix(clientId, 'credential', credentialId));
  const meters = await queryPrefix<Key>(cell, keys.metersPrefix(clientId, 'credential', credentialId));
  await deleteItems(
    cell,
    [...rules, ...meters].map((r) => ({ pk: r.pk, sk: r.sk })),
  );
  await releaseSecretHash(deps, clientId, credentialId, item.secretHash);
  if (isAuthorizationCode(item)) await discardGrant(deps, cell, item);
}

/**
 * A new authorization URL for an oauth2 authorization_code credential: for a consent that was never
 * completed, expired, or was withdrawn at the provider (the proxy then answers
 * `proxy-target-credential-pending`). The credential keeps working with its current grant until a
 * new consent replaces it.
 */
export async function authorizeCredential(
  deps: Deps,
  caller: Caller,
  clientId: string,
  credentialId: string,
  callbackUrl: string,
) {
  await authorizeClient(deps, caller, clientId, 'admin');
  const { cell, item } = await loadCredential(deps, clientId, credentialId);
  if (!isAuthorizationCode(item) || !item.sealedSecret)
    throw new BadRequestError(
      'Only oauth2 credentials with grantType authorization_code take a consent',
      'not_authorization_code',
    );
  return startAuthorization(deps, cell, item, await openConsent(cell, item), callbackUrl);
}
