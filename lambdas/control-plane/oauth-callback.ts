import { createHash, randomBytes } from 'node:crypto';
import { DeleteCommand, PutCommand } from '@aws-sdk/lib-dynamodb';
import * as z from 'zod/mini';
import { credentialContext, openSecret } from '../crypto/envelope.ts';
import { DEFAULT_TOKEN_LIFETIME_S } from '../data-plane/token-cache.ts';
import { requestToken, revokeToken, TokenEndpointError } from '../data-plane/token-endpoint.ts';
import type { UpstreamPolicy } from '../data-plane/upstream.ts';
import type { Cell, Deps } from '../shared/deps.ts';
import {
  BadRequestError,
  ConflictError,
  DependencyUnavailableError,
  isAwsDependencyError,
  KeygateError,
} from '../shared/errors.ts';
import type { HttpEvent } from '../shared/http.ts';
import { logger } from '../shared/logger.ts';
import type { CredentialItem } from '../storage/items.ts';
import { keys } from '../storage/keys.ts';
import { deleteGrant, type GrantItem, openGrant, putConsentGrant } from '../storage/oauth-grants.ts';
import { commitReplace } from '../storage/snapshot.ts';
import { isConditionFailure } from '../storage/table.ts';
import { retryOnConflict } from '../storage/transact.ts';
import { proxiesUsing } from './cells.ts';
import { loadCredential, sealWithKms } from './credentials.ts';
import { upTo } from './schema-parts.ts';

/**
 * oauth2 `authorization_code` consent (docs/target-auth-tokens.md), RFC 6749 §4.1 with PKCE
 * (RFC 7636, S256):
 *  1. creating the credential (or asking for a new authorization URL) stores a pending consent:
 *     a random `state` (256 bits; only its SHA-256 is stored, in the home table, keys.ts pattern
 *     23), the credential it is bound to and the secret revision, the PKCE verifier sealed with KMS,
 *     the redirect URI, and an expiry (10 minutes);
 *  2. the user opens the authorization URL and consents; the provider redirects the browser to
 *     `GET /oauth2/callback?code=…&state=…` on the Core API — no user token there: the state is the
 *     authentication, and it is single use (a conditional delete) and expiring;
 *  3. the callback exchanges the code (with the verifier) at the token endpoint, stores the tokens
 *     sealed (storage/oauth-grants.ts), then — last, as a granting change — clears the credential's
 *     `temporary` mark in the same transaction as the snapshots of the proxies that use it.
 * Deleting the credential deletes the grant and then revokes the refresh token at `revocationUrl`
 * (RFC 7009), best effort: a provider that fails or is slow never holds the deletion back.
 *
 * The Core API never opens a credential's own sealed secret (its role may not: lib/cell-key.ts
 * CORE_API_OPENS). What the consent needs is sealed apart when the secret is stored
 * (`sealedConsent`, context `<id>#consent`), and every step here opens that blob instead.
 */
export const CALLBACK_PATH = '/oauth2/callback';
export const CONSENT_TTL_MS = 10 * 60_000;
/** Token and revocation endpoints: small answers, short deadlines. */
const REVOCATION_TIMEOUT_MS = 3000;

export interface AuthorizationCodeInput {
  grantType: 'authorization_code';
  authorizationUrl: string;
  tokenUrl: string;
  clientId: string;
  clientSecret?: string;
  scope?: string;
  usePkce: boolean;
  revocationUrl?: string;
  authorizationParams?: Record<string, string>;
}

/** The encryption context of a credential's consent blob: the only one of its blobs the Core API opens. */
export function consentContext(clientId: string, credentialId: string, secretRevision?: number) {
  return credentialContext(clientId, `${credentialId}#consent`, secretRevision);
}

/**
 * What a consent reads of the secret, field by field: the authorization URL and its parameters,
 * the token exchange (client id and secret, PKCE) and the revocation at deletion.
 */
