import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { MASK, maskHeaders, maskPath, maskQuery } from '../../lambdas/telemetry/masking.ts';

const SECRET = 'sUp3rS3cretV4lue0123456789abcdef';

describe('maskHeaders', () => {
  it('keeps the auth scheme and masks the credential', () => {
    const out = maskHeaders({
      Authorization: `Bearer ${SECRET}`,
      'Proxy-Authorization': `Basic ${Buffer.from(`u:${SECRET}`).toString('base64')}`,
    });
    expect(out).toEqual({ authorization: `Bearer ${MASK}`, 'proxy-authorization': `Basic ${MASK}` });
  });

  it('masks a raw key in Authorization and the whole of a SigV4 value', () => {
    expect(maskHeaders({ authorization: SECRET }).authorization).toBe(MASK);
    const sigv4 = `AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20261128/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=${SECRET}`;
    const out = maskHeaders({
      authorization: sigv4,
      'x-amz-security-token': SECRET,
      'x-amz-date': '20261128T000000Z',
    });
    expect(out.authorization).toBe(`AWS4-HMAC-SHA256 ${MASK}`);
    expect(out['x-amz-security-token']).toBe(MASK);
    expect(out['x-amz-date']).toBe('20261128T000000Z');
    expect(JSON.stringify(out)).not.toContain('AKIA');
  });

  it('keeps cookie names and masks their values', () => {
    const out = maskHeaders({ Cookie: `session=${SECRET}; theme=dark; csrf=${SECRET}` });
    expect(out.cookie).toBe(`session=${MASK}; theme=${MASK}; csrf=${MASK}`);
  });

  it('masks api-key-like, token-like and configured header names, keeps the rest', () => {
    const headers: Record<string, string> = {
      'X-Api-Key': SECRET,
      'x-goog-api-key': SECRET,
      'Ocp-Apim-Subscription-Key': SECRET,
      'X-Auth-Token': SECRET,
      'X-Access-Token': SECRET,
      'X-Client-Secret': SECRET,
      'X-Shopify-Access-Token': SECRET,
      'X-Vendor-Magic': SECRET,
      'content-type': 'application/json',
      accept: '*/*',
      'user-agent': 'curl/8',
    };
    const out = maskHeaders(headers, ['x-vendor-magic']);
    for (const name of Object.keys(headers).slice(0, 8)) expect(out[name.toLowerCase()]).toBe(MASK);
    expect(out['content-type']).toBe('application/json');
    expect(out.accept).toBe('*/*');
    expect(out['user-agent']).toBe('curl/8');
  });

  it('masks values that look like keys or JWTs under any name', () => {
    const jwt = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl';
    const out = maskHeaders({
      'x-forwarded-thing': jwt,
      'x-other': 'sk_live_abcdef0123456789',
      'x-note': `Bearer ${SECRET}`,
    });
    expect(out).toEqual({ 'x-forwarded-thing': MASK, 'x-other': MASK, 'x-note': `Bearer ${MASK}` });
  });

  it('never lets a secret through, nor its length (property)', () => {
    const name = fc.constantFrom(
      'authorization',
      'proxy-authorization',
      'x-api-key',
      'api-key',
      'x-amz-security-token',
      'x-auth-token',
      'private-token',
      'x-secret',
      'x-custom-cred',
    );
    fc.assert(
      fc.property(name, fc.stringMatching(/^[A-Za-z0-9_\-.~+/]{12,80}$/), (n, secret) => {
        const value = n.endsWith('authorization') ? `Bearer ${secret}` : secret;
        const out = maskHeaders({ [n]: value, cookie: `a=${secret}` }, ['x-custom-cred']);
        const text = JSON.stringify(out);
        expect(text).not.toContain(secret);
        // The mask does not depend on the secret: no length leaks.
        const other = maskHeaders(
          { [n]: value.replace(secret, `${secret}xxxxxxxx`), cookie: `a=${secret}x` },
          ['x-custom-cred'],
        );
        expect(JSON.stringify(other)).toBe(text);
      }),
      { numRuns: 300 },
    );
  });
});

describe('maskQuery', () => {
  it('masks secret-looking parameters and configured names, keeps the rest byte for byte', () => {
    const raw = `page=2&api_key=${SECRET}&access_token=${SECRET}&X-Amz-Signature=${SECRET}&X-Amz-Credential=AKIA%2Fx&sig=${SECRET}&vendorKey=${SECRET}&q=a%20b&client_secret=${SECRET}&password=${SECRET}&key=${SECRET}&magic=${SECRET}`;
    const out = maskQuery(raw, ['magic']);
    expect(out).toBe(
      `page=2&api_key=${MASK}&access_token=${MASK}&X-Amz-Signature=${MASK}&X-Amz-Credential=${MASK}&sig=${MASK}&vendorKey=${MASK}&q=a%20b&client_secret=${MASK}&password=${MASK}&key=${MASK}&magic=${MASK}`,
    );
    expect(out).not.toContain(SECRET);
  });

  it('masks values that look like keys under innocent names', () => {
    expect(maskQuery('x=sk_live_0123456789abcdef&y=1')).toBe(`x=${MASK}&y=1`);
    expect(maskQuery('id=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln')).toBe(`id=${MASK}`);
    expect(maskQuery('')).toBe('');
  });

  it('is idempotent (the aggregator masks again)', () => {
    const once = maskQuery(`token=${SECRET}&a=1`);
    expect(maskQuery(once)).toBe(once);
    const h = maskHeaders({ authorization: `Bearer ${SECRET}`, cookie: `a=${SECRET}` });
    expect(maskHeaders(h)).toEqual(h);
  });
});

describe('maskPath', () => {
  it('masks segments that are keys or JWTs and keeps the rest', () => {
    expect(maskPath('/v1/keys/sk_live_0123456789abcdef/usage')).toBe(`/v1/keys/${MASK}/usage`);
    expect(maskPath('/v2/inventory/items/42')).toBe('/v2/inventory/items/42');
  });
});
