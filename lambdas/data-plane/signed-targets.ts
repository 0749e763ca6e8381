import type { STSClient } from '@aws-sdk/client-sts';
import type { Injection } from './inject-credential.ts';
import { type JwtSecret, JwtTokenCache } from './jwt-target.ts';
import {
  AssumedRoleCache,
  queryOf,
  type SigV4Secret,
  signableQuery,
  signUpstreamRequest,
} from './sigv4-target.ts';
import type { UpstreamPolicy, UpstreamRequest } from './upstream.ts';

/**
 * The target credential types keygate signs for, rather than injecting a stored value:
 * `awsSigV4` (each request signed with an assumed role's temporary credentials, sigv4-target.ts)
 * and `jwt` (a JWT signed per lifetime, sent as bearer or exchanged, jwt-target.ts). Both caches
 * live as long as the proxy handler, like the data-key and oauth2 token caches.
 */
export const SIGNED_TARGET_TYPES: ReadonlySet<string> = new Set(['awsSigV4', 'jwt']);

export interface SignedTarget {
  /** Headers to set (consumer copies replaced), as for every other type. */
  injection: Injection;
  /**
   * awsSigV4: throws SignedRequestError (a 400) when a request with this path and query cannot be
   * signed as sent — called before the call-out record, so a refused request leaves none.
   */
  check?: (pathAndQuery: string) => void;
  /** awsSigV4: the headers to send for the final request, signed. */
  sign?: (req: UpstreamRequest) => Promise<Record<string, string>>;
  /** jwt: the injection with a fresh token, after the vendor refused this one (401). */
  refresh?: () => Promise<Injection>;
}

export class SignedTargets {
  readonly roles: AssumedRoleCache;
  readonly jwts: JwtTokenCache;

  constructor(policy: UpstreamPolicy, now: () => number = Date.now) {
    this.roles = new AssumedRoleCache(now);
    this.jwts = new JwtTokenCache(policy, now);
  }

  /** What a signed target credential adds to a request (credentials or token fetched as needed). */
  async prepare(
    sts: STSClient,
    credentialId: string,
    authType: string,
    secretJson: string,
    secret: Record<string, unknown>,
  ): Promise<SignedTarget> {
    if (authType === 'jwt') {
      const jwt = secret as unknown as JwtSecret;
      const bearer = (token: string): Injection => ({ headers: { authorization: `Bearer ${token}` } });
      const token = await this.jwts.token(credentialId, secretJson, jwt);
      return {
        injection: bearer(token),
        refresh: async () => bearer(await this.jwts.token(credentialId, secretJson, jwt, token)),
      };
    }
    const sigv4 = secret as unknown as SigV4Secret;
    const credentials = await this.roles.credentials(sts, credentialId, secretJson, sigv4);
    return {
      injection: { headers: {} },
      check: (pathAndQuery) => void signableQuery(queryOf(pathAndQuery)),
      sign: (req) => signUpstreamRequest(req, sigv4, credentials),
    };
  }
}
