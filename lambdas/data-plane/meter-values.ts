import { StringDecoder } from 'node:string_decoder';
import { createBrotliDecompress, createGunzip, createInflate } from 'node:zlib';
import type { MeterView } from '../storage/snapshot-types.ts';

/**
 * Reads meter values from a vendor's answer AS IT PASSES (data-plane/meters.ts, docs/meters.md):
 * the proxy hands every chunk to {@link ValueReader.push} on its way to the consumer and never
 * waits for it, so nothing is held back. What the reader keeps is bounded:
 *  - `text/event-stream` (OpenAI, Anthropic streams): server-sent events are parsed incrementally,
 *    line by line; each event's `data` (up to EVENT_CAP bytes; a bigger one is skipped) is read as
 *    JSON and every meter's path is tried on it. The LAST value a stream carries wins: OpenAI sends
 *    usage once, in its final chunk (`stream_options.include_usage`); Anthropic's `message_delta`
 *    usage is cumulative. A `message_start` event is also read as its `message`, so
 *    `$.usage.input_tokens` means the same in Anthropic's streamed and plain answers.
 *  - a JSON answer (`application/json`, `…+json`): kept up to JSON_CAP bytes and parsed once at its
 *    end; a bigger answer is passed on whole but not read (`unread: 'too_large'`, value 0).
 *  - anything else is not read (`unread: 'not_json'`).
 * gzip/deflate/br answers are decompressed on a side copy for reading (the consumer still gets the
 * vendor's bytes); the caps apply to the decompressed text.
 *
 * Hand-written rather than an SSE library: the ones available keep an unbounded buffer for an
 * event that never ends; this one drops it at the cap.
 */
export const JSON_CAP = 1024 * 1024;
export const EVENT_CAP = 256 * 1024;

export type Unread = 'too_large' | 'not_json' | 'no_value' | 'encoded';