export function consentPart(secret: AuthorizationCodeInput): AuthorizationCodeInput {
  const { grantType, authorizationUrl, tokenUrl, clientId, clientSecret, scope, usePkce } = secret;
  const { revocationUrl, authorizationParams } = secret;
  return {
    grantType,
    authorizationUrl,
    tokenUrl,
    clientId,
    clientSecret,
    scope,
    usePkce,
    revocationUrl,
    authorizationParams,
  };
}

/**
 * Opens the consent blob of an authorization_code credential (KMS faults: 503). A credential stored
 * before consent blobs existed has none: 409, its secret must be sent again (PUT) — the Core API
 * may not open the main blob to make one.
 */
export async function openConsent(
  cell: Cell,
  item: Pick<CredentialItem, 'clientId' | 'credentialId' | 'secretRevision' | 'sealedConsent'>,
): Promise<AuthorizationCodeInput> {
  if (!item.sealedConsent)
    throw new ConflictError(
      'This credential was stored before consent secrets were sealed apart; send its credentialSecret again (PUT) to take a consent',
      'consent_secret_missing',
    );
  const json = await kms(
    openSecret(
      cell.kms,
      item.sealedConsent,
      consentContext(item.clientId, item.credentialId, item.secretRevision),
    ),
  );
  return JSON.parse(json) as AuthorizationCodeInput;
}

interface PendingConsent {
  clientId: string;
  credentialId: string;
  credentialRegion: string;
  secretRevision: number;
  redirectUri: string;
  sealedVerifier?: CredentialItem['sealedSecret'];
  expiresAt: string;
}

export const callbackQuerySchema = z.object({
  state: z.optional(upTo(512)),
  code: z.optional(upTo(4096)),
  error: z.optional(upTo(256)),
  error_description: z.optional(upTo(2048)),
  error_uri: z.optional(upTo(2048)),
  scope: z.optional(upTo(4096)),
  iss: z.optional(upTo(2048)),
});
export type CallbackQuery = z.infer<typeof callbackQuerySchema>;

function policyOf(deps: Deps, timeoutMs = 10_000): UpstreamPolicy {
  return {
    allowlist: deps.config.targetAllowlist,
    ownPorts: deps.config.ownPorts,
    timeoutMs,
    maxResponseBytes: 1024 * 1024,
  };
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');
const base64url = (b: Buffer) => b.toString('base64url');

/**
 * The Core API's callback URL as the caller reached it: its host, `http` for a loopback host and
 * `https` otherwise (or what `x-forwarded-proto` says), and the stage of an execute-api host.
 */
export function callbackUrlOf(event: HttpEvent): string {
  const context = event.requestContext as { domainName?: string; stage?: string } | undefined;
  const host = event.headers?.host ?? context?.domainName ?? 'localhost';
  const loopback = /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])(:\d+)?$/.test(host);
  const proto = event.headers?.['x-forwarded-proto'] === 'http' || loopback ? 'http' : 'https';
  const stage =
    context?.stage && context.stage !== '$default' && host.includes('.execute-api.')
      ? `/${context.stage}`
      : '';
  return `${proto}://${host}${stage}${CALLBACK_PATH}`;
}

async function kms<T>(work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (error) {
    if (isAwsDependencyError(error)) throw new DependencyUnavailableError('kms', error);
    throw error;
  }
}

/**
 * Stores a pending consent for the credential (as it now is: its secret revision) and answers the
 * URL the user opens. Earlier pending consents of the credential stay valid until they expire, but
 * one made for an older secret revision is refused by the callback.
 */
