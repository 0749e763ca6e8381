import httpRouterHandler from '@middy/http-router';
import type { z } from 'zod';
import type { Deps } from '../shared/deps.ts';
import { NotFoundError } from '../shared/errors.ts';
import { type HttpEvent, type HttpResult, json, parseJsonBody, validate } from '../shared/http.ts';
import { authenticate, type Caller } from './identity.ts';

/**
 * A Core API route: its method, path, schema and what it does. The same list builds the router
 * and the OpenAPI document, so neither can drift from the other.
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
  S extends z.ZodType | undefined = z.ZodType | undefined,
  Q extends z.ZodType | undefined = z.ZodType | undefined,
> {
  method: Method;
  path: string;
  summary: string;
  tag: string;
  /** Success status; 204 answers no body. */
  status?: number;
  /** Routes that need no token (the OpenAPI document). */
  public?: boolean;
  body?: S;
  /** Query parameters: validated (400 naming `query.<name>`) and listed in the OpenAPI document. */
  query?: Q;
  handle: (
    ctx: RouteContext<
      S extends z.ZodType ? z.infer<S> : undefined,
      Q extends z.ZodType ? z.infer<Q> : Record<string, string | undefined>
    >,
  ) => Promise<unknown>;
}

/** Keeps the body and query types of each route while collecting them into one list. */
export function route<
  S extends z.ZodType | undefined = undefined,
  Q extends z.ZodType | undefined = undefined,
>(r: Route<S, Q>): Route {
  return r as unknown as Route;
}

/** Builds the router handler (to be wrapped by middy) from the routes. */
export function buildRouter(deps: Deps, routes: Route[]) {
  return httpRouterHandler({
    routes: routes.map((r) => ({
      method: r.method,
      path: r.path,
      handler: async (event: HttpEvent): Promise<HttpResult> => {
        const caller = r.public
          ? (undefined as unknown as Caller)
          : await authenticate(deps, event.headers?.authorization);
        const rawQuery = event.queryStringParameters ?? {};
        const query = r.query ? validate(r.query, rawQuery, 'query') : rawQuery;
        const body = r.body ? parseJsonBody(event, r.body, deps.config.maxBodyBytes) : undefined;
        const result = await r.handle({
          deps,
          caller,
          params: (event.pathParameters ?? {}) as Record<string, string>,
          query,
          body,
          event,
        });
        const status = r.status ?? 200;
        return status === 204
          ? { statusCode: 204, headers: { 'cache-control': 'no-store' } }
          : json(status, result);
      },
    })),
    notFoundResponse: ({ method, path }: { method: string; path: string }) => {
      throw new NotFoundError(`No route for ${method} ${path}`, 'route_not_found');
    },
  });
}
