import { describe, expect, it } from '@jest/globals';
import { readJsonPath } from '../../lambdas/data-plane/custom-token.ts';
import { InjectionError, injectionFor } from '../../lambdas/data-plane/inject-credential.ts';
import { refreshAtOf, TokenCache } from '../../lambdas/data-plane/token-cache.ts';

describe('readJsonPath (customToken tokenPath / expiresInPath)', () => {
  const answer = { data: { session: { token: 'tok', ttl: 90 } }, items: [{ token: 'first' }], n: 0 };
  it.each([
    ['data.session.token', 'tok'],
    ['$.data.session.ttl', 90],
    ['items[0].token', 'first'],
    ['$.items[0].token', 'first'],
    ['n', 0],
  ])('%s', (path, value) => {
    expect(readJsonPath(answer, path)).toBe(value);
  });
  it.each(['data.nope', 'items[3].token', 'data.session.token.more', 'items.token', 'toString', '__proto__'])(
    'absent: %s',
    (path) => {
      expect(readJsonPath(answer, path)).toBeUndefined();
    },
  );
});

describe('customToken injection (injectAs)', () => {
  it('defaults to Authorization: Bearer', () => {
    expect(injectionFor('customToken', {}, 't1')).toEqual({ headers: { authorization: 'Bearer t1' } });
  });
  it('another header gets no prefix unless one is given', () => {
    expect(injectionFor('customToken', { injectAs: { headerName: 'X-Session' } }, 't1')).toEqual({
      headers: { 'x-session': 't1' },
    });
    expect(
      injectionFor('customToken', { injectAs: { headerName: 'Authorization', prefix: 'Token ' } }, 't1'),
    ).toEqual({ headers: { authorization: 'Token t1' } });
  });
  it('or a query parameter', () => {
    expect(injectionFor('customToken', { injectAs: { queryParam: 'access_token' } }, 't1')).toEqual({
      headers: {},
      query: { name: 'access_token', value: 't1' },
    });
  });
  it('refuses without a token, or with an unsendable one', () => {
    expect(() => injectionFor('customToken', {})).toThrow(InjectionError);
    expect(() => injectionFor('customToken', {}, 'a\nb')).toThrow(InjectionError);
  });
});

describe('TokenCache', () => {
  it('refreshes a tenth of the lifetime early, at most 60 s', () => {
    expect(refreshAtOf({ fetchedAt: 0, expiresAt: 10_000 })).toBe(9000);
    expect(refreshAtOf({ fetchedAt: 0, expiresAt: 3_600_000 })).toBe(3_540_000);
  });
  it('one fetch for concurrent callers; a refused token is fetched anew, a newer one kept', async () => {
    let now = 0;
    const cache = new TokenCache(() => now);
    let n = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const fetch = async () => {
      await gate;
      return { token: `t${++n}`, fetchedAt: now, expiresAt: now + 100_000 };
    };
    const all = Promise.all([cache.get('k', fetch), cache.get('k', fetch), cache.get('k', fetch)]);
    release();
    expect(await all).toEqual(['t1', 't1', 't1']);
    expect(cache.fetches).toBe(1);
    cache.invalidate('k', 'stale-token'); // not the current one: kept
    expect(await cache.get('k', fetch)).toBe('t1');
    cache.invalidate('k', 't1');
    expect(await cache.get('k', fetch)).toBe('t2');
    now = 95_000; // inside the 10 s margin
    expect(await cache.get('k', fetch)).toBe('t3');
    expect(cache.fetches).toBe(3);
  });
});
