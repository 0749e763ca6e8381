import { setTimeout as sleep } from 'node:timers/promises';
import type { DataKeyCache } from '../crypto/envelope.ts';
import type { Cell } from '../shared/deps.ts';
import {
  commitRefresh,
  type GrantItem,
  type GrantTokens,
  openGrant,
  readGrant,
  releaseLease,
  takeLease,
} from '../storage/oauth-grants.ts';
import { withDeadline } from './deadline.ts';
import { OAuth2Error } from './oauth2-tokens.ts';
import { DEFAULT_TOKEN_LIFETIME_S, type FetchedToken, refreshAtOf, type TokenCache } from './token-cache.ts';
import { requestToken, TokenEndpointError } from './token-endpoint.ts';
import type { UpstreamPolicy } from './upstream.ts';

/**
 * Access tokens of oauth2 `authorization_code` credentials (docs/target-auth-tokens.md), in three
 * layers, cheapest first:
 *  1. this instance's memory (token-cache.ts): the steady state costs no I/O at all;
 *  2. the grant item (storage/oauth-grants.ts), read when the memory has no usable token: another
 *     instance may have refreshed already, and its access token is used as is;
 *  3. a refresh at the provider (grant_type=refresh_token), by ONE refresher across all instances
 *     (a lease on the grant item), storing the new access token and a rotated refresh token
 *     (conditional on the version read). Instances that find the lease taken wait a little and
 *     read the grant again.
 * A token the vendor refused (401) is passed back as `refused`: it is then never reused, even from
 * the grant item, so exactly one refresh follows.
 */
export interface GrantRef {
  cell: Cell;
  clientId: string;
  credentialId: string;
  secretRevision: number;
}

export interface AuthorizationCodeSecret {
  tokenUrl: string;
  clientId: string;
  clientSecret?: string;
}

/** The credential has no usable consent (never given, withdrawn, or given for an older secret). */
export class ConsentRequiredError extends OAuth2Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ConsentRequiredError';
  }
}

/** Longer than a token call may take (the auxiliary policy's timeout) plus sealing and writing. */
const LEASE_MS = 15_000;
/** How long to wait for another instance's refresh, in all, before giving up (503-free 502). */
const WAIT_FOR_LEASE_MS = 20_000;

export class AuthorizationCodeTokens {
  private readonly policy: UpstreamPolicy;
  private readonly cache: TokenCache;
  private readonly dataKeys: DataKeyCache;
  private readonly now: () => number;
  private readonly dependencyMs: number;
  /** Refreshes made at the provider by this instance (tests, benchmark). */
  refreshes = 0;

  constructor(
    policy: UpstreamPolicy,
    cache: TokenCache,
    dataKeys: DataKeyCache,
    /** Deadline of each store or KMS step; past it the request fails closed (503). */
    dependencyMs: number,
    now: () => number = Date.now,
  ) {
    this.dependencyMs = dependencyMs;
    this.policy = policy;
    this.cache = cache;
    this.dataKeys = dataKeys;
    this.now = now;
  }

  private store<T>(work: Promise<T>): Promise<T> {
    return withDeadline(work, this.dependencyMs, 'the store');
  }

  private static keyOf(ref: GrantRef): string {
    return `ac:${ref.credentialId}:${ref.secretRevision}`;
  }

  /** A usable access token; `refused` is one the vendor just answered 401 to. */
  async token(ref: GrantRef, secret: AuthorizationCodeSecret, refused?: string): Promise<string> {
    const key = AuthorizationCodeTokens.keyOf(ref);
    if (refused) this.cache.invalidate(key, refused);
    return this.cache.get(key, () => this.fromGrant(ref, secret, refused));
  }

  private async fromGrant(
    ref: GrantRef,
    secret: AuthorizationCodeSecret,
    refused: string | undefined,
  ): Promise<FetchedToken> {
    const deadline = this.now() + WAIT_FOR_LEASE_MS;
    for (let attempt = 0; ; attempt++) {
      const grant = await this.store(readGrant(ref.cell, ref.credentialId));
      if (!grant || grant.clientId !== ref.clientId || grant.secretRevision !== ref.secretRevision)
        throw new ConsentRequiredError('the target credential awaits the user’s consent');
      const tokens = await withDeadline(openGrant(ref.cell, grant, this.dataKeys), this.dependencyMs, 'KMS');
      const stored = usable(tokens, refused, this.now());
      if (stored) return stored;
      if (!tokens.refreshToken)
        throw new ConsentRequiredError('the access token expired and the provider gave no refresh token');
      const until = this.now() + LEASE_MS;
      if (await this.store(takeLease(ref.cell, grant, this.now(), until)))
        return this.refresh(ref, secret, grant, tokens, until);
      if (this.now() > deadline)
        throw new OAuth2Error('another refresh of this grant did not finish in time');
      // Another instance is refreshing: its tokens will be in the grant shortly.
      await sleep(Math.min(50 * 2 ** attempt, 500));
    }
  }

  private async refresh(
    ref: GrantRef,
    secret: AuthorizationCodeSecret,
    grant: GrantItem,
    tokens: GrantTokens,
    until: number,
  ): Promise<FetchedToken> {
    const fetchedAt = this.now();
    this.refreshes++;
    let answer: Awaited<ReturnType<typeof requestToken>>;
    try {
      answer = await requestToken(
        secret.tokenUrl,
        {
          grant_type: 'refresh_token',
          refresh_token: tokens.refreshToken,
          client_id: secret.clientId,
          client_secret: secret.clientSecret,
        },
        this.policy,
      );
    } catch (error) {
      await this.store(releaseLease(ref.cell, grant, until)).catch(() => undefined);
      if (error instanceof TokenEndpointError && error.oauthError === 'invalid_grant')
        throw new ConsentRequiredError('the provider refused the refresh token; consent is needed again', {
          cause: error,
        });
      throw error;
    }
    const expiresAt = fetchedAt + (answer.expiresInS ?? DEFAULT_TOKEN_LIFETIME_S) * 1000;
    // A provider that rotates sends a new refresh token; one that does not keeps the old one valid.
    await this.store(
      commitRefresh(
        ref.cell,
        grant,
        until,
        {
          refreshToken: answer.refreshToken ?? tokens.refreshToken,
          accessToken: answer.accessToken,
          accessExpiresAt: expiresAt,
          accessFetchedAt: fetchedAt,
        },
        new Date(fetchedAt),
      ),
    );
    return { token: answer.accessToken, expiresAt, fetchedAt };
  }
}

/** The grant's access token, if it is not the refused one and not inside its refresh margin. */
function usable(tokens: GrantTokens, refused: string | undefined, now: number): FetchedToken | undefined {
  if (!tokens.accessToken || tokens.accessToken === refused || !tokens.accessExpiresAt) return undefined;
  const fetched = {
    token: tokens.accessToken,
    expiresAt: tokens.accessExpiresAt,
    // Unknown: read as fetched 10 min before expiry, i.e. the full 60 s margin.
    fetchedAt: tokens.accessFetchedAt ?? tokens.accessExpiresAt - 600_000,
  };
  return refreshAtOf(fetched) > now ? fetched : undefined;
}