export async function startAuthorization(
  deps: Deps,
  cell: Cell,
  credential: Pick<CredentialItem, 'clientId' | 'credentialId' | 'credentialRegion' | 'secretRevision'>,
  secret: AuthorizationCodeInput,
  redirectUri: string,
): Promise<{ authorizationUrl: string; authorizationExpiresAt: string }> {
  // Hex: no answer masking (telemetry/masking.ts) can ever mistake it for a vendor key's shape.
  const state = randomBytes(32).toString('hex');
  const verifier = secret.usePkce ? base64url(randomBytes(48)) : undefined;
  const secretRevision = credential.secretRevision ?? 0;
  const expiresAt = new Date(deps.now().getTime() + CONSENT_TTL_MS);
  const pending: PendingConsent = {
    clientId: credential.clientId,
    credentialId: credential.credentialId,
    credentialRegion: credential.credentialRegion,
    secretRevision,
    redirectUri,
    expiresAt: expiresAt.toISOString(),
    sealedVerifier: verifier
      ? await sealWithKms(
          cell,
          verifier,
          credentialContext(credential.clientId, `${credential.credentialId}#pkce`, secretRevision),
        )
      : undefined,
  };
  await deps.home.ddb.send(
    new PutCommand({
      TableName: deps.home.tableName,
      Item: {
        ...keys.oauthState(sha256(state)),
        type: 'OAuthState',
        ...pending,
        ttl: Math.ceil(expiresAt.getTime() / 1000),
      },
      ConditionExpression: 'attribute_not_exists(pk)',
    }),
  );
  const url = new URL(secret.authorizationUrl);
  for (const [k, v] of Object.entries(secret.authorizationParams ?? {})) url.searchParams.set(k, v);
  url.searchParams.set('response_type', 'code');
  url.searchParams.set('client_id', secret.clientId);
  url.searchParams.set('redirect_uri', redirectUri);
  if (secret.scope) url.searchParams.set('scope', secret.scope);
  url.searchParams.set('state', state);
  if (verifier) {
    url.searchParams.set('code_challenge', base64url(createHash('sha256').update(verifier).digest()));
    url.searchParams.set('code_challenge_method', 'S256');
  }
  return { authorizationUrl: url.href, authorizationExpiresAt: pending.expiresAt };
}

/** Takes the pending consent of `state` out of the table: at most one caller ever gets it. */
async function claimState(deps: Deps, state: string): Promise<PendingConsent> {
  let out: { Attributes?: Record<string, unknown> };
  try {
    out = await deps.home.ddb.send(
      new DeleteCommand({
        TableName: deps.home.tableName,
        Key: keys.oauthState(sha256(state)),
        ConditionExpression: 'attribute_exists(pk)',
        ReturnValues: 'ALL_OLD',
      }),
    );
  } catch (error) {
    if (isConditionFailure(error))
      throw new BadRequestError(
        'state: unknown, already used or expired; start the consent again',
        'invalid_state',
      );
    throw error;
  }
  const pending = out.Attributes as unknown as PendingConsent;
  if (Date.parse(pending.expiresAt) <= deps.now().getTime())
    throw new BadRequestError('state: expired; start the consent again', 'invalid_state');
  return pending;
}

const ERROR_CODE = /^[a-z_]{1,64}$/;

/**
 * The provider's redirect after consent. Answers what happened, never a token. Every failure is a
 * 4xx naming the step (or 502 when the provider's token endpoint refused or failed).
 */
