import { z } from 'zod';
import { awsSigV4SecretSchema, jwtSecretSchema } from './signed-target-schemas.ts';

/**
 * Request bodies of the Core API, defined once: they validate, they type the handlers, and they
 * are the OpenAPI document's schemas. Bodies are strict: an unknown field is a 400, so a typo can
 * never silently widen what a request means.
 */
const isoTimestamp = z.iso.datetime({ offset: true }).describe('ISO 8601 timestamp');
const name = z.string().trim().min(1).max(128);

export const userCreateSchema = z.strictObject({
  userName: name,
  userEmail: z.email().max(254).optional(),
  platformAdmin: z.boolean().optional(),
});

export const tokenCreateSchema = z.strictObject({
  tokenName: name.optional(),
  expiresAt: isoTimestamp.optional(),
});

/** RequestRocket spells roles `Owner`/`Admin`/`User`: any case is accepted, stored lower case. */
export const roleSchema = z.preprocess(
  (v) => (typeof v === 'string' ? v.toLowerCase() : v),
  z.enum(['owner', 'admin', 'user']).meta({ description: 'owner | admin | user (any case accepted)' }),
);
export const clientMemberSchema = z.strictObject({
  userId: z.string().min(1).max(64),
  roles: z.array(roleSchema).min(1).max(3),
});

export const clientCreateSchema = z.strictObject({
  clientName: name,
  clientMembers: z.array(clientMemberSchema).max(100).optional(),
});

/** PUT accepts what GET answered: read-only fields may be sent back and are ignored. */
export const clientUpdateSchema = z.strictObject({
  clientName: name.optional(),
  clientMembers: z.array(clientMemberSchema).min(1).max(100).optional(),
  clientId: z.string().optional(),
  configuration: z.unknown().optional(),
  createdAt: z.string().optional(),
  updatedAt: z.string().optional(),
});

const limit = z.number().int().min(1).max(1_000_000_000);
/** `{limits}`, or RequestRocket's `{configuration: {limits}}` (unwrapped). */
export const clientConfigurationSchema = z.preprocess(
  (v) => {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return v;
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o);
    return keys.length === 1 && keys[0] === 'configuration' ? o.configuration : v;
  },
  z
    .strictObject({
      limits: z.strictObject({
        requestsPerMinute: limit.optional(),
        requestsPerDay: limit.optional(),
      }),
    })
    .meta({ description: "`{limits}`; RequestRocket's `{configuration: {limits}}` is accepted too" }),
);

/* ---------------------------------------------------------------------------------------------
 * Credentials, targets, proxies and rules.
 * ------------------------------------------------------------------------------------------- */

const id = z.string().min(1).max(64);
const region = z.string().min(1).max(32);
const effect = z.enum(['allow', 'deny']);
const nullableTimestamp = isoTimestamp.nullable();
/** RFC 9110 token: what a header name may be. */
export const headerName = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'not a valid header name');
const headerValue = z
  .string()
  .max(8192)
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what we refuse
  .regex(/^[^\u0000-\u0008\u000a-\u001f\u007f]*$/, 'header values must not contain control characters');
const secretString = z.string().min(1).max(1024);
/** Which prefix a generated proxy key gets: `kg_live_` (default) or `kg_test_`. */
const keyEnvironment = z.enum(['live', 'test']);

const url = z.string().min(1).max(2048);

/**
 * oauth2 with `grantType: authorization_code` (docs/target-auth-tokens.md): a user consents once
 * at `authorizationUrl`; keygate keeps the refresh token sealed and refreshes access tokens.
 * `clientSecret` is optional (public clients use PKCE alone); `usePkce` (S256) defaults to true.
 */
