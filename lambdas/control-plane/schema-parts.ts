import * as z from 'zod/mini';
// The mini build's messages: zod's English ones, as the full build prints them.
import '../shared/zod-messages.ts';

/**
 * Building blocks of the Core API's request schemas (schemas.ts, signed-target-schemas.ts, the
 * query schemas), on `zod/mini`: the tree-shakable build, whose functions (`z.optional(s)`,
 * `s.check(z.maxLength(n))`) replace the full build's methods, so the Core API's bundle carries only
 * the validators it uses (docs/core-api-bundle.md). Messages and the OpenAPI document are the same.
 */

/** A string of `min`–`max` characters. */
export const text = (min: number, max: number) => z.string().check(z.minLength(min), z.maxLength(max));
/** A string of at most `max` characters. */
export const upTo = (max: number) => z.string().check(z.maxLength(max));
/** A whole number from `min` to `max`. */
export const wholeNumber = (min: number, max: number) => z.number().check(z.int(), z.gte(min), z.lte(max));
/** An optional string of any length: the read-only fields a PUT may send back. */
export const anyString = z.optional(z.string());

/** zod's `preprocess`, which the mini build lacks: `prepare` runs on the input, then `schema`. */
export function preprocess<S extends z.core.$ZodType>(prepare: (value: unknown) => unknown, schema: S) {
  return z.pipe(z.transform(prepare), schema);
}