export async function completeAuthorization(deps: Deps, query: CallbackQuery) {
  if (!query.state) throw new BadRequestError('state: required', 'invalid_state');
  const pending = await claimState(deps, query.state);
  if (query.error) {
    const code = ERROR_CODE.test(query.error) ? query.error : 'error';
    throw new BadRequestError(`The provider answered ${code}: consent was not given`, 'consent_denied');
  }
  if (!query.code) throw new BadRequestError('code: required', 'invalid_request');
  const { cell, item } = await loadCredential(deps, pending.clientId, pending.credentialId);
  const revision = item.secretRevision ?? 0;
  if (revision !== pending.secretRevision || !item.sealedSecret)
    throw new ConflictError(
      'The credential’s secret was replaced after this authorization URL was made; use the newest one',
      'stale_state',
    );
  const secret = await openConsent(cell, item);
  const verifier = pending.sealedVerifier
    ? await kms(
        openSecret(
          cell.kms,
          pending.sealedVerifier,
          credentialContext(item.clientId, `${item.credentialId}#pkce`, revision),
        ),
      )
    : undefined;
  const fetchedAt = deps.now().getTime();
  let answer: Awaited<ReturnType<typeof requestToken>>;
  try {
    answer = await requestToken(
      secret.tokenUrl,
      {
        grant_type: 'authorization_code',
        code: query.code,
        redirect_uri: pending.redirectUri,
        client_id: secret.clientId,
        client_secret: secret.clientSecret,
        code_verifier: verifier,
      },
      policyOf(deps),
    );
  } catch (error) {
    if (error instanceof TokenEndpointError)
      throw new KeygateError(502, 'token_exchange_failed', `The code exchange failed: ${error.message}`);
    throw error;
  }
  const ids = { clientId: item.clientId, credentialId: item.credentialId, secretRevision: revision };
  await kms(
    putConsentGrant(
      cell,
      ids,
      {
        refreshToken: answer.refreshToken,
        accessToken: answer.accessToken,
        accessExpiresAt: fetchedAt + (answer.expiresInS ?? DEFAULT_TOKEN_LIFETIME_S) * 1000,
        accessFetchedAt: fetchedAt,
      },
      deps.now(),
    ),
  );
  // Granting change, last: the proxies see the credential active only once its tokens are stored.
  await retryOnConflict(item.clientId, async () => {
    const current = (await loadCredential(deps, item.clientId, item.credentialId)).item;
    if ((current.secretRevision ?? 0) !== revision)
      throw new ConflictError(
        'The credential’s secret was replaced during the consent; start again',
        'stale_state',
      );
    const now = deps.now().toISOString();
    // commitReplace merges `after` over the item read; an undefined field is dropped.
    const next: CredentialItem = { ...current, temporary: undefined, consentedAt: now, updatedAt: now };
    const proxies = await proxiesUsing(
      cell,
      item.clientId,
      (p) => p.proxyTargetCredentialId === item.credentialId,
    );
    await commitReplace(
      cell,
      item.clientId,
      keys.credential(item.clientId, item.credentialId),
      { before: current, after: next, proxyIds: proxies.map((p) => p.proxyId) },
      deps.now(),
    );
  });
  return {
    message: 'Consent recorded: the credential is active',
    clientId: item.clientId,
    credentialId: item.credentialId,
    credentialName: item.credentialName,
    refreshable: answer.refreshToken !== undefined,
  };
}

/**
 * After a credential was deleted (or its secret replaced): deletes its grant and revokes the refresh
 * token at the provider when the secret names a `revocationUrl`. Never throws: the deletion has
 * happened already and stands whatever the provider does; failures are logged without any token.
 */
export async function discardGrant(deps: Deps, cell: Cell, item: CredentialItem): Promise<void> {
  let grant: GrantItem | undefined;
  try {
    grant = await deleteGrant(cell, item.credentialId);
    if (!grant) return;
    if (!item.sealedConsent) {
      // Stored before consent blobs: the Core API cannot read its revocationUrl; the grant is gone.
      logger.warn('oauth2 revocation skipped: no consent secret', { credentialId: item.credentialId });
      return;
    }
    const secret = await openConsent(cell, item);
    if (!secret.revocationUrl) return;
    const tokens = await openGrant(cell, grant);
    const token = tokens.refreshToken ?? tokens.accessToken;
    if (!token) return;
    const status = await revokeToken(
      secret.revocationUrl,
      {
        token,
        token_type_hint: tokens.refreshToken ? 'refresh_token' : 'access_token',
        client_id: secret.clientId,
        client_secret: secret.clientSecret,
      },
      policyOf(deps, REVOCATION_TIMEOUT_MS),
    );
    if (status !== 200) logger.warn('oauth2 revocation refused', { credentialId: item.credentialId, status });
  } catch (error) {
    logger.warn('oauth2 revocation failed', {
      credentialId: item.credentialId,
      error: (error as Error)?.name ?? typeof error,
    });
  }
}
