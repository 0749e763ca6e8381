import { z } from 'zod';
import { JWT_ALGORITHMS } from '../data-plane/jwt-target.ts';
import { AWS_REGION, AWS_ROLE_ARN, AWS_SIGNING_NAME } from '../shared/aws-names.ts';

/**
 * `credentialSecret` of the target types keygate signs for (docs/target-auth-signing.md). Shape
 * checks only; what needs crypto or the network policy (PEM parsing, key/algorithm match, the token
 * URL) is checked in signed-credentials.ts.
 */
const JWT_RESERVED_CLAIMS = ['iat', 'exp', 'jti'];
const JWT_RESERVED_HEADERS = ['alg', 'crit', 'b64', 'jku', 'jwk', 'x5u'];

export const awsSigV4SecretSchema = z
  .strictObject({
    roleArn: z
      .string()
      .max(2048)
      .regex(AWS_ROLE_ARN, 'an IAM role ARN (arn:aws:iam::<12-digit account>:role/<name>)'),
    externalId: z
      .string()
      .min(2)
      .max(1224)
      .regex(/^[\w+=,.@:/-]+$/, 'letters, digits and +=,.@:/- only (STS)')
      .optional(),
    service: z
      .string()
      .regex(AWS_SIGNING_NAME, 'an AWS signing name, e.g. bedrock')
      .refine((s) => s !== 'bedrock-runtime', 'Bedrock Runtime signs as service "bedrock"'),
    region: z.string().max(32).regex(AWS_REGION, 'an AWS region, e.g. us-east-1'),
    sessionName: z
      .string()
      .regex(/^[\w+=,.@-]{2,64}$/, '2–64 characters of letters, digits and +=,.@- (STS)')
      .optional(),
  })
  .meta({
    description:
      'Target only. Each request is signed (SigV4) with temporary credentials of this role, assumed by the proxy (STS AssumeRole); no AWS key is stored.',
  });

export const jwtSecretSchema = z
  .strictObject({
    algorithm: z.enum(JWT_ALGORITHMS),
    key: z.string().min(1).max(16_384).meta({
      description: 'HS256: the shared secret (≥32 bytes); RS256/ES256: a PEM private key. Write-only.',
    }),
    claims: z
      .record(z.string().min(1).max(256), z.unknown())
      .refine((c) => JSON.stringify(c).length <= 8192, 'at most 8 KiB of claims')
      .refine((c) => !JWT_RESERVED_CLAIMS.some((n) => n in c), 'iat, exp and jti are filled per token')
      .meta({
        description: 'Claims template (iss, sub, aud, scope, …); iat, exp and jti are added per token',
      }),
    ttlSeconds: z
      .number()
      .int()
      .min(30)
      .max(86_400)
      .optional()
      .meta({ description: 'Token lifetime; default 300' }),
    tokenUrl: z
      .string()
      .min(1)
      .max(2048)
      .optional()
      .meta({ description: 'Exchange the JWT here (RFC 7523 JWT bearer grant) and send the access token' }),
    header: z
      .record(z.string().min(1).max(64), z.string().max(1024))
      .refine(
        (h) => !JWT_RESERVED_HEADERS.some((n) => n in h),
        'alg, crit, b64, jku, jwk and x5u are not settable',
      )
      .refine((h) => Object.keys(h).length <= 10, 'at most 10 header parameters')
      .optional()
      .meta({ description: 'Extra protected-header parameters, e.g. {"kid": "…"}' }),
  })
  .meta({
    description:
      'Target only. A JWT signed by keygate (cached until near expiry), sent as Authorization: Bearer, or exchanged at tokenUrl.',
  });