export const authorizationCodeSecret = z.strictObject({
  grantType: z.literal('authorization_code'),
  authorizationUrl: url,
  tokenUrl: url,
  clientId: z.string().min(1).max(512),
  clientSecret: secretString.optional(),
  scope: z.string().max(1024).optional(),
  usePkce: z.boolean().default(true),
  /** RFC 7009 endpoint: the refresh token is revoked there when the credential is deleted. */
  revocationUrl: url.optional(),
  /** Extra authorization-request parameters, e.g. Google's `access_type: offline`, `prompt: consent`. */
  authorizationParams: z
    .record(z.string().regex(/^[A-Za-z0-9._~-]{1,64}$/, 'a plain parameter name'), z.string().max(1024))
    .refine(
      (p) => !Object.keys(p).some((k) => RESERVED_AUTHORIZATION_PARAMS.has(k)),
      'keygate sets response_type, client_id, redirect_uri, scope, state and code_challenge itself',
    )
    .optional(),
});
const RESERVED_AUTHORIZATION_PARAMS = new Set([
  'response_type',
  'client_id',
  'redirect_uri',
  'scope',
  'state',
  'code_challenge',
  'code_challenge_method',
]);

/**
 * customToken (docs/target-auth-tokens.md): keygate calls the vendor's own token endpoint as
 * described, reads the token (and optionally its lifetime in seconds) at a dotted JSON path of the
 * answer, and injects it as a header (default `Authorization: Bearer <token>`) or query parameter.
 * The whole secret is sealed, so header values and body values may hold secrets.
 */
const jsonPath = z
  .string()
  .min(1)
  .max(256)
  .regex(/^(\$\.)?[^.[\]]+(\.[^.[\]]+|\[\d{1,4}\])*$/, 'a dotted path such as access_token or data.token');
export const customTokenSecret = z.strictObject({
  tokenRequest: z.strictObject({
    method: z.enum(['GET', 'POST', 'PUT']),
    url,
    headers: z.record(headerName, headerValue).optional(),
    /** A string is sent as is; an object as JSON (or form-urlencoded when headers say so). */
    body: z.union([z.string().max(16_384), z.record(z.string().max(256), z.unknown())]).optional(),
  }),
  tokenPath: jsonPath,
  expiresInPath: jsonPath.optional(),
  injectAs: z
    .strictObject({
      headerName: headerName.optional(),
      queryParam: z.string().min(1).max(128).optional(),
      prefix: z.string().max(64).optional(),
    })
    .refine((i) => !(i.headerName && i.queryParam), 'give headerName or queryParam, not both')
    .default({}),
});

/**
 * `credentialSecret` per `credentialAuthType`. Secret parts are write-only: they are sealed or
 * hashed and never answered. Which fields apply to proxy or target credentials is checked in
 * credentials.ts (e.g. `headerName` only means something on a target).
 */
export const credentialSecretSchemas = {
  apiKey: z.strictObject({
    key: secretString.optional(),
    headerName: headerName.optional(),
    queryParam: z.string().min(1).max(128).optional(),
    keyEnvironment: keyEnvironment.optional(),
  }),
  bearer: z.strictObject({
    token: secretString.optional(),
    prefix: z.string().max(64).optional(),
    keyEnvironment: keyEnvironment.optional(),
  }),
  basicAuth: z.strictObject({
    username: z
      .string()
      .min(1)
      .max(256)
      .regex(/^[^:]*$/, 'a username must not contain ":"'),
    // May be empty on a target credential: Stripe-style basic auth sends the key as user name.
    password: z.string().max(1024).optional(),
    keyEnvironment: keyEnvironment.optional(),
  }),
  custom: z.strictObject({
    headers: z.record(headerName, headerValue).refine((h) => Object.keys(h).length > 0, {
      message: 'at least one header',
    }),
  }),
  oauth2: z.discriminatedUnion('grantType', [
    z.strictObject({
      grantType: z.literal('client_credentials').optional(),
      tokenUrl: url,
      clientId: z.string().min(1).max(512),
      clientSecret: secretString,
      scope: z.string().max(1024).optional(),
      audience: z.string().max(1024).optional(),
    }),
    authorizationCodeSecret,
  ]),
  customToken: customTokenSecret,
  none: z.strictObject({}),
  jwtVerify: z.strictObject({
    jwksUrl: z.string().min(1).max(2048).optional(),
    secret: secretString.optional(),
    issuer: z.string().min(1).max(1024).optional(),
    audience: z.string().min(1).max(1024).optional(),
  }),
  awsSigV4: awsSigV4SecretSchema,
  jwt: jwtSecretSchema,
} as const;

