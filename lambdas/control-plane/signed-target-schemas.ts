import * as z from 'zod/mini';
import { JWT_ALGORITHMS } from '../data-plane/jwt-target.ts';
import { AWS_REGION, AWS_ROLE_ARN, AWS_SIGNING_NAME } from '../shared/aws-names.ts';
import { text, upTo, wholeNumber } from './schema-parts.ts';

/**
 * `credentialSecret` of the target types keygate signs for (docs/target-auth-signing.md). Shape
 * checks only; what needs crypto or the network policy (PEM parsing, key/algorithm match, the token
 * URL) is checked in signed-credentials.ts.
 */
const JWT_RESERVED_CLAIMS = ['iat', 'exp', 'jti'];
const JWT_RESERVED_HEADERS = ['alg', 'crit', 'b64', 'jku', 'jwk', 'x5u'];

export const awsSigV4SecretSchema = z
  .strictObject({
    roleArn: upTo(2048).check(
      z.regex(AWS_ROLE_ARN, 'an IAM role ARN (arn:aws:iam::<12-digit account>:role/<name>)'),
    ),
    externalId: z.optional(
      text(2, 1224).check(z.regex(/^[\w+=,.@:/-]+$/, 'letters, digits and +=,.@:/- only (STS)')),
    ),
    service: z.string().check(
      z.regex(AWS_SIGNING_NAME, 'an AWS signing name, e.g. bedrock'),
      z.refine((s) => s !== 'bedrock-runtime', 'Bedrock Runtime signs as service "bedrock"'),
    ),
    region: upTo(32).check(z.regex(AWS_REGION, 'an AWS region, e.g. us-east-1')),
    sessionName: z.optional(
      z.string().check(z.regex(/^[\w+=,.@-]{2,64}$/, '2–64 characters of letters, digits and +=,.@- (STS)')),
    ),
  })
  .check(
    z.meta({
      description:
        'Target only. Each request is signed (SigV4) with temporary credentials of this role, assumed by the proxy (STS AssumeRole); no AWS key is stored.',
    }),
  );

export const jwtSecretSchema = z
  .strictObject({
    algorithm: z.enum(JWT_ALGORITHMS),
    key: text(1, 16_384).check(
      z.meta({
        description: 'HS256: the shared secret (≥32 bytes); RS256/ES256: a PEM private key. Write-only.',
      }),
    ),
    claims: z.record(text(1, 256), z.unknown()).check(
      z.refine((c) => JSON.stringify(c).length <= 8192, 'at most 8 KiB of claims'),
      z.refine((c) => !JWT_RESERVED_CLAIMS.some((n) => n in c), 'iat, exp and jti are filled per token'),
      z.meta({
        description: 'Claims template (iss, sub, aud, scope, …); iat, exp and jti are added per token',
      }),
    ),
    ttlSeconds: z
      .optional(wholeNumber(30, 86_400))
      .check(z.meta({ description: 'Token lifetime; default 300' })),
    tokenUrl: z.optional(text(1, 2048)).check(
      z.meta({
        description: 'Exchange the JWT here (RFC 7523 JWT bearer grant) and send the access token',
      }),
    ),
    header: z
      .optional(
        z.record(text(1, 64), upTo(1024)).check(
          z.refine(
            (h) => !JWT_RESERVED_HEADERS.some((n) => n in h),
            'alg, crit, b64, jku, jwk and x5u are not settable',
          ),
          z.refine((h) => Object.keys(h).length <= 10, 'at most 10 header parameters'),
        ),
      )
      .check(z.meta({ description: 'Extra protected-header parameters, e.g. {"kid": "…"}' })),
  })
  .check(
    z.meta({
      description:
        'Target only. A JWT signed by keygate (cached until near expiry), sent as Authorization: Bearer, or exchanged at tokenUrl.',
    }),
  );
