import httpRouterHandler from '@middy/http-router';
import type * as z from 'zod/mini';
import type { Deps } from '../shared/deps.ts';
import { ForbiddenError, NotFoundError } from '../shared/errors.ts';
import { type HttpEvent, type HttpResult, json, parseJsonBody, validate } from '../shared/http.ts';
import { maskUrlsDeep } from '../telemetry/masking.ts';
import { authorizeClient, type Role } from './clients.ts';
import { authenticate, type Caller } from './identity.ts';

/**
 * A Core API route: its method, path, who may call it, its schemas and what it does. The same list
 * builds the router and the OpenAPI document, so neither can drift from the other.
 *
 * Who may call is part of the route (`access`), and the router checks it FIRST — after the token,
 * before the query and the body are even parsed. So a caller who is not a member of the client
 * always gets the same 404, whatever the body (a malformed body tells them nothing either), and a
 * member without the role gets 403 before any validation. Domain functions still authorize
 * themselves (a finer role may depend on the body, e.g. changing members needs `owner`).
 */
export interface RouteContext<B, Q = Record<string, string | undefined>> {
  deps: Deps;
  caller: Caller;
  params: Record<string, string>;
  /** The query parameters, parsed by the route's `query` schema when it has one. */
  query: Q;
  body: B;
  event: HttpEvent;
}

export type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';

export interface Route<
  S extends z.ZodMiniType | undefined = z.ZodMiniType | undefined,
  Q extends z.ZodMiniType | undefined = z.ZodMiniType | undefined,
> {
  method: Method;
  path: string;
  summary: string;
  tag: string;
  /** Success status; 204 answers no body. */
  status?: number;
  /** Routes that need no token (the OpenAPI document). */
  public?: boolean;
  /**
   * The least role on the route's `{clientId}` (member of the client: `user`; `admin`; `owner`),
   * `platformAdmin`, or `anyUser` (any valid token; the route acts on the caller's own things).
   * Every non-public route declares one; a `{clientId}` route must name a client role.
   */
  access?: Role | 'platformAdmin' | 'anyUser';
  body?: S;
  /** Query parameters: validated (400 naming `query.<name>`) and listed in the OpenAPI document. */
  query?: Q;
  handle: (
    ctx: RouteContext<
      S extends z.ZodMiniType ? z.infer<S> : undefined,
      Q extends z.ZodMiniType ? z.infer<Q> : Record<string, string | undefined>
    >,
  ) => Promise<unknown>;
}

/** Keeps the body and query types of each route while collecting them into one list. */
export function route<
  S extends z.ZodMiniType | undefined = undefined,
  Q extends z.ZodMiniType | undefined = undefined,
>(r: Route<S, Q>): Route {
  return r as unknown as Route;
}

const CLIENT_ROLES = new Set<string>(['user', 'admin', 'owner']);

/** A route table that forgets who may call a route fails at init, not in production. */
export function checkRouteAccess(routes: Route[]): void {
  for (const r of routes) {
    if (r.public) continue;
    if (!r.access) throw new Error(`route ${r.method} ${r.path} declares no access`);
    if (r.path.includes('{clientId}') !== CLIENT_ROLES.has(r.access))
      throw new Error(`route ${r.method} ${r.path}: access ${r.access} does not fit the path`);
  }
}

/** Membership and role, checked before anything of the request is parsed. */
async function checkAccess(deps: Deps, r: Route, caller: Caller, params: Record<string, string>) {
  if (r.access === 'platformAdmin' && !caller.platformAdmin)
    throw new ForbiddenError('Only platform admins may do this');
  if (r.access && CLIENT_ROLES.has(r.access))
    // A client whose deletion began is gone for every route but the DELETE that finishes it.
    await authorizeClient(deps, caller, params.clientId ?? '', r.access as Role, {
      deleting: r.method === 'DELETE' && r.path === '/clients/{clientId}',
    });
}

/** Builds the router handler (to be wrapped by middy) from the routes. */
export function buildRouter(deps: Deps, routes: Route[]) {
  checkRouteAccess(routes);
  return httpRouterHandler({
    routes: routes.map((r) => ({
      method: r.method,
      path: r.path,
      handler: async (event: HttpEvent): Promise<HttpResult> => {
        const caller = r.public
          ? (undefined as unknown as Caller)
          : await authenticate(deps, event.headers?.authorization);
        const params = (event.pathParameters ?? {}) as Record<string, string>;
        if (!r.public) await checkAccess(deps, r, caller, params);
        const rawQuery = event.queryStringParameters ?? {};
        const query = r.query ? validate(r.query, rawQuery, 'query') : rawQuery;
        const body = r.body ? parseJsonBody(event, r.body, deps.config.maxBodyBytes) : undefined;
        const result = await r.handle({
          deps,
          caller,
          params,
          query,
          body,
          event,
        });
        const status = r.status ?? 200;
        return status === 204
          ? { statusCode: 204, headers: { 'cache-control': 'no-store' } }
          : json(status, maskUrlsDeep(result));
      },
    })),
    notFoundResponse: ({ method, path }: { method: string; path: string }) => {
      throw new NotFoundError(`No route for ${method} ${path}`, 'route_not_found');
    },
  });
}
