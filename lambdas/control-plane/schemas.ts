import * as z from 'zod/mini';
import { anyString, preprocess, text, upTo, wholeNumber } from './schema-parts.ts';
import { awsSigV4SecretSchema, jwtSecretSchema } from './signed-target-schemas.ts';

/**
 * Request bodies of the Core API, defined once: they validate, they type the handlers, and they
 * are the OpenAPI document's schemas. Bodies are strict: an unknown field is a 400, so a typo can
 * never silently widen what a request means.
 *
 * Written with `zod/mini` (functions instead of methods, so the bundle keeps only what is used:
 * docs/core-api-bundle.md); the messages are the full build's English ones (schema-parts.ts).
 */
const isoTimestamp = z.iso.datetime({ offset: true }).check(z.describe('ISO 8601 timestamp'));
const name = z.string().check(z.trim(), z.minLength(1), z.maxLength(128));

export const userCreateSchema = z.strictObject({
  userName: name,
  userEmail: z.optional(z.email().check(z.maxLength(254))),
  platformAdmin: z.optional(z.boolean()),
});

export const tokenCreateSchema = z.strictObject({
  tokenName: z.optional(name),
  expiresAt: z.optional(isoTimestamp),
});

/** RequestRocket spells roles `Owner`/`Admin`/`User`: any case is accepted, stored lower case. */
export const roleSchema = preprocess(
  (v) => (typeof v === 'string' ? v.toLowerCase() : v),
  z
    .enum(['owner', 'admin', 'user'])
    .check(z.meta({ description: 'owner | admin | user (any case accepted)' })),
);
export const clientMemberSchema = z.strictObject({
  userId: text(1, 64),
  roles: z.array(roleSchema).check(z.minLength(1), z.maxLength(3)),
});

export const clientCreateSchema = z.strictObject({
  clientName: name,
  clientMembers: z.optional(z.array(clientMemberSchema).check(z.maxLength(100))),
});

/** PUT accepts what GET answered: read-only fields may be sent back and are ignored. */
export const clientUpdateSchema = z.strictObject({
  clientName: z.optional(name),
  clientMembers: z.optional(z.array(clientMemberSchema).check(z.minLength(1), z.maxLength(100))),
  clientId: anyString,
  configuration: z.optional(z.unknown()),
  createdAt: anyString,
  updatedAt: anyString,
});

const limit = wholeNumber(1, 1_000_000_000);
/** `{limits}`, or RequestRocket's `{configuration: {limits}}` (unwrapped). */
export const clientConfigurationSchema = preprocess(
  (v) => {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return v;
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o);
    return keys.length === 1 && keys[0] === 'configuration' ? o.configuration : v;
  },
  z
    .strictObject({
      limits: z.strictObject({
        requestsPerMinute: z.optional(limit),
        requestsPerDay: z.optional(limit),
      }),
    })
    .check(
      z.meta({ description: "`{limits}`; RequestRocket's `{configuration: {limits}}` is accepted too" }),
    ),
);

/* ---------------------------------------------------------------------------------------------
 * Credentials, targets, proxies and rules.
 * ------------------------------------------------------------------------------------------- */

const id = text(1, 64);
const region = text(1, 32);
const effect = z.enum(['allow', 'deny']);
const nullableTimestamp = z.nullable(isoTimestamp);
/** RFC 9110 token: what a header name may be. */
export const headerName = z
  .string()
  .check(
    z.minLength(1),
    z.maxLength(128),
    z.regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/, 'not a valid header name'),
  );
const headerValue = z.string().check(
  z.maxLength(8192),
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what we refuse
  z.regex(/^[^\u0000-\u0008\u000a-\u001f\u007f]*$/, 'header values must not contain control characters'),
);
const secretString = text(1, 1024);
/** Which prefix a generated proxy key gets: `kg_live_` (default) or `kg_test_`. */
const keyEnvironment = z.enum(['live', 'test']);

const url = text(1, 2048);

/**
 * oauth2 with `grantType: authorization_code` (docs/target-auth-tokens.md): a user consents once
 * at `authorizationUrl`; keygate keeps the refresh token sealed and refreshes access tokens.
 * `clientSecret` is optional (public clients use PKCE alone); `usePkce` (S256) defaults to true.
 */
