import { MAX_JSON_DEPTH } from './limits.ts';

/**
 * A strict JSON reader for body checks (RFC 8259 with no leniency), written for one purpose: read
 * a body exactly as the strictest vendor would, and refuse what two parsers could read two ways.
 *
 * Refused: duplicate keys in one object (after unescaping and case folding: `"a"`, `"\u0061"` and
 * `"A"` are the same key),
 * anything after the value but JSON whitespace, a byte-order mark, raw control characters in
 * strings, invalid escapes, lone surrogate escapes (`"\ud800"`), nesting deeper than
 * MAX_JSON_DEPTH, and everything JSON.parse refuses. Numbers keep their source text
 * (`JsonNumber`), so a rule sees `1e3` and `1000` as what they are, not as a rounded double;
 * containers keep theirs (`sourceOf`), so a pattern on an object is run on the exact bytes sent.
 * Objects have no prototype: a `__proto__` key is an ordinary key.
 */
export class JsonNumber {
  readonly source: string;
  constructor(source: string) {
    this.source = source;
  }
}

export class StrictJsonError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StrictJsonError';
  }
}

/**
 * Case folding for names: vendors such as Go's encoding/json match object keys case-insensitively
 * (Kelvin sign and long s included), so keys equal once folded are duplicates here.
 */
export function foldName(name: string): string {
  return name.toUpperCase().toLowerCase();
}

const sources = new WeakMap<object, string>();

/** The exact source text of an object or array this reader produced. */
export function sourceOf(value: object): string | undefined {
  return sources.get(value);
}

const WS = new Set([0x20, 0x09, 0x0a, 0x0d]);
const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const ESCAPES: Record<string, string> = {
  '"': '"',
  '\\': '\\',
  '/': '/',
  b: '\b',
  f: '\f',
  n: '\n',
  r: '\r',
  t: '\t',
};

/** Parses `text` strictly; throws StrictJsonError saying why it is refused. */
export function parseStrictJson(text: string): unknown {
  let i = 0;
  const fail = (why: string): never => {
    throw new StrictJsonError(`${why} at offset ${i}`);
  };
  const skipWs = () => {
    while (i < text.length && WS.has(text.charCodeAt(i))) i++;
  };

  function parseString(): string {
    i++; // opening quote
    let out = '';
    let start = i;
    for (;;) {
      if (i >= text.length) fail('unterminated string');
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        out += text.slice(start, i);
        i++;
        return out;
      }
      if (c < 0x20) fail('raw control character in a string');
      if (c === 0x5c) {
        out += text.slice(start, i);
        const e = text[i + 1];
        if (e === 'u') {
          const unit = hex4(i + 2);
          i += 6;
          if (unit >= 0xd800 && unit <= 0xdbff) {
            if (text[i] !== '\\' || text[i + 1] !== 'u') fail('lone surrogate escape');
            const low = hex4(i + 2);
            if (low < 0xdc00 || low > 0xdfff) fail('lone surrogate escape');
            i += 6;
            out += String.fromCharCode(unit, low);
          } else if (unit >= 0xdc00 && unit <= 0xdfff) {
            fail('lone surrogate escape');
          } else {
            out += String.fromCharCode(unit);
          }
        } else {
          const decoded = e === undefined ? undefined : ESCAPES[e];
          if (decoded === undefined) fail('invalid escape');
          out += decoded;
          i += 2;
        }
        start = i;
        continue;
      }
      if (c >= 0xd800 && c <= 0xdfff) {
        // A raw lone surrogate cannot come from valid UTF-8; the caller decodes strictly, but the
        // parser does not rely on it.
        const pair = c <= 0xdbff && (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00;
        if (!pair) fail('lone surrogate');
        i += 2;
        continue;
      }
      i++;
    }
  }

  function hex4(at: number): number {
    const h = text.slice(at, at + 4);
    if (!/^[0-9A-Fa-f]{4}$/.test(h)) fail('invalid \\u escape');
    return Number.parseInt(h, 16);
  }

  function parseValue(depth: number): unknown {
    skipWs();
    const c = text[i];
    if (c === '{' || c === '[') {
      if (depth >= MAX_JSON_DEPTH) fail(`nesting deeper than ${MAX_JSON_DEPTH}`);
      return c === '{' ? parseObject(depth + 1) : parseArray(depth + 1);
    }
    if (c === '"') return parseString();
    if (text.startsWith('true', i)) return literal(4, true);
    if (text.startsWith('false', i)) return literal(5, false);
    if (text.startsWith('null', i)) return literal(4, null);
    NUMBER.lastIndex = i;
    const m = NUMBER.exec(text);
    if (!m) return fail(c === undefined ? 'unexpected end' : 'unexpected character');
    i += m[0].length;
    return new JsonNumber(m[0]);
  }

  function literal<T>(length: number, value: T): T {
    i += length;
    return value;
  }

  function parseObject(depth: number): Record<string, unknown> {
    const start = i;
    i++;
    const out: Record<string, unknown> = Object.create(null);
    const seen = new Set<string>();
    skipWs();
    if (text[i] === '}') {
      i++;
    } else {
      for (;;) {
        skipWs();
        if (text[i] !== '"') fail('expected a key');
        const key = parseString();
        const folded = foldName(key);
        if (seen.has(folded)) fail(`duplicate key ${JSON.stringify(key.slice(0, 64))} (case-insensitive)`);
        seen.add(folded);
        skipWs();
        if (text[i] !== ':') fail('expected ":"');
        i++;
        out[key] = parseValue(depth);
        skipWs();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === '}') {
          i++;
          break;
        }
        fail('expected "," or "}"');
      }
    }
    sources.set(out, text.slice(start, i));
    return out;
  }

  function parseArray(depth: number): unknown[] {
    const start = i;
    i++;
    const out: unknown[] = [];
    skipWs();
    if (text[i] === ']') {
      i++;
    } else {
      for (;;) {
        out.push(parseValue(depth));
        skipWs();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === ']') {
          i++;
          break;
        }
        fail('expected "," or "]"');
      }
    }
    sources.set(out, text.slice(start, i));
    return out;
  }

  if (text.charCodeAt(0) === 0xfeff) fail('byte-order mark');
  const value = parseValue(0);
  skipWs();
  if (i < text.length) fail('trailing bytes after the JSON value');
  return value;
}
