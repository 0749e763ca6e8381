import type { SealedSecret } from '../crypto/envelope.ts';
import type { Effect, Rule } from '../rules/types.ts';
import type { MeterScope, RuleScope as ParentType } from './keys.ts';
import type { MeterView } from './snapshot-types.ts';

/**
 * Stored shapes of the Core API's resources in a cell table (keys in keys.ts). The control plane
 * writes them; the snapshot builder (snapshot.ts) reads them.
 */
export interface CredentialItem {
  credentialId: string;
  clientId: string;
  credentialType: 'proxy' | 'target';
  /** As the user spelled it (`key` stays `key`); snapshots carry the normalised `apiKey`. */
  credentialAuthType: string;
  credentialName: string;
  credentialRegion: string;
  expiresAt?: string;
  /** The non-secret parts of credentialSecret (header name, prefix, token URL, JWKS URL…). */
  credentialSettings: Record<string, unknown>;
  /** What may be shown of the secret: its kind, readable prefix and last four characters. */
  credentialSecretHint?: { type: string; prefix?: string; last4?: string };
  /** Proxy credentials: where the key may be presented (absent: `["authorization"]`). */
  credentialKeyLocations?: string[];
  /** Proxy credentials: SHA-256 hex of what the consumer presents. */
  secretHash?: string;
  /** Target credentials: the whole credentialSecret, sealed; jwtVerify: the shared secret, sealed. */
  sealedSecret?: SealedSecret;
  /**
   * oauth2 authorization_code: what a consent needs of the secret, sealed apart under the context
   * `{ clientId, credentialId: "<id>#consent", secretRevision }` — the one blob of a credential
   * the Core API may open (docs/target-auth-tokens.md). Never shown, never in a snapshot.
   */
  sealedConsent?: SealedSecret;
  /** Bumped on every secret change; part of the sealed secret's encryption context (no rollback). */
  secretRevision?: number;
  secretUpdatedAt: string;
  /**
   * oauth2 authorization_code: true until the user's consent was recorded (docs/target-auth-tokens.md);
   * such a credential is listed only with `?includeTemporary=true` and injects nothing.
   */
  temporary?: boolean;
  /** oauth2 authorization_code: when the last consent was recorded. */
  consentedAt?: string;
  createdAt: string;
  updatedAt: string;
}

export interface TargetItem {
  targetId: string;
  clientId: string;
  targetName: string;
  targetBaseURL: string;
  targetTestPath?: string;
  targetRegion: string;
  targetDefaultRuleEffect: Effect;
  createdAt: string;
  updatedAt: string;
}

/** A proxy's own deadlines for the call out, each optional (ms). */
export interface ProxyTimeouts {
  firstByteMs?: number;
  idleMs?: number;
  totalMs?: number;
}

export interface ProxyItem {
  proxyId: string;
  clientId: string;
  proxyName: string;
  proxyAlias?: string;
  proxyRegion: string;
  proxyProxyCredentialId: string;
  proxyTargetId: string;
  proxyTargetCredentialId: string;
  proxyDefaultRuleEffect: Effect;
  proxyActive: boolean;
  proxyMaxRequestsPerMinute: number;
  proxyMaxRequestsPerDay: number;
  /** Deadlines of forwarded calls, in ms (docs/streaming.md); absent: the deployment's defaults. */
  proxyTimeouts?: ProxyTimeouts;
  createdAt: string;
  updatedAt: string;
}

export interface RuleItem extends Rule {
  clientId: string;
  parentType: ParentType;
  parentId: string;
  createdAt: string;
  updatedAt: string;
}

export interface MeterItem extends Omit<MeterView, 'scope'> {
  clientId: string;
  parentType: MeterScope;
  parentId: string;
  createdAt: string;
  updatedAt: string;
}

/** `key` is an alias of `apiKey`. */
export function normalizeAuthType(authType: string): string {
  return authType === 'key' ? 'apiKey' : authType;
}
