import { Logger } from '@aws-lambda-powertools/logger';

/**
 * Structured JSON logs (Powertools). Log lines carry ids, names and outcomes — never a token, key,
 * secret, Authorization header or request body.
 */
export const logger = new Logger({ serviceName: 'keygate' });
