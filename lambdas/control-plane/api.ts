import type { MeterScope, RuleScope as ParentType } from '../storage/keys.ts';
import * as clients from './clients.ts';
import * as credentials from './credentials.ts';
import * as identity from './identity.ts';
import * as meters from './meters.ts';
import {
  CALLBACK_PATH,
  callbackQuerySchema,
  callbackUrlOf,
  completeAuthorization,
} from './oauth-callback.ts';
import { buildOpenApi } from './openapi.ts';
import { credentialListQuerySchema, pageQuerySchema } from './paging.ts';
import * as proxies from './proxies.ts';
import { type Route, route } from './router.ts';
import * as rules from './rules.ts';
import {
  clientConfigurationSchema,
  clientCreateSchema,
  clientUpdateSchema,
  credentialCreateSchema,
  credentialUpdateSchema,
  meterCreateSchema,
  meterUpdateSchema,
  proxyCreateSchema,
  proxyUpdateSchema,
  ruleCreateSchema,
  ruleUpdateSchema,
  simulateSchema,
  targetCreateSchema,
  targetUpdateSchema,
  tokenCreateSchema,
  userCreateSchema,
} from './schemas.ts';
import * as targets from './targets.ts';
import * as telemetry from './telemetry.ts';

/**
 * Every Core API route, in one table. Domain modules do the work; this file only wires paths to
 * them. Later resources (credentials, targets, proxies, rules, telemetry) add their routes here.
 */
export const coreRoutes: Route[] = [
  route({
    method: 'POST',
    path: '/users',
    access: 'platformAdmin',
    tag: 'users',
    summary: 'Create a user (platform admins only); answers the user and a first token, shown once',
    status: 201,
    body: userCreateSchema,
    handle: ({ deps, caller, body }) => identity.createUser(deps, caller, body),
  }),
  route({
    method: 'GET',
    path: '/users/me',
    access: 'anyUser',
    tag: 'users',
    summary: 'The calling user and the clients they belong to',
    handle: ({ deps, caller }) => identity.getMe(deps, caller),
  }),
  route({
    method: 'POST',
    path: '/users/tokens',
    access: 'anyUser',
    tag: 'tokens',
    summary: 'Create a Core API token; its value is answered once',
    status: 201,
    body: tokenCreateSchema,
    handle: ({ deps, caller, body }) => identity.createToken(deps, caller, body),
  }),
  route({
    method: 'GET',
    path: '/users/tokens',
    access: 'anyUser',
    tag: 'tokens',
    summary: 'List your tokens (never their values), a page at a time (limit, nextToken)',
    query: pageQuerySchema,
    handle: ({ deps, caller, query }) => identity.listTokens(deps, caller, query),
  }),
  route({
    method: 'POST',
    path: '/users/tokens/{tokenId}',
    access: 'anyUser',
    tag: 'tokens',
    summary: 'Rotate a token: answers { newToken }; the old value is dead at once',
    handle: ({ deps, caller, params }) => identity.rotateToken(deps, caller, params.tokenId!),
  }),
  route({
    method: 'DELETE',
    path: '/users/tokens/{tokenId}',
    access: 'anyUser',
    tag: 'tokens',
    summary: 'Revoke a token',
    status: 204,
    handle: ({ deps, caller, params }) => identity.deleteToken(deps, caller, params.tokenId!),
  }),
  route({
    method: 'POST',
    path: '/clients',
    access: 'anyUser',
    tag: 'clients',
    summary: 'Create a client; the caller becomes an owner',
    status: 201,
    body: clientCreateSchema,
    handle: ({ deps, caller, body }) => clients.createClient(deps, caller, body),
  }),
  route({
    method: 'GET',
    path: '/clients',
    access: 'anyUser',
    tag: 'clients',
    summary: 'List the clients you are a member of, a page at a time (limit, nextToken)',
    query: pageQuerySchema,
    handle: ({ deps, caller, query }) => clients.listClients(deps, caller, query),
  }),
  route({
    method: 'GET',
    path: '/clients/{clientId}',
    access: 'user',
    tag: 'clients',
    summary: 'Read a client',
    handle: ({ deps, caller, params }) => clients.getClient(deps, caller, params.clientId!),
  }),
  route({
    method: 'PUT',
    path: '/clients/{clientId}',
    access: 'admin',
    tag: 'clients',
    summary: 'Rename a client (admin) or set its members and roles (owner)',
    body: clientUpdateSchema,
    handle: ({ deps, caller, params, body }) => clients.updateClient(deps, caller, params.clientId!, body),
  }),
  route({
    method: 'DELETE',
    path: '/clients/{clientId}',
    access: 'owner',
    tag: 'clients',
    summary: 'Delete a client and everything in it (owner); request logs stay until they expire',
    status: 204,
    handle: ({ deps, caller, params }) => clients.deleteClient(deps, caller, params.clientId!),
  }),
  route({
    method: 'PUT',
    path: '/clients/{clientId}/configuration',
    access: 'admin',
    tag: 'clients',
    summary: 'Set client limits; they are the defaults of new proxies',
    body: clientConfigurationSchema,
    handle: ({ deps, caller, params, body }) => clients.configureClient(deps, caller, params.clientId!, body),
  }),
  route({
    method: 'GET',
    path: '/clients/{clientId}/proxies/{proxyId}/requests',
    access: 'user',
    tag: 'telemetry',
    summary:
      'Request log of a proxy, newest first (processedAfter, processedBefore ISO 8601; limit ≤ 1000; nextToken)',
    query: telemetry.requestsQuerySchema,
    handle: ({ deps, caller, params, query }) =>
      telemetry.listRequests(deps, caller, params.clientId!, params.proxyId!, query),
  }),
  route({
    method: 'GET',
    path: '/clients/{clientId}/proxies/{proxyId}/requests/{requestId}',
    access: 'user',
    tag: 'telemetry',
    summary: 'One request-log record',
    handle: ({ deps, caller, params }) =>
      telemetry.getRequest(deps, caller, params.clientId!, params.proxyId!, params.requestId!),
  }),
  route({
    method: 'GET',
    path: '/clients/{clientId}/telemetry',
    access: 'user',
    tag: 'telemetry',
    summary: 'Telemetry buckets of a client, newest first (interval=minute|hour|day, limit)',
    query: telemetry.telemetryQuerySchema,
    handle: ({ deps, caller, params, query }) =>
      telemetry.clientTelemetry(deps, caller, params.clientId!, query),
  }),
  route({
    method: 'GET',
    path: '/clients/{clientId}/proxies/{proxyId}/telemetry',
    access: 'user',
    tag: 'telemetry',
    summary:
      'Telemetry buckets of a proxy with anomaly flags, newest first (interval=minute|hour|day, limit)',
    query: telemetry.telemetryQuerySchema,
    handle: ({ deps, caller, params, query }) =>
      telemetry.proxyTelemetry(deps, caller, params.clientId!, params.proxyId!, query),
  }),
];

