import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { canonicalRequest } from '../../lambdas/data-plane/canonical-path.ts';
import { evaluateRules } from '../../lambdas/rules/evaluator.ts';
import { readSnapshot } from '../../lambdas/storage/snapshot.ts';
import { startTestGateway, type TestGateway } from '../helpers/local.ts';

/**
 * simulate against a table of cases: rules in all four scopes, the defaults, and requests the data
 * plane would refuse as ambiguous. Each answer is also recomputed from the stored snapshot with the
 * data plane's own functions, so simulate cannot drift from what the proxy decides.
 */
describe('POST /clients/{clientId}/proxies/{proxyId}/simulate', () => {
  let gw: TestGateway;
  let c: string;
  let proxyId: string;
  const rule: Record<string, string> = {};

  beforeAll(async () => {
    gw = await startTestGateway();
    c = gw.admin.clientId;
    const post = async (path: string, body: unknown) => {
      const res = await gw.api('POST', `/clients/${c}${path}`, { body });
      expect(res.status).toBe(201);
      return res.body;
    };
    const base = { credentialName: 'n', credentialRegion: 'us-east-1' };
    const pc = await post('/credentials', { ...base, credentialType: 'proxy', credentialAuthType: 'key' });
    const tc = await post('/credentials', {
      ...base,
      credentialType: 'target',
      credentialAuthType: 'bearer',
      credentialSecret: { token: randomBytes(16).toString('hex') },
    });
    const t = await post('/targets', {
      targetName: 'vendor',
      targetBaseURL: 'https://api.vendor.example',
      targetRegion: 'us-east-1',
    });
    const p = await post('/proxies', {
      proxyName: 'vendor',
      proxyRegion: 'us-east-1',
      proxyProxyCredentialId: pc.credentialId,
      proxyTargetId: t.targetId,
      proxyTargetCredentialId: tc.credentialId,
      proxyDefaultRuleEffect: 'deny',
    });
    proxyId = p.proxyId;
    rule.inventory = (
      await post(`/credentials/${pc.credentialId}/rules`, {
        effect: 'allow',
        methods: ['GET'],
        path: { path: { pattern: '^/v2/inventory/.*' }, presence: 'must_exist' },
        priority: 10,
      })
    ).ruleId;
    rule.secret = (
      await post(`/credentials/${tc.credentialId}/rules`, {
        effect: 'deny',
        path: { path: { pattern: '^/v2/inventory/secret' } },
        priority: 900,
      })
    ).ruleId;
    rule.orders = (
      await post(`/proxies/${proxyId}/rules`, {
        effect: 'allow',
        methods: ['POST'],
        path: { path: { pattern: '^/v2/orders$' } },
        body: [{ jsonPath: '$.amount', matchValue: { pattern: '^[0-9]{1,3}$' }, presence: 'present' }],
        priority: 20,
      })
    ).ruleId;
    rule.debug = (
      await post(`/targets/${t.targetId}/rules`, {
        effect: 'deny',
        headerChecks: [{ name: { pattern: '^x-debug$' } }],
        priority: 50,
      })
    ).ruleId;
    rule.refunds = (
      await post(`/targets/${t.targetId}/rules`, {
        effect: 'allow',
        methods: ['GET'],
        path: { path: { pattern: '^/v2/refunds$' } },
        queryChecks: [
          { name: { pattern: '^dry_run$' }, value: { pattern: '^true$' }, presence: 'must_exist' },
        ],
        priority: 30,
      })
    ).ruleId;
  });
  afterAll(() => gw.close());

  type Case = [
    string,
    Record<string, unknown>,
    { decision: string; rule?: string; reason?: string; status?: number; path?: string },
  ];
  const cases: Case[] = [
    [
      'reference allow',
      { method: 'GET', path: '/v2/inventory/items' },
      { decision: 'allow', rule: 'inventory', path: '/v2/inventory/items' },
    ],
    [
      'deny outranks a lower-priority allow',
      { method: 'GET', path: '/v2/inventory/secret/keys' },
      { decision: 'deny', rule: 'secret' },
    ],
    [
      'method not allowed → default',
      { method: 'POST', path: '/v2/inventory/items' },
      { decision: 'deny', reason: 'default', status: 403 },
    ],
    [
      'body check holds',
      { method: 'POST', path: '/v2/orders', body: { amount: 50 } },
      { decision: 'allow', rule: 'orders' },
    ],
    [
      'body check fails',
      { method: 'POST', path: '/v2/orders', body: { amount: 5000 } },
      { decision: 'deny', reason: 'default' },
    ],
    [
      'JSON read whatever Content-Type says',
      { method: 'POST', path: '/v2/orders', headers: { 'content-type': 'text/plain' }, body: '{"amount":5}' },
      { decision: 'allow', rule: 'orders' },
    ],
    [
      'JSON read whatever Content-Type says, over the limit',
      {
        method: 'POST',
        path: '/v2/orders',
        headers: { 'content-type': 'text/plain' },
        body: '{"amount":5000}',
      },
      { decision: 'deny', reason: 'default' },
    ],
    [
      'header deny, any case',
      { method: 'GET', path: '/v2/inventory/items', headers: { 'X-Debug': '1' } },
      { decision: 'deny', rule: 'debug' },
    ],
    [
      'query in the path',
      { method: 'GET', path: '/v2/refunds?dry_run=true' },
      { decision: 'allow', rule: 'refunds' },
    ],
    [
      'query as an object',
      { method: 'GET', path: '/v2/refunds', query: { dry_run: 'true' } },
      { decision: 'allow', rule: 'refunds' },
    ],
    [
      'query as a string',
      { method: 'GET', path: '/v2/refunds', query: '?dry_run=true' },
      { decision: 'allow', rule: 'refunds' },
    ],
    [
      'query value fails',
      { method: 'GET', path: '/v2/refunds?dry_run=false' },
      { decision: 'deny', reason: 'default' },
    ],
    [
      'dot segments resolved first',
      { method: 'GET', path: '/v2/inventory/./items/../list' },
      { decision: 'allow', rule: 'inventory', path: '/v2/inventory/list' },
    ],
    [
      'encoded dots resolved too',
      { method: 'GET', path: '/v2/inventory/%2e%2e/secret/x' },
      { decision: 'deny', reason: 'default', path: '/v2/secret/x' },
    ],
    [
      'unreserved escapes decoded',
      { method: 'GET', path: '/v2/%69nventory/items' },
      { decision: 'allow', rule: 'inventory', path: '/v2/inventory/items' },
    ],
    [
      'encoded slash refused',
      { method: 'GET', path: '/v2/inventory/a%2Fb' },
      { decision: 'deny', reason: 'invalid_request', status: 400 },
    ],
    [
      'double encoding refused',
      { method: 'GET', path: '/v2/inventory/%252e' },
      { decision: 'deny', reason: 'invalid_request', status: 400 },
    ],
    [
      'empty segment refused',
      { method: 'GET', path: '/v2//inventory/items' },
      { decision: 'deny', reason: 'invalid_request', status: 400 },
    ],
    [
      'parameters refused',
      { method: 'GET', path: '/v2/inventory/items;x=1' },
      { decision: 'deny', reason: 'invalid_request', status: 400 },
    ],
    [
      'climbing above the root refused',
      { method: 'GET', path: '/v2/../../etc/passwd' },
      { decision: 'deny', reason: 'invalid_request', status: 400 },
    ],
    [
      'backslash refused',
      { method: 'GET', path: '/v2\\inventory' },
      { decision: 'deny', reason: 'invalid_request', status: 400 },
    ],
    [
      'lower-case method refused',
      { method: 'get', path: '/v2/inventory/items' },
      { decision: 'deny', reason: 'invalid_request', status: 400 },
    ],
    [
      'TRACE never forwarded',
      { method: 'TRACE', path: '/v2/inventory/items' },
      { decision: 'deny', reason: 'invalid_request', status: 400 },
    ],
  ];

  it.each(cases)('%s', async (_name, input, expected) => {
    const res = await gw.api('POST', `/clients/${c}/proxies/${proxyId}/simulate`, { body: input });
    expect(res.status).toBe(200);
    const answer = res.body;
    expect(answer.decision).toBe(expected.decision);
    if (expected.rule)
      expect(answer).toMatchObject({ reason: 'rule', rule: { ruleId: rule[expected.rule] } });
    if (expected.reason) expect(answer.reason).toBe(expected.reason);
    if (expected.status) expect(answer.status).toBe(expected.status);
    if (expected.path) expect(answer.canonical.path).toBe(expected.path);

    // By construction: the data plane's functions on the very snapshot it reads.
    const snap = (await readSnapshot(gw.stack.deps.cells['us-east-1']!, proxyId))!;
    const path = String(input.path);
    const q = path.indexOf('?');
    const headers: Record<string, string> = { ...((input.headers as Record<string, string>) ?? {}) };
    let body: string | undefined;
    if (typeof input.body === 'string') body = input.body;
    else if (input.body !== undefined) {
      body = JSON.stringify(input.body);
      headers['content-type'] ??= 'application/json';
    }
    const rawQuery =
      q >= 0
        ? path.slice(q + 1)
        : typeof input.query === 'string'
          ? input.query.replace(/^\?/, '')
          : new URLSearchParams((input.query as Record<string, string>) ?? {}).toString();
    const canonical = canonicalRequest({
      method: String(input.method),
      rawPath: q >= 0 ? path.slice(0, q) : path,
      rawQuery,
      headers,
      body,
    });
    if (!canonical.ok) {
      expect(answer.message).toBe(canonical.reason);
      return;
    }
    const decision = evaluateRules(canonical.value, snap.rules, {
      proxyDefault: snap.proxyDefaultRuleEffect,
      targetDefault: snap.target.targetDefaultRuleEffect,
    });
    expect(answer.decision).toBe(decision.effect);
    expect(answer.reason).toBe(decision.reason);
    if (decision.reason === 'rule') expect(answer.rule.ruleId).toBe(decision.ruleId);
  });

  it('follows the defaults: allowed only when both the proxy and the target default to allow', async () => {
    const sim = () =>
      gw.api('POST', `/clients/${c}/proxies/${proxyId}/simulate`, {
        body: { method: 'GET', path: '/other' },
      });
    expect((await sim()).body).toMatchObject({
      decision: 'deny',
      reason: 'default',
      defaults: { proxyDefault: 'deny', targetDefault: 'deny' },
    });
    await gw.api('PUT', `/clients/${c}/proxies/${proxyId}`, { body: { proxyDefaultRuleEffect: 'allow' } });
    expect((await sim()).body.decision).toBe('deny');
    const snap = (await readSnapshot(gw.stack.deps.cells['us-east-1']!, proxyId))!;
    await gw.api('PUT', `/clients/${c}/targets/${snap.target.targetId}`, {
      body: { targetDefaultRuleEffect: 'allow' },
    });
    expect((await sim()).body).toMatchObject({ decision: 'allow', reason: 'default' });
  });

  it('validates its own input and answers 404 for an unknown proxy', async () => {
    expect(
      (await gw.api('POST', `/clients/${c}/proxies/${proxyId}/simulate`, { body: { path: '/' } })).body
        .message,
    ).toContain('body.method');
    expect(
      (await gw.api('POST', `/clients/${c}/proxies/nope/simulate`, { body: { method: 'GET', path: '/' } }))
        .status,
    ).toBe(404);
  });
});
