import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { coreRoutes } from '../../lambdas/control-plane/api.ts';
import { startTestGateway, type TestGateway } from '../helpers/local.ts';

/**
 * Every Core API route against arbitrary input — real ids and garbage ids, JSON of any shape,
 * bodies with the route's own field names holding values of any type, malformed text, odd query
 * strings — answers a 2xx or a 4xx with a JSON `{ message, code }`: never a 5xx, never a stack
 * trace, never a secret.
 */
describe('Core API under arbitrary input', () => {
  let gw: TestGateway;
  const vendorSecret = `sk_live_${randomBytes(16).toString('hex')}`;
  const ids: Record<string, string> = {};
  const answers: string[] = [];
  const statuses = new Map<number, number>();

  beforeAll(async () => {
    gw = await startTestGateway({ regions: ['us-east-1', 'eu-west-1'] });
    const c = (await gw.api('POST', '/clients', { body: { clientName: 'fuzz' } })).body.clientId;
    const post = async (path: string, body: unknown) => {
      const res = await gw.api('POST', `/clients/${c}${path}`, { body });
      expect(res.status).toBe(201);
      return res.body;
    };
    const base = { credentialName: 'n', credentialRegion: 'us-east-1' };
    const pc = await post('/credentials', { ...base, credentialType: 'proxy', credentialAuthType: 'apiKey' });
    const tc = await post('/credentials', {
      ...base,
      credentialType: 'target',
      credentialAuthType: 'bearer',
      credentialSecret: { token: vendorSecret },
    });
    const t = await post('/targets', {
      targetName: 't',
      targetBaseURL: 'https://api.example.com',
      targetRegion: 'us-east-1',
    });
    const p = await post('/proxies', {
      proxyName: 'p',
      proxyRegion: 'us-east-1',
      proxyProxyCredentialId: pc.credentialId,
      proxyTargetId: t.targetId,
      proxyTargetCredentialId: tc.credentialId,
    });
    const rule = await post(`/targets/${t.targetId}/rules`, { effect: 'allow', priority: 1 });
    const token = (await gw.api('POST', '/users/tokens', { body: {} })).body;
    Object.assign(ids, {
      clientId: c,
      credentialId: tc.credentialId,
      targetId: t.targetId,
      proxyId: p.proxyId,
      ruleId: rule.ruleId,
      tokenId: token.tokenId,
      requestId: '01JDZ0000000000000000000000',
    });
  });
  afterAll(() => gw.close());

  const garbageId = fc.oneof(
    fc.string({ maxLength: 40 }),
    fc.constantFrom('..', '%2e%2e', '%00', 'null', '0', '-1', 'a'.repeat(600), '\u202e', '/'),
  );

  const bodyFor = (fields: string[]) =>
    fc.oneof(
      fc.jsonValue().map((v) => JSON.stringify(v)),
      fields.length
        ? fc
            .dictionary(fc.constantFrom(...fields), fc.jsonValue(), { maxKeys: fields.length })
            .map((v) => JSON.stringify(v))
        : fc.constant('{}'),
      fc.string({ maxLength: 200 }),
      fc.constantFrom('{', '{"a":', '[]', 'null', '"x"', '1e999', '{"__proto__":{"admin":true}}', '\u0000'),
    );

  it('never answers a 5xx, a stack trace or a secret, on any route', async () => {
    const cases = coreRoutes
      .filter((r) => !r.public)
      .map((r) => {
        const params = [...r.path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!);
        const fields = Object.keys((r.body as { shape?: Record<string, unknown> } | undefined)?.shape ?? {});
        const queryFields = Object.keys(
          (r.query as { shape?: Record<string, unknown> } | undefined)?.shape ?? {},
        );
        return fc.record({
          route: fc.constant(r),
          // Deletes only ever get garbage ids, so the fixtures survive for the other routes.
          values: fc.tuple(
            ...params.map((name) =>
              r.method === 'DELETE'
                ? garbageId
                : fc.oneof(
                    { weight: 3, arbitrary: fc.constant(ids[name]!) },
                    { weight: 1, arbitrary: garbageId },
                  ),
            ),
          ),
          body: bodyFor(fields),
          query: fc.dictionary(
            fc.oneof(fc.constantFrom(...queryFields, 'limit', 'x'), fc.string({ maxLength: 8 })),
            fc.oneof(
              fc.string({ maxLength: 30 }),
              fc.constantFrom('0', '-1', '99999999', '2026-13-45T00:00:00Z'),
            ),
            { maxKeys: 3 },
          ),
          contentType: fc.constantFrom('application/json', 'text/plain', undefined),
        });
      });
    await fc.assert(
      fc.asyncProperty(fc.oneof(...cases), async ({ route, values, body, query, contentType }) => {
        let i = 0;
        const path = route.path.replace(/\{\w+\}/g, () => encodeURIComponent(values[i++] ?? ''));
        const qs = new URLSearchParams(query).toString();
        const res = await gw.api(route.method, `${path}${qs ? `?${qs}` : ''}`, {
          rawBody: route.method === 'GET' || route.method === 'DELETE' ? undefined : body,
          headers: contentType ? { 'content-type': contentType } : {},
        });
        answers.push(res.text);
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        const what = `${route.method} ${path}?${qs} ${body.slice(0, 80)} → ${res.status} ${res.text.slice(0, 200)}`;
        expect({ what, server: res.status >= 500 }).toEqual({ what, server: false });
        if (res.status >= 400 && res.status !== 405) {
          expect(typeof res.body?.message).toBe('string');
          expect(typeof res.body?.code).toBe('string');
        }
        expect(res.text).not.toMatch(/\n\s+at |\.ts:\d+|node_modules/);
      }),
      { numRuns: 1500 },
    );
    expect(answers.some((a) => a.includes(vendorSecret))).toBe(false);
    // Not only refusals: real ids reach the handlers and some calls succeed.
    const ok = [...statuses].filter(([s]) => s < 300).reduce((n, [, c]) => n + c, 0);
    expect(ok).toBeGreaterThan(50);
    // 1,500 calls: the bound is a safety net for a loaded machine, not a speed requirement.
  }, 600_000);
});