export const credentialAuthTypeSchema = z.enum([
  'apiKey',
  'key',
  'bearer',
  'basicAuth',
  'custom',
  'oauth2',
  'customToken',
  'none',
  'jwtVerify',
  'awsSigV4',
  'jwt',
]);
export type CredentialAuthType = z.infer<typeof credentialAuthTypeSchema>;

/** Header names a proxy key may not be read from: the transport's own, and Authorization (use `authorization`). */
const TRANSPORT_HEADERS = new Set([
  'authorization',
  'host',
  'content-length',
  'content-type',
  'transfer-encoding',
  'connection',
  'cookie',
  'te',
  'upgrade',
]);
const keyLocation = z
  .string()
  .max(140)
  .refine(
    (l) =>
      l === 'authorization' ||
      l === 'basic-user' ||
      (/^header:[!#$%&'*+.^`|~0-9A-Za-z-]{1,128}$/.test(l) &&
        !TRANSPORT_HEADERS.has(l.slice(7).toLowerCase())) ||
      /^query:[A-Za-z0-9._~-]{1,128}$/.test(l),
    'one of "authorization", "basic-user", "header:<name>" (not a transport header), "query:<name>"',
  );
/**
 * Where a proxy credential (apiKey/key or bearer) accepts its key: default `["authorization"]`
 * (raw, `Bearer`, `token`). See lambdas/data-plane/key-locations.ts and docs/sdks.md.
 */
export const credentialKeyLocationsSchema = z
  .array(keyLocation)
  .min(1)
  .max(8)
  .refine((l) => new Set(l.map((x) => x.toLowerCase())).size === l.length, 'locations must be unique')
  .meta({
    description:
      'Proxy credentials: where the key may be presented — "authorization" (default: raw, Bearer, token), "basic-user", "header:<name>", "query:<name>" (a key in a URL ends up in logs)',
  });

const credentialCommon = {
  credentialType: z.enum(['proxy', 'target']),
  credentialName: name,
  credentialRegion: region,
  expiresAt: isoTimestamp.optional(),
  credentialKeyLocations: credentialKeyLocationsSchema.optional(),
};

export const credentialCreateSchema = z.discriminatedUnion('credentialAuthType', [
  z.strictObject({
    ...credentialCommon,
    credentialAuthType: z.literal(['apiKey', 'key']),
    credentialSecret: credentialSecretSchemas.apiKey.optional(),
  }),
  z.strictObject({
    ...credentialCommon,
    credentialAuthType: z.literal('bearer'),
    credentialSecret: credentialSecretSchemas.bearer.optional(),
  }),
  z.strictObject({
    ...credentialCommon,
    credentialAuthType: z.literal('basicAuth'),
    credentialSecret: credentialSecretSchemas.basicAuth,
  }),
  z.strictObject({
    ...credentialCommon,
    credentialAuthType: z.literal('custom'),
    credentialSecret: credentialSecretSchemas.custom,
  }),
  z.strictObject({
    ...credentialCommon,
    credentialAuthType: z.literal('oauth2'),
    credentialSecret: credentialSecretSchemas.oauth2,
  }),
  z.strictObject({
    ...credentialCommon,
    credentialAuthType: z.literal('customToken'),
    credentialSecret: credentialSecretSchemas.customToken,
  }),
  z.strictObject({
    ...credentialCommon,
    credentialAuthType: z.literal('none'),
    credentialSecret: credentialSecretSchemas.none.optional(),
  }),
  z.strictObject({
    ...credentialCommon,
    credentialAuthType: z.literal('jwtVerify'),
    credentialSecret: credentialSecretSchemas.jwtVerify,
  }),
  z.strictObject({
    ...credentialCommon,
    credentialAuthType: z.literal('awsSigV4'),
    credentialSecret: credentialSecretSchemas.awsSigV4,
  }),
  z.strictObject({
    ...credentialCommon,
    credentialAuthType: z.literal('jwt'),
    credentialSecret: credentialSecretSchemas.jwt,
  }),
]);
export type CredentialCreate = z.infer<typeof credentialCreateSchema>;

/**
 * PUT of a credential: rename, set or clear `expiresAt`, or replace the secret in place (validated
 * against the credential's type). Type, auth type and region are immutable; read-only fields of a
 * GET answer may be sent back (a different value for an immutable one is a 400).
 */
export const credentialUpdateSchema = z.strictObject({
  credentialName: name.optional(),
  expiresAt: nullableTimestamp.optional(),
  credentialKeyLocations: credentialKeyLocationsSchema.nullable().optional(),
  credentialSecret: z.record(z.string(), z.unknown()).optional(),
  credentialId: z.string().optional(),
  clientId: z.string().optional(),
  credentialType: z.string().optional(),
  credentialAuthType: z.string().optional(),
  credentialRegion: z.string().optional(),
  credentialSettings: z.unknown().optional(),
  credentialSecretHint: z.unknown().optional(),
  secretUpdatedAt: z.string().optional(),
  createdAt: z.string().optional(),
  updatedAt: z.string().optional(),
});
export type CredentialUpdate = z.infer<typeof credentialUpdateSchema>;

export const targetCreateSchema = z.strictObject({
  targetName: name,
  targetBaseURL: z.string().min(1).max(2048),
  targetTestPath: z.string().min(1).max(2048).optional(),
  targetRegion: region,
  targetDefaultRuleEffect: effect.optional(),
});
export type TargetCreate = z.infer<typeof targetCreateSchema>;

export const targetUpdateSchema = z.strictObject({
  targetName: name.optional(),
  targetBaseURL: z.string().min(1).max(2048).optional(),
  targetTestPath: z.string().min(1).max(2048).nullable().optional(),
  targetRegion: region.optional(),
  targetDefaultRuleEffect: effect.optional(),
  targetId: z.string().optional(),
  clientId: z.string().optional(),
  createdAt: z.string().optional(),
  updatedAt: z.string().optional(),
});
export type TargetUpdate = z.infer<typeof targetUpdateSchema>;

const perMinute = z.number().int().min(1).max(1_000_000_000);
const proxyAlias = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/, 'lower-case letters, digits and inner hyphens')
  // It routes in place of the id (path and host name): it must never read as one.
  .refine(
    (a) => !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(a),
    'must not look like a proxy id',
  );

