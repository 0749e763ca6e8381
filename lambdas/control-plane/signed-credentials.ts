import { type JwtSecret, signingKeyFor } from '../data-plane/jwt-target.ts';
import { checkTargetUrl } from '../net/target-url.ts';
import type { Deps } from '../shared/deps.ts';
import { fieldError } from './validation.ts';

/**
 * The checks of `awsSigV4` and `jwt` target secrets that the schema cannot make, and what of them
 * reads show (`credentialSettings`). The whole secret is sealed either way; a read never shows a
 * jwt `key` (the role ARN of an awsSigV4 credential is not a secret, and is shown).
 *  - awsSigV4: shape only (signed-target-schemas.ts): whether the proxy may assume the role is
 *    decided by IAM (the CDK context `assumableTargetRoleArns`) and the role's trust policy, at
 *    the first request;
 *  - jwt: the key must be usable for the algorithm (an HS256 secret of ≥32 bytes, an RSA ≥2048-bit
 *    or a P-256 PEM private key), and `tokenUrl` passes the target URL rules (https, public).
 */
export function prepareSignedTargetSecret(
  deps: Deps,
  type: 'awsSigV4' | 'jwt',
  secret: Record<string, unknown>,
  base: string,
): { sealedValue: Record<string, unknown>; settings: Record<string, unknown> } {
  if (type === 'awsSigV4') {
    const { roleArn, externalId, service, region, sessionName } = secret;
    return {
      sealedValue: secret,
      settings: { roleArn, service, region, sessionName, externalIdSet: externalId !== undefined },
    };
  }
  const jwt = secret as unknown as JwtSecret;
  const key = signingKeyFor(jwt.algorithm, jwt.key);
  if (typeof key === 'string') throw fieldError(`${base}.key`, key, 'invalid_key');
  let tokenUrl: string | undefined;
  if (jwt.tokenUrl !== undefined) {
    const checked = checkTargetUrl(jwt.tokenUrl, deps.config.targetAllowlist, deps.config.ownPorts);
    if (!checked.ok) throw fieldError(`${base}.tokenUrl`, checked.reason, 'unsafe_url');
    tokenUrl = checked.url.href;
  }
  return {
    sealedValue: { ...jwt, tokenUrl },
    settings: {
      algorithm: jwt.algorithm,
      claims: jwt.claims,
      ttlSeconds: jwt.ttlSeconds,
      tokenUrl,
      header: jwt.header,
    },
  };
}
