import type { DataKeyCache } from '../crypto/envelope.ts';
import type { Cell } from '../shared/deps.ts';
import type { TargetCredentialView } from '../storage/snapshot-types.ts';
import { type AuthorizationCodeSecret, AuthorizationCodeTokens } from './authorization-code.ts';
import { type CustomTokenSecret, fetchCustomToken } from './custom-token.ts';
import { type OAuth2Secret, OAuth2TokenCache } from './oauth2-tokens.ts';
import { TokenCache } from './token-cache.ts';
import type { UpstreamPolicy } from './upstream.ts';

/**
 * Which target credentials carry a fetched token, and where it comes from: oauth2 client
 * credentials (oauth2-tokens.ts), oauth2 authorization code (authorization-code.ts) and
 * customToken (custom-token.ts). Every kind is cached per instance, fetched once for concurrent
 * callers, and fetched anew after the vendor refused it (`refused`): the proxy then retries once.
 */
export interface TokenSource {
  cell: Cell;
  clientId: string;
  credential: TargetCredentialView;
  secret: Record<string, unknown>;
  /** The opened secret, as sealed (client-credentials tokens are keyed by its digest). */
  secretJson: string;
}

export class TargetTokens {
  private readonly clientCredentials: OAuth2TokenCache;
  private readonly cache = new TokenCache();
  private readonly authorizationCode: AuthorizationCodeTokens;
  private readonly policy: UpstreamPolicy;

  constructor(policy: UpstreamPolicy, dataKeys: DataKeyCache, dependencyMs: number) {
    this.policy = policy;
    this.clientCredentials = new OAuth2TokenCache(policy);
    this.authorizationCode = new AuthorizationCodeTokens(policy, this.cache, dataKeys, dependencyMs);
  }

  /** The token to inject, or undefined for credential types that carry none. */
  async token(source: TokenSource, refused?: string): Promise<string | undefined> {
    const { credential, secret } = source;
    if (credential.credentialAuthType === 'customToken') {
      const key = `ct:${credential.credentialId}:${credential.secretRevision ?? 0}`;
      if (refused) this.cache.invalidate(key, refused);
      return this.cache.get(key, () => fetchCustomToken(secret as unknown as CustomTokenSecret, this.policy));
    }
    if (credential.credentialAuthType !== 'oauth2') return undefined;
    if (secret.grantType === 'authorization_code')
      return this.authorizationCode.token(
        {
          cell: source.cell,
          clientId: source.clientId,
          credentialId: credential.credentialId,
          secretRevision: credential.secretRevision ?? 0,
        },
        secret as unknown as AuthorizationCodeSecret,
        refused,
      );
    const key = OAuth2TokenCache.keyFor(credential.credentialId, source.secretJson);
    if (refused) this.clientCredentials.invalidate(key, refused);
    return this.clientCredentials.token(key, secret as unknown as OAuth2Secret);
  }
}