/** Deadlines of forwarded calls (docs/streaming.md): 1 s to 15 min each, every one optional. */
const deadlineMs = z.number().int().min(1000).max(900_000);
const proxyTimeouts = z.strictObject({
  firstByteMs: deadlineMs.optional(),
  idleMs: deadlineMs.optional(),
  totalMs: deadlineMs.optional(),
});

export const proxyCreateSchema = z.strictObject({
  proxyName: name,
  proxyAlias: proxyAlias.optional(),
  proxyRegion: region,
  proxyProxyCredentialId: id,
  proxyTargetId: id,
  proxyTargetCredentialId: id,
  proxyDefaultRuleEffect: effect.optional(),
  proxyActive: z.boolean().optional(),
  proxyMaxRequestsPerMinute: perMinute.optional(),
  proxyMaxRequestsPerDay: perMinute.optional(),
  proxyTimeouts: proxyTimeouts.optional(),
});
export type ProxyCreate = z.infer<typeof proxyCreateSchema>;

export const proxyUpdateSchema = z.strictObject({
  proxyName: name.optional(),
  proxyAlias: proxyAlias.nullable().optional(),
  proxyRegion: region.optional(),
  proxyProxyCredentialId: id.optional(),
  proxyTargetId: id.optional(),
  proxyTargetCredentialId: id.optional(),
  proxyDefaultRuleEffect: effect.optional(),
  proxyActive: z.boolean().optional(),
  proxyMaxRequestsPerMinute: perMinute.optional(),
  proxyMaxRequestsPerDay: perMinute.optional(),
  /** null removes the proxy's own deadlines (back to the defaults). */
  proxyTimeouts: proxyTimeouts.nullable().optional(),
  proxyId: z.string().optional(),
  clientId: z.string().optional(),
  createdAt: z.string().optional(),
  updatedAt: z.string().optional(),
});
export type ProxyUpdate = z.infer<typeof proxyUpdateSchema>;