/** Credentials, targets and proxies: reads need a member, writes an admin of the client. */
coreRoutes.push(
  route({
    method: 'POST',
    path: '/clients/{clientId}/credentials',
    access: 'admin',
    tag: 'credentials',
    summary:
      'Create a credential; a generated proxy key is answered once, here; an oauth2 authorization_code credential answers its authorizationUrl and stays temporary until consent',
    status: 201,
    body: credentialCreateSchema,
    handle: ({ deps, caller, params, body, event }) =>
      credentials.createCredential(deps, caller, params.clientId!, body, callbackUrlOf(event)),
  }),
  route({
    method: 'GET',
    path: '/clients/{clientId}/credentials',
    access: 'user',
    tag: 'credentials',
    summary:
      'List credentials (never their secrets), a page at a time (limit, nextToken); includeTemporary=true adds those awaiting consent',
    query: credentialListQuerySchema,
    handle: ({ deps, caller, params, query }) =>
      credentials.listCredentials(deps, caller, params.clientId!, query),
  }),
  route({
    method: 'GET',
    path: '/clients/{clientId}/credentials/{credentialId}',
    access: 'user',
    tag: 'credentials',
    summary: 'Read a credential: settings and a hint, never the secret',
    handle: ({ deps, caller, params }) =>
      credentials.getCredential(deps, caller, params.clientId!, params.credentialId!),
  }),
  route({
    method: 'PUT',
    path: '/clients/{clientId}/credentials/{credentialId}',
    access: 'admin',
    tag: 'credentials',
    summary: 'Rename, set or clear expiresAt, or replace the secret in place',
    body: credentialUpdateSchema,
    handle: ({ deps, caller, params, body, event }) =>
      credentials.updateCredential(
        deps,
        caller,
        params.clientId!,
        params.credentialId!,
        body,
        callbackUrlOf(event),
      ),
  }),
  route({
    method: 'POST',
    path: '/clients/{clientId}/credentials/{credentialId}/authorization',
    access: 'admin',
    tag: 'credentials',
    summary:
      'oauth2 authorization_code: a new authorizationUrl (state bound to the credential, single use, 10 min)',
    handle: ({ deps, caller, params, event }) =>
      credentials.authorizeCredential(
        deps,
        caller,
        params.clientId!,
        params.credentialId!,
        callbackUrlOf(event),
      ),
  }),
  route({
    method: 'GET',
    path: CALLBACK_PATH,
    public: true,
    tag: 'credentials',
    summary:
      'oauth2 authorization_code: where the provider sends the user after consent; authenticated by `state`, not a token',
    query: callbackQuerySchema,
    handle: ({ deps, query }) => completeAuthorization(deps, query),
  }),
  route({
    method: 'DELETE',
    path: '/clients/{clientId}/credentials/{credentialId}',
    access: 'admin',
    tag: 'credentials',
    summary: 'Delete a credential: every proxy using it fails from the next request; logs stay',
    status: 204,
    handle: ({ deps, caller, params }) =>
      credentials.deleteCredential(deps, caller, params.clientId!, params.credentialId!),
  }),
  route({
    method: 'POST',
    path: '/clients/{clientId}/targets',
    access: 'admin',
    tag: 'targets',
    summary: 'Create a target (https, public addresses only)',
    status: 201,
    body: targetCreateSchema,
    handle: ({ deps, caller, params, body }) => targets.createTarget(deps, caller, params.clientId!, body),
  }),
  route({
    method: 'GET',
    path: '/clients/{clientId}/targets',
    access: 'user',
    tag: 'targets',
    summary: 'List targets, a page at a time (limit, nextToken)',
    query: pageQuerySchema,
    handle: ({ deps, caller, params, query }) => targets.listTargets(deps, caller, params.clientId!, query),
  }),
  route({
    method: 'GET',
    path: '/clients/{clientId}/targets/{targetId}',
    access: 'user',
    tag: 'targets',
    summary: 'Read a target',
    handle: ({ deps, caller, params }) => targets.getTarget(deps, caller, params.clientId!, params.targetId!),
  }),
  route({
    method: 'PUT',
    path: '/clients/{clientId}/targets/{targetId}',
    access: 'admin',
    tag: 'targets',
    summary: 'Update a target (targetRegion is immutable)',
    body: targetUpdateSchema,
    handle: ({ deps, caller, params, body }) =>
      targets.updateTarget(deps, caller, params.clientId!, params.targetId!, body),
  }),
  route({
    method: 'DELETE',
    path: '/clients/{clientId}/targets/{targetId}',
    access: 'admin',
    tag: 'targets',
    summary: 'Delete a target no proxy uses (409 while one does)',
    status: 204,
    handle: ({ deps, caller, params }) =>
      targets.deleteTarget(deps, caller, params.clientId!, params.targetId!),
  }),
  route({
    method: 'POST',
    path: '/clients/{clientId}/proxies',
    access: 'admin',
    tag: 'proxies',
    summary: 'Create a proxy wiring a proxy credential, a target and a target credential',
    status: 201,
    body: proxyCreateSchema,
    handle: ({ deps, caller, params, body }) => proxies.createProxy(deps, caller, params.clientId!, body),
  }),
  route({
    method: 'GET',
    path: '/clients/{clientId}/proxies',
    access: 'user',
    tag: 'proxies',
    summary: 'List proxies, a page at a time (limit, nextToken)',
    query: pageQuerySchema,
    handle: ({ deps, caller, params, query }) => proxies.listProxies(deps, caller, params.clientId!, query),
  }),
  route({
    method: 'GET',
    path: '/clients/{clientId}/proxies/{proxyId}',
    access: 'user',
    tag: 'proxies',
    summary: 'Read a proxy',
    handle: ({ deps, caller, params }) => proxies.getProxy(deps, caller, params.clientId!, params.proxyId!),
  }),
  route({
    method: 'PUT',
    path: '/clients/{clientId}/proxies/{proxyId}',
    access: 'admin',
    tag: 'proxies',
    summary: 'Update a proxy; swapping a credential id is the zero-downtime rotation step',
    body: proxyUpdateSchema,
    handle: ({ deps, caller, params, body }) =>
      proxies.updateProxy(deps, caller, params.clientId!, params.proxyId!, body),
  }),
  route({
    method: 'DELETE',
    path: '/clients/{clientId}/proxies/{proxyId}',
    access: 'admin',
    tag: 'proxies',
    summary: 'Delete a proxy and its rules; request logs stay',
    status: 204,
    handle: ({ deps, caller, params }) =>
      proxies.deleteProxy(deps, caller, params.clientId!, params.proxyId!),
  }),
  route({
    method: 'POST',
    path: '/clients/{clientId}/proxies/{proxyId}/simulate',
    access: 'user',
    tag: 'proxies',
    summary: 'What the data plane would decide for a request, and why (same code, same snapshot)',
    body: simulateSchema,
    handle: ({ deps, caller, params, body }) =>
      proxies.simulate(deps, caller, params.clientId!, params.proxyId!, body),
  }),
);

