import middy from '@middy/core';
import httpHeaderNormalizer from '@middy/http-header-normalizer';
import type { Deps } from '../shared/deps.ts';
import { type HttpEvent, type HttpResult, jsonErrors } from '../shared/http.ts';
import { coreRoutes } from './api.ts';
import { buildRouter } from './router.ts';

/** The Core API as one middy handler over the given dependencies (Lambda, local mode and tests). */
export function createCoreApiHandler(deps: Deps) {
  return middy<HttpEvent, HttpResult>()
    .use(httpHeaderNormalizer())
    .use(jsonErrors())
    .handler(buildRouter(deps, coreRoutes));
}
