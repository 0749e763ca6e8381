import * as z from 'zod/mini';
import { BadRequestError } from '../shared/errors.ts';
import { wholeNumber } from './schema-parts.ts';

/**
 * Pages of a list: `?limit=` (1–1000, default 100) and `?nextToken=` (from the previous answer).
 * A list answers `nextToken` only when more items follow. The token is opaque to the caller; inside
 * it is the sort key of the last item answered, checked on the way back in to be a key of the very
 * list asked for, so a token can neither reach another list nor another tenant (the partition comes
 * from the authorised path, never from the token).
 */
export const DEFAULT_PAGE = 100;
export const MAX_PAGE = 1000;

/** A whole-number query parameter between 1 and `max`. */
export const limitParam = (max: number) =>
  z.pipe(
    z.pipe(z.string().check(z.regex(/^\d{1,7}$/, 'must be a whole number')), z.transform(Number)),
    wholeNumber(1, max),
  );

export const pageQuerySchema = z.strictObject({
  limit: z.optional(limitParam(MAX_PAGE)),
  nextToken: z.optional(z.string().check(z.maxLength(600))),
});

export type PageQuery = z.infer<typeof pageQuerySchema>;

/**
 * The credential list also takes RequestRocket's `includeTemporary`: `true` also lists credentials
 * waiting for a user's consent (oauth2 authorization_code, docs/target-auth-tokens.md).
 */
export const credentialListQuerySchema = z.extend(pageQuerySchema, {
  includeTemporary: z.optional(z.enum(['true', 'false'])),
});

export interface PageRequest {
  limit: number;
  /** Sort key of the last item of the previous page. */
  after?: string;
}

/** A `nextToken`: one position in a list (`after` a sort key, or `before` a request id), opaque. */
export function encodeCursor(key: 'after' | 'before', position: string): string {
  return Buffer.from(JSON.stringify({ v: 1, [key]: position })).toString('base64url');
}

/** The position inside a `nextToken`, if `accept` takes it as one of the list asked for; else 400. */
export function decodeCursor(
  token: string,
  key: 'after' | 'before',
  accept: (position: string) => boolean,
): string {
  try {
    const parsed = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as Record<string, unknown>;
    const position = parsed[key];
    if (parsed.v === 1 && typeof position === 'string' && accept(position)) return position;
  } catch {
    // falls through to the 400
  }
  throw new BadRequestError(
    'nextToken is not valid for this list; pass the one a previous answer returned',
    'invalid_next_token',
  );
}

/** The page a query asks for, within the list whose sort keys start with `skPrefix`. */
export function pageRequest(query: PageQuery | undefined, skPrefix: string): PageRequest {
  const limit = query?.limit ?? DEFAULT_PAGE;
  if (query?.nextToken === undefined) return { limit };
  return { limit, after: decodeCursor(query.nextToken, 'after', (sk) => sk.startsWith(skPrefix)) };
}

/**
 * A list answer: the items under their plural name, `nextToken` when more follow, and
 * RequestRocket's `message` (additive; clients that ignore it lose nothing).
 */
export function listAnswer<T>(name: string, items: T[], nextToken?: string) {
  return {
    message: `${items.length} ${items.length === 1 ? name.replace(/s$/, '') : name}${nextToken ? ' (more follow)' : ''}`,
    [name]: items,
    ...(nextToken ? { nextToken } : {}),
  };
}
