import { gzipSync } from 'node:zlib';
import { describe, expect, it } from '@jest/globals';
import { EVENT_CAP, JSON_CAP, ValueReader, valueAt } from '../../lambdas/data-plane/meter-values.ts';
import type { MeterView } from '../../lambdas/storage/snapshot-types.ts';

const meter = (meterId: string, valuePath: string): MeterView => ({
  meterId,
  scope: 'proxy',
  meterName: meterId,
  meterType: 'response_value',
  valuePath,
  window: 'day',
  limit: 1000,
  action: 'block',
});

/** Feeds the answer in pieces of `size` bytes (1: every possible split point). */
async function read(meters: MeterView[], headers: Record<string, string>, body: Buffer, size = 1) {
  const reader = new ValueReader(meters, headers);
  for (let i = 0; i < body.length; i += size) reader.push(body.subarray(i, i + size));
  return reader.finish();
}

const sse = (events: Array<[string | undefined, unknown]>, eol = '\n') =>
  Buffer.from(
    events
      .map(
        ([event, data]) =>
          `${event ? `event: ${event}${eol}` : ''}data: ${typeof data === 'string' ? data : JSON.stringify(data)}${eol}${eol}`,
      )
      .join(''),
  );

describe('meter values', () => {
  it('resolves only the .name / [n] subset, to finite non-negative numbers', () => {
    const doc = { usage: { total_tokens: 12, neg: -1, s: '5' }, choices: [{ n: 3 }] };
    expect(valueAt(doc, '$.usage.total_tokens')).toBe(12);
    expect(valueAt(doc, '$.choices[0].n')).toBe(3);
    expect(valueAt(doc, '$.choices[1].n')).toBeUndefined();
    expect(valueAt(doc, '$.usage.neg')).toBeUndefined();
    expect(valueAt(doc, '$.usage.s')).toBeUndefined();
    expect(valueAt(doc, '$.usage.toString')).toBeUndefined();
  });

  it('reads Anthropic streams: input tokens from message_start, cumulative output tokens from the last message_delta', async () => {
    const body = sse(
      [
        [
          'message_start',
          { type: 'message_start', message: { id: 'm', usage: { input_tokens: 25, output_tokens: 1 } } },
        ],
        ['content_block_delta', { type: 'content_block_delta', delta: { type: 'text_delta', text: 'hé ✓' } }],
        [
          'message_delta',
          { type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 7 } },
        ],
        ['message_delta', { type: 'message_delta', delta: {}, usage: { output_tokens: 15 } }],
        ['message_stop', { type: 'message_stop' }],
      ],
      '\r\n',
    );
    const meters = [meter('in', '$.usage.input_tokens'), meter('out', '$.usage.output_tokens')];
    for (const size of [1, 7, body.length]) {
      const got = await read(meters, { 'content-type': 'text/event-stream; charset=utf-8' }, body, size);
      expect(Object.fromEntries(got.values)).toEqual({ in: 25, out: 15 });
    }
  });

  it("reads OpenAI's final usage chunk and skips [DONE]; no usage chunk: no value, said why", async () => {
    const chunk = { object: 'chat.completion.chunk', choices: [{ delta: { content: 'x' } }], usage: null };
    const usage = { object: 'chat.completion.chunk', choices: [], usage: { total_tokens: 42 } };
    const m = [meter('t', '$.usage.total_tokens')];
    const h = { 'content-type': 'text/event-stream' };
    expect(
      (
        await read(
          m,
          h,
          sse([
            [undefined, chunk],
            [undefined, usage],
            [undefined, '[DONE]'],
          ]),
        )
      ).values.get('t'),
    ).toBe(42);
    expect(
      await read(
        m,
        h,
        sse([
          [undefined, chunk],
          [undefined, '[DONE]'],
        ]),
      ),
    ).toEqual({ values: new Map(), unread: 'no_value' });
  });

  it('skips an event over the cap without keeping it, and reads the next one', async () => {
    const big = `{"pad":"${'x'.repeat(EVENT_CAP + 10)}","usage":{"total_tokens":999}}`;
    const body = Buffer.concat([sse([[undefined, big]]), sse([[undefined, { usage: { total_tokens: 3 } }]])]);
    const got = await read(
      [meter('t', '$.usage.total_tokens')],
      { 'content-type': 'text/event-stream' },
      body,
      4096,
    );
    expect(got.values.get('t')).toBe(3);
  });

  it('parses a JSON answer once, up to the cap; above it, the value is not read', async () => {
    const m = [meter('t', '$.usage.total_tokens')];
    const h = { 'content-type': 'application/json' };
    const small = Buffer.from(JSON.stringify({ usage: { total_tokens: 9 } }));
    expect((await read(m, h, small)).values.get('t')).toBe(9);
    const large = Buffer.from(JSON.stringify({ pad: 'x'.repeat(JSON_CAP), usage: { total_tokens: 9 } }));
    expect(await read(m, h, large, 65_536)).toEqual({ values: new Map(), unread: 'too_large' });
    expect(await read(m, { 'content-type': 'text/plain' }, small)).toEqual({
      values: new Map(),
      unread: 'not_json',
    });
  });

  it('reads a gzip answer from a decompressed side copy', async () => {
    const body = gzipSync(JSON.stringify({ usage: { total_tokens: 77 } }));
    const got = await read(
      [meter('t', '$.usage.total_tokens')],
      { 'content-type': 'application/json', 'content-encoding': 'gzip' },
      body,
      3,
    );
    expect(got.values.get('t')).toBe(77);
    const odd = await read(
      [meter('t', '$.usage.total_tokens')],
      { 'content-type': 'application/json', 'content-encoding': 'zstd' },
      body,
    );
    expect(odd.unread).toBe('encoded');
  });
});
