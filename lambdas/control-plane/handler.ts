import { configFromEnv } from '../shared/config.ts';
import { createDeps } from '../shared/deps.ts';
import { createCoreApiHandler } from './core-api.ts';

/** Lambda entry of the Core API: config checked and clients made once, at cold start. */
export const handler = createCoreApiHandler(createDeps(configFromEnv()));
