import { brotliDecompressSync, gunzipSync, inflateSync } from 'node:zlib';
import { parseFormFields } from '../data-plane/canonical-path.ts';
import { RuleInputError, unreadableBody } from './errors.ts';
import { MAX_RULE_BODY_BYTES } from './limits.ts';
import { parseStrictJson, StrictJsonError } from './strict-json.ts';

/**
 * How body checks read a body (docs/rules.md "Bodies"), only when some rule has a body check:
 *  1. `Content-Encoding` gzip (x-gzip), deflate (zlib) or br is decoded, one coding at most, up to
 *     MAX_RULE_BODY_BYTES decoded (a zip bomb stops there: 413); the decoded bytes are what is
 *     sent on, without `Content-Encoding`, so what was checked is what the vendor receives. Any
 *     other coding: refused.
 *  2. The bytes must be UTF-8 (no byte-order mark).
 *  3. JSON is read whatever `Content-Type` says: a body whose media type mentions json, or whose
 *     first non-blank character is `{`, `[` or `"`, must be strict JSON (strict-json.ts).
 *  4. Otherwise, with no media type, text/plain or application/x-www-form-urlencoded, the body is
 *     a JSON scalar if it reads as one, else strict form-urlencoded fields. Any other media type
 *     (multipart, XML, binary…) cannot be read: refused.
 */
export class FormBody {
  readonly fields: Array<[string, string]>;
  /** The body text as received (what `$` resolves to). */
  readonly text: string;
  constructor(fields: Array<[string, string]>, text: string) {
    this.fields = fields;
    this.text = text;
  }
}

export interface ReadBody {
  /** The body as rules see it; undefined for an empty body. */
  body: unknown;
  /** Set when the body was content-decoded: the bytes to send instead (and no Content-Encoding). */
  decoded?: Buffer;
}

const FORM_OR_NONE = new Set(['', 'text/plain', 'application/x-www-form-urlencoded']);

export function readRuleBody(raw: Buffer, headers: Record<string, string>): ReadBody {
  const encoding = contentCodings(headers['content-encoding']);
  const bytes = encoding ? decode(raw, encoding) : raw;
  if (bytes.length > MAX_RULE_BODY_BYTES) throw tooLarge();
  const result: ReadBody = { body: undefined, ...(encoding ? { decoded: bytes } : {}) };
  if (bytes.length === 0) return result;
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    throw unreadableBody('not valid UTF-8');
  }
  if (text.charCodeAt(0) === 0xfeff) throw unreadableBody('a byte-order mark');
  const mediaType = (headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  const first = text.trimStart()[0];
  if (/json/.test(mediaType) || first === '{' || first === '[' || first === '"') {
    result.body = json(text);
    return result;
  }
  if (!FORM_OR_NONE.has(mediaType)) throw unreadableBody(`media type ${JSON.stringify(mediaType)}`);
  if (mediaType !== 'application/x-www-form-urlencoded') {
    try {
      result.body = parseStrictJson(text);
      return result;
    } catch {
      // Not a JSON scalar: read as form fields.
    }
  }
  const fields = parseFormFields(text);
  if (!fields.ok) throw unreadableBody(`not strict form-urlencoded (${fields.reason})`);
  result.body = new FormBody(fields.value, text);
  return result;
}

function json(text: string): unknown {
  try {
    return parseStrictJson(text);
  } catch (error) {
    if (error instanceof StrictJsonError) throw unreadableBody(`not strict JSON (${error.message})`);
    throw error;
  }
}

function contentCodings(header: string | undefined): string | undefined {
  const codings = (header ?? '')
    .split(',')
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c !== '' && c !== 'identity');
  if (codings.length > 1) throw unreadableBody('more than one content coding');
  return codings[0];
}

function decode(raw: Buffer, coding: string): Buffer {
  const options = { maxOutputLength: MAX_RULE_BODY_BYTES };
  try {
    if (coding === 'gzip' || coding === 'x-gzip') return gunzipSync(raw, options);
    if (coding === 'deflate') return inflateSync(raw, options);
    if (coding === 'br') return brotliDecompressSync(raw, options);
  } catch (error) {
    if (error instanceof RangeError || (error as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE')
      throw tooLarge();
    throw unreadableBody(`${coding} data is corrupt`);
  }
  throw unreadableBody(`content coding ${JSON.stringify(coding)} (supported: gzip, deflate, br)`);
}

function tooLarge() {
  return new RuleInputError(
    413,
    'proxy-body-too-large',
    `Body checks apply and the body is over ${MAX_RULE_BODY_BYTES} bytes (after decoding)`,
  );
}
