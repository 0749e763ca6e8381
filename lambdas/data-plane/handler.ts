import { configFromEnv } from '../shared/config.ts';
import { createDeps } from '../shared/deps.ts';
import { createProxyHandler } from './proxy-api.ts';

/** Lambda entry of the regional proxy. */
export const handler = createProxyHandler(createDeps(configFromEnv()));