/** `present`/`absent` are aliases, stored as `must_exist`/`must_not_exist`. */
const presence = z
  .enum(['must_exist', 'must_not_exist', 'present', 'absent'])
  .transform((p) => (p === 'present' ? 'must_exist' : p === 'absent' ? 'must_not_exist' : p));
const pattern = z.strictObject({ pattern: z.string().min(1) });
const namedCheck = z.strictObject({
  name: pattern,
  value: pattern.optional(),
  presence: presence.default('must_exist'),
});
export const ruleMethods = z.enum(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

const ruleFields = {
  effect,
  priority: z.number().int().min(0).max(1000),
  methods: z.array(ruleMethods).max(7).optional(),
  path: z.strictObject({ path: pattern, presence: presence.default('must_exist') }).optional(),
  headerChecks: z.array(namedCheck).max(20).optional(),
  queryChecks: z.array(namedCheck).max(20).optional(),
  body: z
    .array(
      z.strictObject({
        jsonPath: z.string().min(1).max(256),
        matchValue: pattern.optional(),
        presence: presence.default('must_exist'),
      }),
    )
    .max(20)
    .optional(),
  regexFlags: z.string().max(3).optional(),
  notes: z.string().max(1000).optional(),
};

/**
 * RequestRocket's other rule shapes, normalised to keygate's before validation:
 * `path: {pattern, presence}` and flat `pathPattern`/`pathPresence` → `path: {path: {pattern}, presence}`;
 * body checks with `jsonPath: {pattern}` → `jsonPath: "…"`, and `matchValue: {pattern, flags}` → the
 * flags as RE2 inline flags (`(?i)…`), so they apply to that pattern alone.
 */
function ruleAliases(v: unknown): unknown {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return v;
  const rule = { ...(v as Record<string, unknown>) };
  const obj = (x: unknown) =>
    x !== null && typeof x === 'object' && !Array.isArray(x) ? (x as Record<string, unknown>) : undefined;
  const path = obj(rule.path);
  if (path && typeof path.pattern === 'string' && path.path === undefined) {
    const { pattern, ...rest } = path;
    rule.path = { path: { pattern }, ...rest };
  }
  if (rule.path === undefined && typeof rule.pathPattern === 'string') {
    rule.path = {
      path: { pattern: rule.pathPattern },
      ...(rule.pathPresence !== undefined ? { presence: rule.pathPresence } : {}),
    };
    delete rule.pathPattern;
    delete rule.pathPresence;
  }
  if (Array.isArray(rule.body))
    rule.body = rule.body.map((check) => {
      const c = obj(check);
      if (!c) return check;
      const out = { ...c };
      const jp = obj(c.jsonPath);
      if (jp && typeof jp.pattern === 'string' && Object.keys(jp).length === 1) out.jsonPath = jp.pattern;
      const mv = obj(c.matchValue);
      if (mv && typeof mv.pattern === 'string' && 'flags' in mv) {
        const flags = typeof mv.flags === 'string' ? mv.flags : '';
        out.matchValue =
          flags === ''
            ? { pattern: mv.pattern }
            : /^[ims]+$/.test(flags)
              ? { pattern: `(?${flags})${mv.pattern}` }
              : mv;
      }
      return out;
    });
  return rule;
}

export const ruleCreateSchema = z.preprocess(ruleAliases, z.strictObject(ruleFields));
export type RuleInput = z.infer<typeof ruleCreateSchema>;

/** PUT replaces the rule's conditions whole; read-only fields of a GET answer may be sent back. */
export const ruleUpdateSchema = z.preprocess(
  ruleAliases,
  z.strictObject({
    ...ruleFields,
    ruleId: z.string().optional(),
    clientId: z.string().optional(),
    parentType: z.string().optional(),
    parentId: z.string().optional(),
    createdAt: z.string().optional(),
    updatedAt: z.string().optional(),
  }),
);

/**
 * A request to simulate: what the data plane would decide for it, and why. `path` may carry a
 * query after `?`; `query` adds parameters (an object of name → value or values, or a raw string).
 * An object or array `body` is sent as JSON.
 */
export const simulateSchema = z.strictObject({
  method: z.string().min(1).max(16),
  path: z.string().min(1).max(8192),
  headers: z.record(z.string().min(1).max(256), z.string().max(8192)).optional(),
  query: z
    .union([z.string().max(8192), z.record(z.string(), z.union([z.string(), z.array(z.string())]))])
    .optional(),
  body: z.unknown().optional(),
});
export type SimulateInput = z.infer<typeof simulateSchema>;

/**
 * Meters (docs/meters.md). `valuePath` is a safe JSONPath subset: `$` then `.name` and `[n]` steps
 * only (no wildcards, filters or quoted names), at most 16 steps — it is resolved on every metered
 * answer, so it must be cheap and unambiguous.
 */
export const METER_VALUE_PATH = /^\$(?:\.[A-Za-z_][A-Za-z0-9_-]{0,63}|\[\d{1,4}\]){1,16}$/;
const meterFields = {
  meterName: name,
  meterType: z.enum(['request_count', 'response_value']),
  valuePath: z
    .string()
    .max(256)
    .regex(METER_VALUE_PATH, 'a JSON path of .name and [n] steps, e.g. $.usage.total_tokens')
    .optional(),
  methods: z.array(ruleMethods).min(1).max(7).optional(),
  pathPattern: z.string().min(1).max(512).optional(),
  window: z.enum(['minute', 'hour', 'day', 'month']),
  limit: z.number().int().min(1).max(1_000_000_000_000),
  action: z.enum(['block', 'flag']).default('block'),
};
type MeterFieldsIn = { meterType: string; valuePath?: string };
/** A response_value meter needs the path to its value; a request_count meter has none. */
function meterPathRule(m: MeterFieldsIn, ctx: z.RefinementCtx) {
  if (m.meterType === 'response_value' && m.valuePath === undefined)
    ctx.addIssue({
      code: 'custom',
      path: ['valuePath'],
      message: 'required when meterType is response_value',
    });
  if (m.meterType === 'request_count' && m.valuePath !== undefined)
    ctx.addIssue({ code: 'custom', path: ['valuePath'], message: 'only for meterType response_value' });
}
export const meterCreateSchema = z.strictObject(meterFields).superRefine(meterPathRule);
export type MeterInput = z.infer<typeof meterCreateSchema>;

/** PUT replaces a meter's definition whole; read-only fields of a GET answer may be sent back. */
export const meterUpdateSchema = z
  .strictObject({
    ...meterFields,
    meterId: z.string().optional(),
    clientId: z.string().optional(),
    parentType: z.string().optional(),
    parentId: z.string().optional(),
    createdAt: z.string().optional(),
    updatedAt: z.string().optional(),
  })
  .superRefine(meterPathRule);
