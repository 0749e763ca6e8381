import { describe, expect, it } from '@jest/globals';
import { AuthFailureBudget, sourceKey } from '../../lambdas/data-plane/auth-failure-budget.ts';
import { headerKey, hostRefusal, isDroppedConsumerHeader } from '../../lambdas/data-plane/header-hygiene.ts';
import { MASK, maskHeaders, maskQuery, maskUrl, maskUrlsDeep } from '../../lambdas/telemetry/masking.ts';

describe('masking of short secret names and URLs', () => {
  it('masks short secret-bearing header names, not their look-alikes', () => {
    const masked = maskHeaders({
      'x-pw': 'a',
      'x-sess': 'b',
      'x-otp': 'c',
      'x-sig': 'd',
      'x-k': 'e',
      'x-signal': 'keep',
      'x-kind': 'keep',
    });
    expect(masked).toEqual({
      'x-pw': MASK,
      'x-sess': MASK,
      'x-otp': MASK,
      'x-sig': MASK,
      'x-k': MASK,
      'x-signal': 'keep',
      'x-kind': 'keep',
    });
  });

  it('masks pw=, sid=, k= and camelCase short names in a query', () => {
    expect(maskQuery('pw=1&sid=2&k=3&sessId=4&kind=5&page=6')).toBe(
      `pw=${MASK}&sid=${MASK}&k=${MASK}&sessId=${MASK}&kind=5&page=6`,
    );
  });

  it('masks credentials inside URLs: userinfo, secret params, in headers, queries and answers', () => {
    expect(maskUrl('https://u:p@h.example/jwks?token=abc&kid=1#f')).toBe(
      `https://${MASK}@h.example/jwks?token=${MASK}&kid=1#f`,
    );
    expect(maskUrl('not a url ?token=abc')).toBe('not a url ?token=abc');
    expect(maskHeaders({ referer: 'https://h.example/cb?code=xyz&state=s' }).referer).toBe(
      `https://h.example/cb?code=${MASK}&state=s`,
    );
    const q = maskQuery(`next=${encodeURIComponent('https://a:b@h.example/?api_key=k1')}&x=1`);
    expect(decodeURIComponent(q)).not.toContain('k1');
    expect(decodeURIComponent(q)).not.toContain('a:b');
    expect(maskUrlsDeep({ a: [{ jwksUrl: 'https://h/?sig=s1' }], n: 1 })).toEqual({
      a: [{ jwksUrl: `https://h/?sig=${MASK}` }],
      n: 1,
    });
  });
});

describe('header names as servers fold them', () => {
  it('folds case and underscores, and drops every family in any spelling', () => {
    expect(headerKey('X_Api_Key')).toBe('x-api-key');
    for (const name of [
      'X_Forwarded_Host',
      'TRUE_CLIENT_IP',
      'x-envoy-original-path',
      'X_Middleware_Subrequest',
      'Via',
    ])
      expect(isDroppedConsumerHeader(name)).toBe(true);
    expect(isDroppedConsumerHeader('x-request-id')).toBe(false);
  });

  it('refuses duplicate or disagreeing Host shapes only', () => {
    expect(hostRefusal('/api/p/x', 'a.example,b.example')).toMatch(/more than one Host/);
    expect(hostRefusal('/api/p/x', ' ')).toMatch(/Host/);
    expect(hostRefusal('http://b.example/api/p/x', 'a.example')).toMatch(/another host/);
    expect(hostRefusal('http://A.example/api/p/x', 'a.example')).toBeUndefined();
    expect(hostRefusal('/api/p/x', 'a.example')).toBeUndefined();
  });
});

describe('failed-auth budget', () => {
  it('keeps fixed memory however many sources flood it', () => {
    const budget = new AuthFailureBudget({ perSource: 3, perProxy: 1_000_000, maxTracked: 100 });
    for (let i = 0; i < 10_000; i++) budget.recordFailure(`10.0.${i >> 8}.${i & 255}`, `p${i}`, 0);
    // Evicted counters forget, tracked ones remember: the newest source is still counted.
    budget.recordFailure('10.0.39.15', 'p', 0);
    budget.recordFailure('10.0.39.15', 'p', 0);
    expect(budget.check('10.0.39.15', 'p', 'd', 1).ok).toBe(false);
    expect((budget as unknown as { sources: { size: number } }).sources.size).toBeLessThanOrEqual(100);
  });

  it('opens again when the window ends, and flags each exhaustion once per window', () => {
    const budget = new AuthFailureBudget({ perSource: 2, perProxy: 100, windowSeconds: 60 });
    expect(budget.recordFailure('1.2.3.4', 'p', 0)).toEqual([]);
    expect(budget.recordFailure('1.2.3.4', 'p', 1)).toEqual(['source']);
    expect(budget.recordFailure('1.2.3.4', 'p', 2)).toEqual([]);
    expect(budget.check('1.2.3.4', 'p', 'd', 30_000)).toEqual({
      ok: false,
      scope: 'source',
      retryAfterSeconds: 30,
    });
    expect(budget.check('1.2.3.4', 'p', 'd', 60_000).ok).toBe(true);
  });

  it('does not count loopback sources per source unless asked (every local consumer is 127.0.0.1)', () => {
    const budget = new AuthFailureBudget({ perSource: 1, perProxy: 100 });
    budget.recordFailure('127.0.0.1', 'p', 0);
    budget.recordFailure('::1', 'q', 0);
    expect(budget.check('127.0.0.1', 'p2', 'd', 1).ok).toBe(true);
    const counting = new AuthFailureBudget({ perSource: 1, perProxy: 100, countLoopback: true });
    counting.recordFailure('127.0.0.1', 'p', 0);
    expect(counting.check('127.0.0.1', 'p2', 'd', 1).ok).toBe(false);
  });

  it('groups an IPv6 /64, and never throttles a digest that succeeded on the proxy', () => {
    expect(sourceKey('2001:db8:1:2:aaaa::1')).toBe(sourceKey('2001:db8:1:2:ffff::9'));
    expect(sourceKey('::ffff:10.1.2.3')).toBe('10.1.2.3');
    const budget = new AuthFailureBudget({ perSource: 1, perProxy: 1 });
    budget.recordSuccess('p', 'good');
    budget.recordFailure('1.1.1.1', 'p', 0);
    expect(budget.check('1.1.1.1', 'p', 'bad', 1).ok).toBe(false);
    expect(budget.check('1.1.1.1', 'p', 'good', 1).ok).toBe(true);
  });
});