/** Rules on each of the three parents: the same five routes under each. */
const RULE_PARENTS: Array<[ParentType, string, string]> = [
  ['credential', 'credentials', 'credentialId'],
  ['target', 'targets', 'targetId'],
  ['proxy', 'proxies', 'proxyId'],
];
for (const [parentType, segment, idParam] of RULE_PARENTS) {
  const base = `/clients/{clientId}/${segment}/{${idParam}}/rules`;
  coreRoutes.push(
    route({
      method: 'POST',
      path: base,
      access: 'admin',
      tag: 'rules',
      summary: `Add a rule to a ${parentType}`,
      status: 201,
      body: ruleCreateSchema,
      handle: ({ deps, caller, params, body }) =>
        rules.createRule(deps, caller, params.clientId!, parentType, params[idParam]!, body),
    }),
    route({
      method: 'GET',
      path: base,
      access: 'user',
      tag: 'rules',
      summary: `List the rules of a ${parentType}, by priority`,
      handle: ({ deps, caller, params }) =>
        rules.listRules(deps, caller, params.clientId!, parentType, params[idParam]!),
    }),
    route({
      method: 'GET',
      path: `${base}/{ruleId}`,
      access: 'user',
      tag: 'rules',
      summary: `Read a rule of a ${parentType}`,
      handle: ({ deps, caller, params }) =>
        rules.getRule(deps, caller, params.clientId!, parentType, params[idParam]!, params.ruleId!),
    }),
    route({
      method: 'PUT',
      path: `${base}/{ruleId}`,
      access: 'admin',
      tag: 'rules',
      summary: `Replace a rule of a ${parentType}`,
      body: ruleUpdateSchema,
      handle: ({ deps, caller, params, body }) =>
        rules.updateRule(deps, caller, params.clientId!, parentType, params[idParam]!, params.ruleId!, body),
    }),
    route({
      method: 'DELETE',
      path: `${base}/{ruleId}`,
      access: 'admin',
      tag: 'rules',
      summary: `Delete a rule of a ${parentType}`,
      status: 204,
      handle: ({ deps, caller, params }) =>
        rules.deleteRule(deps, caller, params.clientId!, parentType, params[idParam]!, params.ruleId!),
    }),
  );
}

