import * as clients from './clients.ts';
import * as identity from './identity.ts';
import { buildOpenApi } from './openapi.ts';
import { type Route, route } from './router.ts';
import {
  clientConfigurationSchema,
  clientCreateSchema,
  clientUpdateSchema,
  tokenCreateSchema,
  userCreateSchema,
} from './schemas.ts';
import * as telemetry from './telemetry.ts';

/**
 * Every Core API route, in one table. Domain modules do the work; this file only wires paths to
 * them. Later resources (credentials, targets, proxies, rules, telemetry) add their routes here.
 */
export const coreRoutes: Route[] = [
  route({
    method: 'POST',
    path: '/users',
    tag: 'users',
    summary: 'Create a user (platform admins only); answers the user and a first token, shown once',
    status: 201,
    body: userCreateSchema,
    handle: ({ deps, caller, body }) => identity.createUser(deps, caller, body),
  }),
  route({
    method: 'GET',
    path: '/users/me',
    tag: 'users',
    summary: 'The calling user and the clients they belong to',
    handle: ({ deps, caller }) => identity.getMe(deps, caller),
  }),
  route({
    method: 'POST',
    path: '/users/tokens',
    tag: 'tokens',
    summary: 'Create a Core API token; its value is answered once',
    status: 201,
    body: tokenCreateSchema,
    handle: ({ deps, caller, body }) => identity.createToken(deps, caller, body),
  }),
  route({
    method: 'GET',
    path: '/users/tokens',
    tag: 'tokens',
    summary: 'List your tokens (never their values)',
    handle: ({ deps, caller }) => identity.listTokens(deps, caller),
  }),
  route({
    method: 'POST',
    path: '/users/tokens/{tokenId}',
    tag: 'tokens',
    summary: 'Rotate a token: answers { newToken }; the old value is dead at once',
    handle: ({ deps, caller, params }) => identity.rotateToken(deps, caller, params.tokenId!),
  }),
  route({
    method: 'DELETE',
    path: '/users/tokens/{tokenId}',
    tag: 'tokens',
    summary: 'Revoke a token',
    status: 204,
    handle: ({ deps, caller, params }) => identity.deleteToken(deps, caller, params.tokenId!),
  }),
  route({
    method: 'POST',
    path: '/clients',
    tag: 'clients',
    summary: 'Create a client; the caller becomes an owner',
    status: 201,
    body: clientCreateSchema,
    handle: ({ deps, caller, body }) => clients.createClient(deps, caller, body),
  }),
  route({
    method: 'GET',
    path: '/clients',
    tag: 'clients',
    summary: 'List the clients you are a member of',
    handle: ({ deps, caller }) => clients.listClients(deps, caller),
  }),
  route({
    method: 'GET',
    path: '/clients/{clientId}',
    tag: 'clients',
    summary: 'Read a client',
    handle: ({ deps, caller, params }) => clients.getClient(deps, caller, params.clientId!),
  }),
  route({
    method: 'PUT',
    path: '/clients/{clientId}',
    tag: 'clients',
    summary: 'Rename a client (admin) or set its members and roles (owner)',
    body: clientUpdateSchema,
    handle: ({ deps, caller, params, body }) => clients.updateClient(deps, caller, params.clientId!, body),
  }),
  route({
    method: 'DELETE',
    path: '/clients/{clientId}',
    tag: 'clients',
    summary: 'Delete a client and everything in it (owner); request logs stay until they expire',
    status: 204,
    handle: ({ deps, caller, params }) => clients.deleteClient(deps, caller, params.clientId!),
  }),
  route({
    method: 'PUT',
    path: '/clients/{clientId}/configuration',
    tag: 'clients',
    summary: 'Set client limits; they are the defaults of new proxies',
    body: clientConfigurationSchema,
    handle: ({ deps, caller, params, body }) => clients.configureClient(deps, caller, params.clientId!, body),
  }),
  route({
    method: 'GET',
    path: '/clients/{clientId}/proxies/{proxyId}/requests',
    tag: 'telemetry',
    summary:
      'Request log of a proxy, newest first (processedAfter, processedBefore ISO 8601; limit ≤ 1000; nextToken)',
    handle: ({ deps, caller, params, query }) =>
      telemetry.listRequests(deps, caller, params.clientId!, params.proxyId!, query),
  }),
  route({
    method: 'GET',
    path: '/clients/{clientId}/proxies/{proxyId}/requests/{requestId}',
    tag: 'telemetry',
    summary: 'One request-log record',
    handle: ({ deps, caller, params }) =>
      telemetry.getRequest(deps, caller, params.clientId!, params.proxyId!, params.requestId!),
  }),
  route({
    method: 'GET',
    path: '/clients/{clientId}/telemetry',
    tag: 'telemetry',
    summary: 'Telemetry buckets of a client, newest first (interval=minute|hour|day, limit)',
    handle: ({ deps, caller, params, query }) =>
      telemetry.clientTelemetry(deps, caller, params.clientId!, query),
  }),
  route({
    method: 'GET',
    path: '/clients/{clientId}/proxies/{proxyId}/telemetry',
    tag: 'telemetry',
    summary:
      'Telemetry buckets of a proxy with anomaly flags, newest first (interval=minute|hour|day, limit)',
    handle: ({ deps, caller, params, query }) =>
      telemetry.proxyTelemetry(deps, caller, params.clientId!, params.proxyId!, query),
  }),
];

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
