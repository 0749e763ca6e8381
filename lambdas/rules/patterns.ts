import { RE2JS } from 're2js';
import { MAX_PATTERN_LENGTH, MAX_PROGRAM_SIZE } from './limits.ts';

/**
 * Rule patterns run on RE2 (re2js): linear time in the input whatever the pattern, so no rule can
 * be made to backtrack catastrophically. Linear is not free: a match costs up to program size ×
 * input length steps, so patterns are capped in length and in compiled program size (checked by
 * the same function when a rule is saved and when it runs) and compiled once.
 */
export { MAX_PATTERN_LENGTH, MAX_PROGRAM_SIZE };

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
  const size = compiled.programSize();
  if (size > MAX_PROGRAM_SIZE)
    throw new PatternError(
      `pattern compiles to ${size} instructions, over the limit of ${MAX_PROGRAM_SIZE} (MAX_PROGRAM_SIZE); use smaller repetition counts`,
    );
  if (cache.size >= CACHE_LIMIT) cache.delete(cache.keys().next().value as string);
  cache.set(id, compiled);
  return compiled;
}

/** True when the pattern is found anywhere in the input (anchor with ^…$ for a full match). */
export function patternFinds(pattern: string, input: string, flags = ''): boolean {
  return compilePattern(pattern, flags).matcher(input).find();
}

/** The pattern's compiled program size (the per-character cost factor of a match). */
export function programSize(pattern: string, flags = ''): number {
  return compilePattern(pattern, flags).programSize();
}
