import middy from '@middy/core';
import httpHeaderNormalizer from '@middy/http-header-normalizer';
import type { Deps } from '../shared/deps.ts';
import { type HttpEvent, type HttpResult, jsonErrors } from '../shared/http.ts';
import { coreRoutes } from './api.ts';
import { buildRouter } from './router.ts';

/**
 * RequestRocket's reference documents the Core API under `/api/…`; keygate answers both, so a
 * client moving over only changes the host name. The prefix is dropped before routing.
 */
function apiPrefix(): middy.MiddlewareObj<HttpEvent, HttpResult> {
  return {
    before: ({ event }) => {
      const strip = (path: string | undefined) =>
        path && /^\/api(?=\/|$)/.test(path) ? path.slice(4) || '/' : path;
      const http = (event.requestContext as { http?: { path?: string } } | undefined)?.http;
      if (http?.path) http.path = strip(http.path);
      if (event.rawPath) event.rawPath = strip(event.rawPath) as string;
    },
  };
}

/** The Core API as one middy handler over the given dependencies (Lambda, local mode and tests). */
export function createCoreApiHandler(deps: Deps) {
  return middy<HttpEvent, HttpResult>()
    .use(apiPrefix())
    .use(httpHeaderNormalizer())
    .use(jsonErrors())
    .handler(buildRouter(deps, coreRoutes));
}