export const authorizationCodeSecret = z.strictObject({
  grantType: z.literal('authorization_code'),
  authorizationUrl: url,
  tokenUrl: url,
  clientId: text(1, 512),
  clientSecret: z.optional(secretString),
  scope: z.optional(upTo(1024)),
  usePkce: z._default(z.boolean(), true),
  /** RFC 7009 endpoint: the refresh token is revoked there when the credential is deleted. */
  revocationUrl: z.optional(url),
  /** Extra authorization-request parameters, e.g. Google's `access_type: offline`, `prompt: consent`. */
  authorizationParams: z.optional(
    z
      .record(z.string().check(z.regex(/^[A-Za-z0-9._~-]{1,64}$/, 'a plain parameter name')), upTo(1024))
      .check(
        z.refine(
          (p) => !Object.keys(p).some((k) => RESERVED_AUTHORIZATION_PARAMS.has(k)),
          'keygate sets response_type, client_id, redirect_uri, scope, state and code_challenge itself',
        ),
      ),
  ),
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
  .check(
    z.minLength(1),
    z.maxLength(256),
    z.regex(/^(\$\.)?[^.[\]]+(\.[^.[\]]+|\[\d{1,4}\])*$/, 'a dotted path such as access_token or data.token'),
  );
export const customTokenSecret = z.strictObject({
  tokenRequest: z.strictObject({
    method: z.enum(['GET', 'POST', 'PUT']),
    url,
    headers: z.optional(z.record(headerName, headerValue)),
    /** A string is sent as is; an object as JSON (or form-urlencoded when headers say so). */
    body: z.optional(z.union([upTo(16_384), z.record(upTo(256), z.unknown())])),
  }),
  tokenPath: jsonPath,
  expiresInPath: z.optional(jsonPath),
  injectAs: z._default(
    z
      .strictObject({
        headerName: z.optional(headerName),
        queryParam: z.optional(text(1, 128)),
        prefix: z.optional(upTo(64)),
      })
      .check(z.refine((i) => !(i.headerName && i.queryParam), 'give headerName or queryParam, not both')),
    {},
  ),
});

/**
 * `credentialSecret` per `credentialAuthType`. Secret parts are write-only: they are sealed or
 * hashed and never answered. Which fields apply to proxy or target credentials is checked in
 * credentials.ts (e.g. `headerName` only means something on a target).
 */
export const credentialSecretSchemas = {
  apiKey: z.strictObject({
    key: z.optional(secretString),
    headerName: z.optional(headerName),
    queryParam: z.optional(text(1, 128)),
    keyEnvironment: z.optional(keyEnvironment),
  }),
  bearer: z.strictObject({
    token: z.optional(secretString),
    prefix: z.optional(upTo(64)),
    keyEnvironment: z.optional(keyEnvironment),
  }),
  basicAuth: z.strictObject({
    username: z
      .string()
      .check(z.minLength(1), z.maxLength(256), z.regex(/^[^:]*$/, 'a username must not contain ":"')),
    // May be empty on a target credential: Stripe-style basic auth sends the key as user name.
    password: z.optional(upTo(1024)),
    keyEnvironment: z.optional(keyEnvironment),
  }),
  custom: z.strictObject({
    headers: z
      .record(headerName, headerValue)
      .check(z.refine((h) => Object.keys(h).length > 0, { message: 'at least one header' })),
  }),
  oauth2: z.discriminatedUnion('grantType', [
    z.strictObject({
      grantType: z.optional(z.literal('client_credentials')),
      tokenUrl: url,
      clientId: text(1, 512),
      clientSecret: secretString,
      scope: z.optional(upTo(1024)),
      audience: z.optional(upTo(1024)),
    }),
    authorizationCodeSecret,
  ]),
  customToken: customTokenSecret,
  none: z.strictObject({}),
  jwtVerify: z.strictObject({
    jwksUrl: z.optional(text(1, 2048)),
    secret: z.optional(secretString),
    issuer: z.optional(text(1, 1024)),
    audience: z.optional(text(1, 1024)),
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
const keyLocation = z.string().check(
  z.maxLength(140),
  z.refine(
    (l) =>
      l === 'authorization' ||
      l === 'basic-user' ||
      (/^header:[!#$%&'*+.^`|~0-9A-Za-z-]{1,128}$/.test(l) &&
        !TRANSPORT_HEADERS.has(l.slice(7).toLowerCase())) ||
      /^query:[A-Za-z0-9._~-]{1,128}$/.test(l),
    'one of "authorization", "basic-user", "header:<name>" (not a transport header), "query:<name>"',
  ),
);
/**
 * Where a proxy credential (apiKey/key or bearer) accepts its key: default `["authorization"]`
 * (raw, `Bearer`, `token`). See lambdas/data-plane/key-locations.ts and docs/sdks.md.
 */
export const credentialKeyLocationsSchema = z.array(keyLocation).check(
  z.minLength(1),
  z.maxLength(8),
  z.refine((l) => new Set(l.map((x) => x.toLowerCase())).size === l.length, 'locations must be unique'),
  z.meta({
    description:
      'Proxy credentials: where the key may be presented — "authorization" (default: raw, Bearer, token), "basic-user", "header:<name>", "query:<name>" (a key in a URL ends up in logs)',
  }),
);

const credentialCommon = {
  credentialType: z.enum(['proxy', 'target']),
  credentialName: name,
  credentialRegion: region,
  expiresAt: z.optional(isoTimestamp),
  credentialKeyLocations: z.optional(credentialKeyLocationsSchema),
};

export const credentialCreateSchema = z.discriminatedUnion('credentialAuthType', [
  z.strictObject({
    ...credentialCommon,
    credentialAuthType: z.literal(['apiKey', 'key']),
    credentialSecret: z.optional(credentialSecretSchemas.apiKey),
  }),
  z.strictObject({
    ...credentialCommon,
    credentialAuthType: z.literal('bearer'),
    credentialSecret: z.optional(credentialSecretSchemas.bearer),
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
    credentialSecret: z.optional(credentialSecretSchemas.none),
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
  credentialName: z.optional(name),
  expiresAt: z.optional(nullableTimestamp),
  credentialKeyLocations: z.optional(z.nullable(credentialKeyLocationsSchema)),
  credentialSecret: z.optional(z.record(z.string(), z.unknown())),
  credentialId: anyString,
  clientId: anyString,
  credentialType: anyString,
  credentialAuthType: anyString,
  credentialRegion: anyString,
  credentialSettings: z.optional(z.unknown()),
  credentialSecretHint: z.optional(z.unknown()),
  secretUpdatedAt: anyString,
  createdAt: anyString,
  updatedAt: anyString,
});
export type CredentialUpdate = z.infer<typeof credentialUpdateSchema>;

export const targetCreateSchema = z.strictObject({
  targetName: name,
  targetBaseURL: text(1, 2048),
  targetTestPath: z.optional(text(1, 2048)),
  targetRegion: region,
  targetDefaultRuleEffect: z.optional(effect),
});
export type TargetCreate = z.infer<typeof targetCreateSchema>;

export const targetUpdateSchema = z.strictObject({
  targetName: z.optional(name),
  targetBaseURL: z.optional(text(1, 2048)),
  targetTestPath: z.optional(z.nullable(text(1, 2048))),
  targetRegion: z.optional(region),
  targetDefaultRuleEffect: z.optional(effect),
  targetId: anyString,
  clientId: anyString,
  createdAt: anyString,
  updatedAt: anyString,
});
export type TargetUpdate = z.infer<typeof targetUpdateSchema>;

const perMinute = wholeNumber(1, 1_000_000_000);
const proxyAlias = z.string().check(
  z.minLength(1),
  z.maxLength(64),
  z.regex(/^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/, 'lower-case letters, digits and inner hyphens'),
  // It routes in place of the id (path and host name): it must never read as one.
  z.refine(
    (a) => !/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(a),
    'must not look like a proxy id',
  ),
);

/** Deadlines of forwarded calls (docs/streaming.md): 1 s to 15 min each, every one optional. */
const deadlineMs = z.optional(wholeNumber(1000, 900_000));
const proxyTimeouts = z.strictObject({
  firstByteMs: deadlineMs,
  idleMs: deadlineMs,
  totalMs: deadlineMs,
});

export const proxyCreateSchema = z.strictObject({
  proxyName: name,
  proxyAlias: z.optional(proxyAlias),
  proxyRegion: region,
  proxyProxyCredentialId: id,
  proxyTargetId: id,
  proxyTargetCredentialId: id,
  proxyDefaultRuleEffect: z.optional(effect),
  proxyActive: z.optional(z.boolean()),
  proxyMaxRequestsPerMinute: z.optional(perMinute),
  proxyMaxRequestsPerDay: z.optional(perMinute),
  proxyTimeouts: z.optional(proxyTimeouts),
});
export type ProxyCreate = z.infer<typeof proxyCreateSchema>;

export const proxyUpdateSchema = z.strictObject({
  proxyName: z.optional(name),
  proxyAlias: z.optional(z.nullable(proxyAlias)),
  proxyRegion: z.optional(region),
  proxyProxyCredentialId: z.optional(id),
  proxyTargetId: z.optional(id),
  proxyTargetCredentialId: z.optional(id),
  proxyDefaultRuleEffect: z.optional(effect),
  proxyActive: z.optional(z.boolean()),
  proxyMaxRequestsPerMinute: z.optional(perMinute),
  proxyMaxRequestsPerDay: z.optional(perMinute),
  /** null removes the proxy's own deadlines (back to the defaults). */
  proxyTimeouts: z.optional(z.nullable(proxyTimeouts)),
  proxyId: anyString,
  clientId: anyString,
  createdAt: anyString,
  updatedAt: anyString,
});
export type ProxyUpdate = z.infer<typeof proxyUpdateSchema>;

/** `present`/`absent` are aliases, stored as `must_exist`/`must_not_exist`. */
const presence = z._default(
  z.pipe(
    z.enum(['must_exist', 'must_not_exist', 'present', 'absent']),
    z.transform((p) => (p === 'present' ? 'must_exist' : p === 'absent' ? 'must_not_exist' : p)),
  ),
  'must_exist',
);
const pattern = z.strictObject({ pattern: z.string().check(z.minLength(1)) });
const namedCheck = z.strictObject({
  name: pattern,
  value: z.optional(pattern),
  presence,
});
export const ruleMethods = z.enum(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

const ruleFields = {
  effect,
  priority: wholeNumber(0, 1000),
  methods: z.optional(z.array(ruleMethods).check(z.maxLength(7))),
  path: z.optional(z.strictObject({ path: pattern, presence })),
  headerChecks: z.optional(z.array(namedCheck).check(z.maxLength(20))),
  queryChecks: z.optional(z.array(namedCheck).check(z.maxLength(20))),
  body: z.optional(
    z
      .array(
        z.strictObject({
          jsonPath: text(1, 256),
          matchValue: z.optional(pattern),
          presence,
        }),
      )
      .check(z.maxLength(20)),
  ),
  regexFlags: z.optional(upTo(3)),
  notes: z.optional(upTo(1000)),
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

export const ruleCreateSchema = preprocess(ruleAliases, z.strictObject(ruleFields));
export type RuleInput = z.infer<typeof ruleCreateSchema>;

/** PUT replaces the rule's conditions whole; read-only fields of a GET answer may be sent back. */
export const ruleUpdateSchema = preprocess(
  ruleAliases,
  z.strictObject({
    ...ruleFields,
    ruleId: anyString,
    clientId: anyString,
    parentType: anyString,
    parentId: anyString,
    createdAt: anyString,
    updatedAt: anyString,
  }),
);

/**
 * A request to simulate: what the data plane would decide for it, and why. `path` may carry a
 * query after `?`; `query` adds parameters (an object of name → value or values, or a raw string).
 * An object or array `body` is sent as JSON.
 */
export const simulateSchema = z.strictObject({
  method: text(1, 16),
  path: text(1, 8192),
  headers: z.optional(z.record(text(1, 256), upTo(8192))),
  query: z.optional(z.union([upTo(8192), z.record(z.string(), z.union([z.string(), z.array(z.string())]))])),
  body: z.optional(z.unknown()),
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
  valuePath: z.optional(
    z
      .string()
      .check(
        z.maxLength(256),
        z.regex(METER_VALUE_PATH, 'a JSON path of .name and [n] steps, e.g. $.usage.total_tokens'),
      ),
  ),
  methods: z.optional(z.array(ruleMethods).check(z.minLength(1), z.maxLength(7))),
  pathPattern: z.optional(text(1, 512)),
  window: z.enum(['minute', 'hour', 'day', 'month']),
  limit: wholeNumber(1, 1_000_000_000_000),
  action: z._default(z.enum(['block', 'flag']), 'block'),
};
type MeterFieldsIn = { meterType: string; valuePath?: string };
/** A response_value meter needs the path to its value; a request_count meter has none. */
function meterPathRule(m: MeterFieldsIn, ctx: z.core.$RefinementCtx<MeterFieldsIn>) {
  if (m.meterType === 'response_value' && m.valuePath === undefined)
    ctx.addIssue({
      code: 'custom',
      path: ['valuePath'],
      message: 'required when meterType is response_value',
    });
  if (m.meterType === 'request_count' && m.valuePath !== undefined)
    ctx.addIssue({ code: 'custom', path: ['valuePath'], message: 'only for meterType response_value' });
}
export const meterCreateSchema = z.strictObject(meterFields).check(z.superRefine(meterPathRule));
export type MeterInput = z.infer<typeof meterCreateSchema>;

/** PUT replaces a meter's definition whole; read-only fields of a GET answer may be sent back. */
export const meterUpdateSchema = z
  .strictObject({
    ...meterFields,
    meterId: anyString,
    clientId: anyString,
    parentType: anyString,
    parentId: anyString,
    createdAt: anyString,
    updatedAt: anyString,
  })
  .check(z.superRefine(meterPathRule));