/** Meters on proxies and on target credentials (a shared budget): the same five routes under each. */
const METER_PARENTS: Array<[MeterScope, string, string, string]> = [
  ['proxy', 'proxies', 'proxyId', 'proxy'],
  ['credential', 'credentials', 'credentialId', 'target credential (a budget every proxy of it shares)'],
];
for (const [scope, segment, idParam, what] of METER_PARENTS) {
  const base = `/clients/{clientId}/${segment}/{${idParam}}/meters`;
  coreRoutes.push(
    route({
      method: 'POST',
      path: base,
      access: 'admin',
      tag: 'meters',
      summary: `Add a meter (a request or value budget per window) to a ${what}`,
      status: 201,
      body: meterCreateSchema,
      handle: ({ deps, caller, params, body }) =>
        meters.createMeter(deps, caller, params.clientId!, scope, params[idParam]!, body),
    }),
    route({
      method: 'GET',
      path: base,
      access: 'user',
      tag: 'meters',
      summary: `List the meters of a ${scope}`,
      handle: ({ deps, caller, params }) =>
        meters.listMeters(deps, caller, params.clientId!, scope, params[idParam]!),
    }),
    route({
      method: 'GET',
      path: `${base}/{meterId}`,
      access: 'user',
      tag: 'meters',
      summary: `Read a meter of a ${scope}`,
      handle: ({ deps, caller, params }) =>
        meters.getMeter(deps, caller, params.clientId!, scope, params[idParam]!, params.meterId!),
    }),
    route({
      method: 'PUT',
      path: `${base}/{meterId}`,
      access: 'admin',
      tag: 'meters',
      summary: `Replace a meter of a ${scope}`,
      body: meterUpdateSchema,
      handle: ({ deps, caller, params, body }) =>
        meters.updateMeter(deps, caller, params.clientId!, scope, params[idParam]!, params.meterId!, body),
    }),
    route({
      method: 'DELETE',
      path: `${base}/{meterId}`,
      access: 'admin',
      tag: 'meters',
      summary: `Delete a meter of a ${scope}`,
      status: 204,
      handle: ({ deps, caller, params }) =>
        meters.deleteMeter(deps, caller, params.clientId!, scope, params[idParam]!, params.meterId!),
    }),
  );
}

coreRoutes.push(
  route({
    method: 'GET',
    path: '/openapi.json',
    tag: 'meta',
    summary: 'This OpenAPI 3.1 document',
    public: true,
    handle: async () => buildOpenApi(coreRoutes),
  }),
);
