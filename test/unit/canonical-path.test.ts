import { describe, expect, it } from '@jest/globals';
import { canonicalizePath, canonicalRequest, parseQuery } from '../../lambdas/data-plane/canonical-path.ts';

const ok = (raw: string) => {
  const r = canonicalizePath(raw);
  if (!r.ok) throw new Error(`${raw} refused: ${r.reason}`);
  return r.value;
};
const refused = (raw: string) => !canonicalizePath(raw).ok;

describe('canonicalizePath', () => {
  it('keeps ordinary paths as they are', () => {
    expect(ok('')).toBe('/');
    expect(ok('/')).toBe('/');
    expect(ok('/v2/inventory/items')).toBe('/v2/inventory/items');
    expect(ok('/v2/inventory/')).toBe('/v2/inventory/');
    expect(ok("/a:b@c/!$&'()*+,=")).toBe("/a:b@c/!$&'()*+,=");
  });

  it('decodes unreserved escapes and upper-cases the rest', () => {
    expect(ok('/v2/%69nventory/%7Eitem')).toBe('/v2/inventory/~item');
    expect(ok('/caf%c3%a9')).toBe('/caf%C3%A9');
    expect(ok('/a%20b')).toBe('/a%20b');
  });

  it('resolves dot segments, including encoded ones', () => {
    expect(ok('/v2/inventory/../orders')).toBe('/v2/orders');
    expect(ok('/v2/inventory/%2e%2e/orders')).toBe('/v2/orders');
    expect(ok('/v2/inventory/%2E./orders')).toBe('/v2/orders');
    expect(ok('/v2/./inventory/.')).toBe('/v2/inventory/');
    expect(ok('/v2/inventory/x/..')).toBe('/v2/inventory/');
  });

  it.each([
    ['/..', 'climbs above root'],
    ['/a/../../b', 'climbs above root'],
    ['/%2e%2e/etc', 'encoded climb'],
    ['/v2/inventory%2F..%2Forders', 'encoded slash'],
    ['/v2/inventory%2f..', 'encoded slash lower'],
    ['/v2/inventory%5C..%5Corders', 'encoded backslash'],
    ['/v2\\inventory', 'raw backslash'],
    ['/v2/inventory%3F', 'encoded ?'],
    ['/v2/inventory%23frag', 'encoded #'],
    ['/v2/inventory;x=1', '; parameter'],
    ['/v2/inventory%3Bx=1', 'encoded ;'],
    ['/v2/%2569nventory', 'double encoding'],
    ['/v2/%252e%252e/x', 'double-encoded dots'],
    ['/v2/inv%00entory', 'NUL'],
    ['/v2/inv%0d%0aHost:%20evil', 'CRLF'],
    ['/v2/inv\r\nX: y', 'raw CRLF'],
    ['/v2//inventory', 'empty segment'],
    ['//evil.example/x', 'scheme-relative'],
    ['/v2/%c3%28', 'invalid UTF-8'],
    ['/v2/%ff', 'invalid UTF-8 byte'],
    ['/v2/%c2%85', 'C1 control'],
    ['/v2/%zz', 'malformed escape'],
    ['/v2/%4', 'truncated escape'],
    ['/v2/a b', 'raw space'],
    ['/v2/é', 'raw non-ASCII'],
    ['/v2/<script>', 'raw angle brackets'],
    ['v2/inventory', 'no leading slash'],
    ['/v2/x%EF%BC%8F..%EF%BC%8Fadmin', 'fullwidth solidus (NFKC "/")'],
    ['/v2/%EF%BC%8E%EF%BC%8E/admin', 'fullwidth full stops (NFKC "..")'],
    ['/v2/%E2%80%A4%E2%80%A4/admin', 'one-dot leaders (NFKC ".")'],
  ])('refuses %s (%s)', (raw) => {
    expect(refused(raw)).toBe(true);
  });
});

describe('parseQuery', () => {
  it('decodes ordered pairs and keeps repeats', () => {
    const r = parseQuery('a=1&b=x%20y&a=2&flag&c=d+e');
    expect(r).toEqual({
      ok: true,
      value: [
        ['a', '1'],
        ['b', 'x y'],
        ['a', '2'],
        ['flag', ''],
        ['c', 'd e'],
      ],
    });
  });

  it.each(['a=%zz', 'a=%0d%0a', 'a=b c', 'a=%ff', 'a=1#x', 'a="x"'])('refuses %s', (raw) => {
    expect(parseQuery(raw).ok).toBe(false);
  });
});

describe('canonicalRequest', () => {
  it('builds what the rules see', () => {
    const r = canonicalRequest({
      method: 'POST',
      rawPath: '/v2/%69tems/../orders',
      rawQuery: 'a=1',
      headers: { 'Content-Type': 'application/json', 'X-Tenant': 'acme' },
      body: '{"sku":"SKU-1"}',
    });
    expect(r).toEqual({
      ok: true,
      value: {
        method: 'POST',
        path: '/v2/orders',
        query: [['a', '1']],
        headers: { 'content-type': 'application/json', 'x-tenant': 'acme' },
        // Kept as bytes: read (strictly) only when a rule has a body check.
        rawBody: Buffer.from('{"sku":"SKU-1"}'),
      },
    });
  });

  it.each(['get', 'TRACE', 'CONNECT', 'PROPFIND', 'GET '])('refuses method %s', (method) => {
    expect(canonicalRequest({ method, rawPath: '/', rawQuery: '', headers: {} }).ok).toBe(false);
  });
});
