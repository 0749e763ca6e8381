import type { SealedSecret } from '../crypto/envelope.ts';
import type { Effect, Rule } from '../rules/types.ts';

/**
 * The hot-path view of one proxy: everything a proxied request needs, in one item
 * (keys.proxySnapshot), read with one strongly consistent GetItem. The Core API rewrites it on
 * every change to anything it contains (proxy, either credential, target, any rule of the four
 * scopes) and deletes it when the proxy goes; a deleted or expired credential leaves the proxy
 * without a usable credential, so the next request fails.
 */
export interface ProxyCredentialView {
  credentialId: string;
  /** apiKey | bearer | basicAuth | jwtVerify (normalised; `key` is stored as apiKey). */
  credentialAuthType: string;
  /** SHA-256 hex of the presented secret (key, token, or `username:password` for basicAuth). */
  secretHash?: string;
  /** bearer: the prefix the consumer sends before the token. */
  prefix?: string;
  /** Where the key may be presented (data-plane/key-locations.ts); absent: `["authorization"]`. */
  credentialKeyLocations?: string[];
  /**
   * jwtVerify: verification settings; a shared secret stays sealed (the secret string itself, not
   * JSON, under encryption context { clientId, credentialId }).
   */
  jwt?: { jwksUrl?: string; sealedSecret?: SealedSecret; issuer?: string; audience?: string };
  /** The credential's secret revision: part of the sealed secret's context (crypto/envelope.ts). */
  secretRevision?: number;
  expiresAt?: string;
}

export interface TargetCredentialView {
  credentialId: string;
  /** apiKey | bearer | basicAuth | custom | oauth2 | none */
  credentialAuthType: string;
  /**
   * The whole credentialSecret object, JSON, envelope-encrypted under context {clientId, credentialId},
   * with defaults applied by the Core API: apiKey `{ key, headerName }` (default `X-API-Key`) or
   * `{ key, queryParam }`; bearer `{ token, prefix }` (default `Bearer `); basicAuth
   * `{ username, password }`; custom `{ headers }`; oauth2 `{ tokenUrl, clientId, clientSecret,
   * scope?, audience? }`; none `{}`.
   */
  sealedSecret?: SealedSecret;
  /** The credential's secret revision: part of the sealed secret's context (crypto/envelope.ts). */
  secretRevision?: number;
  expiresAt?: string;
}

/**
 * A meter as the data plane applies it (data-plane/meters.ts, docs/meters.md): on the proxy itself
 * (`proxy`) or on its target credential (`credential`: one budget for every proxy of that secret).
 */
export interface MeterView {
  meterId: string;
  scope: 'proxy' | 'credential';
  meterName: string;
  meterType: 'request_count' | 'response_value';
  /** response_value: where the value is in the vendor's answer (`$.usage.total_tokens`). */
  valuePath?: string;
  methods?: string[];
  /** RE2 pattern on the normalised path; absent: every path. */
  pathPattern?: string;
  window: 'minute' | 'hour' | 'day' | 'month';
  limit: number;
  /** block: an exhausted meter refuses calls (429); flag: it only raises the flag. */
  action: 'block' | 'flag';
}

export interface ProxySnapshot {
  proxyId: string;
  /** The proxy's alias: this snapshot is also stored under keys.aliasSnapshot(alias). */
  proxyAlias?: string;
  clientId: string;
  proxyRegion: string;
  proxyActive: boolean;
  proxyDefaultRuleEffect: Effect;
  proxyMaxRequestsPerMinute?: number;
  proxyMaxRequestsPerDay?: number;
  /** The proxy's own deadlines for the call out (docs/streaming.md); absent: the defaults. */
  proxyTimeouts?: { firstByteMs?: number; idleMs?: number; totalMs?: number };
  target: { targetId: string; targetBaseURL: string; targetDefaultRuleEffect: Effect };
  /** Absent when the credential was deleted: every request then fails authentication. */
  proxyCredential?: ProxyCredentialView;
  targetCredential?: TargetCredentialView;
  rules: { proxyCredential: Rule[]; targetCredential: Rule[]; proxy: Rule[]; target: Rule[] };
  /** The proxy's meters and its target credential's (absent: none). */
  meters?: MeterView[];
  /** Monotonic; conditional writes keep a stale rebuild from overwriting a newer one. */
  version: number;
  builtAt: string;
}