const STEP = /\.([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]/y;

/** The finite, non-negative number at `path` (the meters' `$.a.b[0]` subset), else undefined. */
export function valueAt(root: unknown, path: string): number | undefined {
  let current: unknown = root;
  STEP.lastIndex = 1;
  while (STEP.lastIndex < path.length) {
    const m = STEP.exec(path);
    if (!m || current === null || typeof current !== 'object') return undefined;
    if (m[1] !== undefined) {
      if (Array.isArray(current) || !Object.hasOwn(current, m[1])) return undefined;
      current = (current as Record<string, unknown>)[m[1]];
    } else {
      if (!Array.isArray(current)) return undefined;
      current = current[Number(m[2])];
    }
  }
  return typeof current === 'number' && Number.isFinite(current) && current >= 0 ? current : undefined;
}

export interface ReadValues {
  /** meterId → the value read (absent: none found). */
  values: Map<string, number>;
  /** Why nothing could be read, when nothing was. */
  unread?: Unread;
}

type Mode = 'sse' | 'json' | 'none';

export class ValueReader {
  private readonly meters: MeterView[];
  private readonly mode: Mode;
  private readonly values = new Map<string, number>();
  private readonly decoder = new StringDecoder('utf8');
  private unread?: Unread;
  /** json: the answer so far; sse: the current line. */
  private text = '';
  private textBytes = 0;
  /** sse: the current event's data lines, and whether this event (or line) went over the cap. */
  private data: string[] = [];
  private dataBytes = 0;
  private skipping = false;
  private readonly inflate?: NodeJS.ReadWriteStream;
  private readonly inflated?: Promise<void>;

  constructor(meters: MeterView[], headers: Record<string, string | string[] | undefined>) {
    this.meters = meters.filter((m) => m.valuePath !== undefined);
    const type = String(headers['content-type'] ?? '').toLowerCase();
    this.mode = type.startsWith('text/event-stream')
      ? 'sse'
      : /^application\/(?:[\w.-]+\+)?json\b/.test(type)
        ? 'json'
        : 'none';
    if (this.mode === 'none') this.unread = 'not_json';
    const encoding = String(headers['content-encoding'] ?? 'identity')
      .toLowerCase()
      .trim();
    if (this.mode !== 'none' && encoding !== 'identity' && encoding !== '') {
      const make = {
        gzip: createGunzip,
        'x-gzip': createGunzip,
        deflate: createInflate,
        br: createBrotliDecompress,
      }[encoding];
      if (!make) this.unread = 'encoded';
      else {
        this.inflate = make();
        this.inflate.on('data', (chunk: Buffer) => this.read(chunk));
        this.inflated = new Promise<void>((resolve) => {
          this.inflate!.on('end', resolve);
          this.inflate!.on('error', () => {
            this.unread = 'encoded';
            resolve();
          });
        });
      }
    }
  }

  /** A chunk of the answer, as it passes. Never throws. */
  push(chunk: Buffer): void {
    if (this.unread === 'not_json' || this.unread === 'encoded' || this.meters.length === 0) return;
    try {
      if (this.inflate) this.inflate.write(chunk);
      else this.read(chunk);
    } catch {
      // Reading is best effort: the answer passes whatever happens here.
      this.unread = 'not_json';
    }
  }

  /** The values read, once the answer has ended (or was cut). */
  async finish(): Promise<ReadValues> {
    if (this.inflate) {
      this.inflate.end();
      await this.inflated;
    }
    this.read(undefined);
    if (this.mode === 'json' && !this.unread && this.text !== '') {
      try {
        const answer: unknown = JSON.parse(this.text);
        for (const m of this.meters) this.take(m, valueAt(answer, m.valuePath!));
      } catch {
        this.unread = 'not_json';
      }
    }
    this.text = '';
    if (this.values.size === 0 && !this.unread && this.meters.length > 0) this.unread = 'no_value';
    return { values: this.values, ...(this.values.size === 0 && this.unread ? { unread: this.unread } : {}) };
  }

  private take(m: MeterView, value: number | undefined) {
    if (value !== undefined) this.values.set(m.meterId, value);
  }

  private read(chunk: Buffer | undefined): void {
    const text = chunk ? this.decoder.write(chunk) : this.decoder.end();
    if (this.mode === 'json') {
      if (this.unread) return;
      this.textBytes += chunk?.length ?? 0;
      if (this.textBytes > JSON_CAP) {
        this.unread = 'too_large';
        this.text = '';
        return;
      }
      this.text += text;
      return;
    }
    if (this.mode === 'sse') this.readEvents(text, chunk === undefined);
  }

  /** Splits SSE text into lines (CRLF, LF or CR), keeping a partial line up to the cap. */
  private readEvents(text: string, atEnd: boolean) {
    let start = 0;
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      this.line(this.text + text.slice(start, i));
      this.text = '';
      if (c === 13 && text.charCodeAt(i + 1) === 10) i++;
      start = i + 1;
    }
    const rest = text.slice(start);
    if (this.text.length + rest.length > EVENT_CAP) {
      this.skipping = true;
      this.text = '';
    } else this.text += rest;
    if (atEnd) {
      if (this.text) this.line(this.text);
      this.line('');
    }
  }

  private line(line: string) {
    if (line === '') {
      if (!this.skipping && this.data.length > 0) this.event(this.data.join('\n'));
      this.data = [];
      this.dataBytes = 0;
      this.skipping = false;
      return;
    }
    if (!line.startsWith('data:') || this.skipping) return;
    const value = line.charCodeAt(5) === 32 ? line.slice(6) : line.slice(5);
    this.dataBytes += value.length;
    if (this.dataBytes > EVENT_CAP) this.skipping = true;
    else this.data.push(value);
  }

  private event(data: string) {
    if (data === '[DONE]' || !data.startsWith('{')) return;
    let event: Record<string, unknown>;
    try {
      event = JSON.parse(data) as Record<string, unknown>;
    } catch {
      return;
    }
    for (const m of this.meters) {
      let value = valueAt(event, m.valuePath!);
      if (value === undefined && event.type === 'message_start') value = valueAt(event.message, m.valuePath!);
      this.take(m, value);
    }
  }
}
