import { RE2JS } from 're2js';

/**
 * Rule patterns run on RE2 (re2js): linear time in the input whatever the pattern, so no rule can
 * be made to backtrack catastrophically. Patterns are capped in length and compiled once.
 */
export const MAX_PATTERN_LENGTH = 1024;
const FLAG_BITS: Record<string, number> = {
  i: RE2JS.CASE_INSENSITIVE,
  s: RE2JS.DOTALL,
  m: RE2JS.MULTILINE,
};
export const ALLOWED_FLAGS = Object.keys(FLAG_BITS).join('');

const cache = new Map<string, RE2JS>();
const CACHE_LIMIT = 5000;

export class PatternError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PatternError';
  }
}

/** Compiles (or fetches) a pattern; throws PatternError with a readable reason. */
export function compilePattern(pattern: string, flags = ''): RE2JS {
  const id = `${flags}\u0000${pattern}`;
  const hit = cache.get(id);
  if (hit) return hit;
  if (pattern.length > MAX_PATTERN_LENGTH)
    throw new PatternError(`pattern longer than ${MAX_PATTERN_LENGTH} characters`);
  let bits = 0;
  for (const f of flags) {
    const bit = FLAG_BITS[f];
    if (bit === undefined) throw new PatternError(`unknown regex flag '${f}' (allowed: ${ALLOWED_FLAGS})`);
    bits |= bit;
  }
  let compiled: RE2JS;
  try {
    compiled = RE2JS.compile(pattern, bits);
  } catch (error) {
    throw new PatternError((error as Error).message);
  }
  if (cache.size >= CACHE_LIMIT) cache.delete(cache.keys().next().value as string);
  cache.set(id, compiled);
  return compiled;
}

/** True when the pattern is found anywhere in the input (anchor with ^…$ for a full match). */
export function patternFinds(pattern: string, input: string, flags = ''): boolean {
  return compilePattern(pattern, flags).matcher(input).find();
}
