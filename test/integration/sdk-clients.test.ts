import { lookup as dnsLookup } from 'node:dns';
import { Agent } from 'node:http';
import Anthropic from '@anthropic-ai/sdk';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { Octokit } from '@octokit/rest';
import OpenAI from 'openai';
import Stripe from 'stripe';
import type { ProxyOutcome } from '../../lambdas/data-plane/outcome.ts';
import { startTestGateway, type TestGateway } from '../helpers/local.ts';
import { type RecordingUpstream, startRecordingUpstream } from '../helpers/proxy-fixtures.ts';

/**
 * The vendor SDKs people already use, pointed at keygate exactly as docs/sdks.md shows, against a
 * local fake vendor that records what it receives. No proxy key may ever reach the vendor.
 */
const REGION = 'us-east-1';
const VENDOR_TOKEN = 'vendor-secret-token-0123456789';

let gw: TestGateway;
let vendor: RecordingUpstream;
const outcomes: ProxyOutcome[] = [];
const proxyKeys: string[] = [];

beforeAll(async () => {
  vendor = await startRecordingUpstream();
  gw = await startTestGateway({
    targetAllowlist: [`127.0.0.1:${vendor.port}`],
    proxyOptions: { onOutcome: (o) => outcomes.push(o) },
    // KEYGATE_ALIAS_PORTS=stripe-port:<free port>: the form that needs no name resolution.
    aliasPorts: [{ alias: 'stripe-port', port: 0 }],
  });
});

afterAll(async () => {
  // The invariant of the whole file: the vendor never saw a proxy key, anywhere.
  for (const rec of vendor.received)
    for (const key of proxyKeys) {
      expect(rec.url).not.toContain(key);
      expect(rec.rawHeaders.join('\n')).not.toContain(key);
      expect(rec.rawHeaders.join('\n')).not.toContain(Buffer.from(`${key}:`).toString('base64'));
    }
  localhostAgent.destroy();
  await gw?.close();
  await vendor?.close();
});

beforeEach(() => {
  vendor.received.length = 0;
  outcomes.length = 0;
});

interface ProxySetup {
  alias: string;
  basePath?: string;
  target?: Record<string, unknown>;
  keyLocations?: string[];
  limits?: { proxyMaxRequestsPerMinute?: number };
}

/** A proxy built through the Core API, as a user would: proxy key, target, vendor secret, proxy. */
async function proxy(setup: ProxySetup): Promise<{ proxyId: string; key: string; clientId: string }> {
  const clientId = gw.admin.clientId;
  const base = `/clients/${clientId}`;
  const pc = await gw.api('POST', `${base}/credentials`, {
    body: {
      credentialType: 'proxy',
      credentialAuthType: 'apiKey',
      credentialName: `${setup.alias}-key`,
      credentialRegion: REGION,
      ...(setup.keyLocations ? { credentialKeyLocations: setup.keyLocations } : {}),
    },
  });
  expect(pc.status).toBe(201);
  const target = await gw.api('POST', `${base}/targets`, {
    body: {
      targetName: setup.alias,
      targetBaseURL: `${vendor.url}${setup.basePath ?? ''}`,
      targetRegion: REGION,
      targetDefaultRuleEffect: 'allow',
    },
  });
  expect(target.status).toBe(201);
  const tc = await gw.api('POST', `${base}/credentials`, {
    body: {
      credentialType: 'target',
      credentialName: `${setup.alias}-vendor`,
      credentialRegion: REGION,
      ...(setup.target ?? { credentialAuthType: 'bearer', credentialSecret: { token: VENDOR_TOKEN } }),
    },
  });
  expect(tc.status).toBe(201);
  const created = await gw.api('POST', `${base}/proxies`, {
    body: {
      proxyName: setup.alias,
      proxyAlias: setup.alias,
      proxyRegion: REGION,
      proxyProxyCredentialId: pc.body.credentialId,
      proxyTargetId: target.body.targetId,
      proxyTargetCredentialId: tc.body.credentialId,
      proxyDefaultRuleEffect: 'allow',
      ...setup.limits,
    },
  });
  expect(created.status).toBe(201);
  // Every proxy refuses DELETE: the SDKs' permission errors are exercised on it.
  const rule = await gw.api('POST', `${base}/proxies/${created.body.proxyId}/rules`, {
    body: { effect: 'deny', methods: ['DELETE'], priority: 1 },
  });
  expect(rule.status).toBe(201);
  const key = pc.body.credentialSecret.key as string;
  proxyKeys.push(key);
  return { proxyId: created.body.proxyId, key, clientId };
}

function json(res: import('node:http').ServerResponse, status: number, body: unknown, headers = {}) {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

describe('OpenAI SDK (baseURL = the proxy URL, apiKey = the proxy key)', () => {
  let openai: OpenAI;
  let key: string;
  beforeAll(async () => {
    ({ key } = await proxy({ alias: 'openai', basePath: '/v1' }));
    openai = new OpenAI({ apiKey: key, baseURL: `${gw.stack.proxyUrl}/api/openai`, maxRetries: 0 });
  });

  it('succeeds with the vendor secret swapped in', async () => {
    vendor.respond = (_req, res) =>
      json(res, 200, {
        object: 'list',
        data: [{ id: 'gpt-x', object: 'model', created: 1, owned_by: 'me' }],
      });
    const models = await openai.models.list();
    expect(models.data[0]!.id).toBe('gpt-x');
    expect(vendor.received).toHaveLength(1);
    expect(vendor.received[0]!.url).toBe('/v1/models');
    expect(vendor.received[0]!.headers.authorization).toBe(`Bearer ${VENDOR_TOKEN}`);
  });

  it("raises AuthenticationError and PermissionDeniedError with keygate's message", async () => {
    const wrong = new OpenAI({
      apiKey: 'kg_live_wrong',
      baseURL: `${gw.stack.proxyUrl}/api/openai`,
      maxRetries: 0,
    });
    const unauthorized = await wrong.models.list().catch((e: unknown) => e);
    expect(unauthorized).toBeInstanceOf(OpenAI.AuthenticationError);
    expect((unauthorized as Error).message).toContain('Missing or invalid proxy key');
    const denied = await openai.files.delete('file-1').catch((e: unknown) => e);
    expect(denied).toBeInstanceOf(OpenAI.PermissionDeniedError);
    expect((denied as Error).message).toContain('No rule allows this request');
    expect((denied as InstanceType<typeof OpenAI.APIError>).code).toBe('proxy-access-denied');
    expect(vendor.received).toHaveLength(0);
  });

  it("retries on keygate's 429 like on the vendor's, then raises RateLimitError", async () => {
    const limited = await proxy({
      alias: 'openai-limited',
      basePath: '/v1',
      limits: { proxyMaxRequestsPerMinute: 1 },
    });
    vendor.respond = (_req, res) => json(res, 200, { object: 'list', data: [] });
    const client = new OpenAI({
      apiKey: limited.key,
      baseURL: `${gw.stack.proxyUrl}/api/openai-limited`,
      maxRetries: 2,
    });
    // The gateway's clock stands still one second before the minute ends: Retry-After is 1 s
    // (the SDK honours it), and every retry meets the same spent minute.
    const minute = Math.floor(Date.now() / 60_000) * 60_000;
    const realNow = gw.stack.deps.now;
    gw.stack.deps.now = () => new Date(minute + 59_500);
    let error: unknown;
    try {
      await client.models.list();
      error = await client.models.list().catch((e: unknown) => e);
    } finally {
      gw.stack.deps.now = realNow;
    }
    expect(error).toBeInstanceOf(OpenAI.RateLimitError);
    expect((error as Error).message).toContain('request limit');
    // One call that passed, then the refused one and its two retries: all answered by keygate.
    const limitedOutcomes = outcomes.filter((o) => o.proxyId === limited.proxyId);
    expect(limitedOutcomes.map((o) => o.status)).toEqual([200, 429, 429, 429]);
    expect(vendor.received).toHaveLength(1);
  }, 60_000);
});

describe('Anthropic SDK (x-api-key)', () => {
  it('authenticates with x-api-key, swaps in the vendor key, and raises its error classes', async () => {
    // The SDK sends `Authorization: Bearer <apiKey>`; older versions and other tools `x-api-key`.
    const { key } = await proxy({
      alias: 'anthropic',
      keyLocations: ['authorization', 'header:x-api-key'],
      target: {
        credentialAuthType: 'apiKey',
        credentialSecret: { key: VENDOR_TOKEN, headerName: 'x-api-key' },
      },
    });
    const client = new Anthropic({
      apiKey: key,
      baseURL: `${gw.stack.proxyUrl}/api/anthropic`,
      maxRetries: 0,
    });
    vendor.respond = (_req, res) =>
      json(res, 200, {
        id: 'msg_1',
        type: 'message',
        role: 'assistant',
        model: 'claude-x',
        content: [{ type: 'text', text: 'hello' }],
        stop_reason: 'end_turn',
        stop_sequence: null,
        usage: { input_tokens: 1, output_tokens: 1 },
      });
    const message = await client.messages.create({
      model: 'claude-x',
      max_tokens: 10,
      messages: [{ role: 'user', content: 'hi' }],
    });
    expect(message.content[0]).toEqual({ type: 'text', text: 'hello' });
    expect(vendor.received[0]!.headers['x-api-key']).toBe(VENDOR_TOKEN);
    expect(vendor.received[0]!.headers.authorization).toBeUndefined();
    const byHeader = await fetch(`${gw.stack.proxyUrl}/api/anthropic/v1/models`, {
      headers: { 'x-api-key': key },
    });
    expect(byHeader.status).toBe(200);
    expect(vendor.received[1]!.headers['x-api-key']).toBe(VENDOR_TOKEN);
    const denied = await client.beta.files.delete('file_1').catch((e: unknown) => e);
    expect(denied).toBeInstanceOf(Anthropic.PermissionDeniedError);
    expect((denied as Error).message).toContain('No rule allows this request');
    const wrong = new Anthropic({
      apiKey: 'nope',
      baseURL: `${gw.stack.proxyUrl}/api/anthropic`,
      maxRetries: 0,
    });
    const unauthorized = await wrong.models.list().catch((e: unknown) => e);
    expect(unauthorized).toBeInstanceOf(Anthropic.AuthenticationError);
    expect((unauthorized as Error).message).toContain('Missing or invalid proxy key');
  });
});

/** What a resolver that follows RFC 6761 does (systemd-resolved, curl, browsers): *.localhost is loopback. */
const localhostAgent = new Agent({
  lookup: ((host: string, options: { all?: boolean }, callback: (...args: unknown[]) => void) => {
    if (!host.endsWith('.localhost')) return dnsLookup(host, options as never, callback as never);
    if (options.all) return callback(null, [{ address: '127.0.0.1', family: 4 }]);
    return callback(null, '127.0.0.1', 4);
  }) as never,
});

describe('Stripe SDK (host name routing: host/port/protocol only)', () => {
  let port: number;
  beforeAll(() => {
    port = Number(new URL(gw.stack.proxyUrl).port);
  });

  const stripeFor = (key: string) =>
    new Stripe(key, {
      host: 'stripe.localhost',
      port,
      protocol: 'http',
      httpAgent: localhostAgent,
      maxNetworkRetries: 0,
    });

  it('creates and lists through {alias}.localhost with the vendor secret swapped in', async () => {
    const { key } = await proxy({ alias: 'stripe' });
    vendor.respond = (req, res) =>
      req.method === 'POST'
        ? json(res, 200, { id: 'cus_1', object: 'customer', email: 'a@example.com' })
        : json(res, 200, {
            object: 'list',
            data: [{ id: 'cus_1', object: 'customer' }],
            has_more: false,
            url: '/v1/customers',
          });
    const stripe = stripeFor(key);
    const customer = await stripe.customers.create({ email: 'a@example.com' });
    expect(customer.id).toBe('cus_1');
    expect(vendor.received[0]!.url).toBe('/v1/customers');
    expect(vendor.received[0]!.headers.authorization).toBe(`Bearer ${VENDOR_TOKEN}`);
    expect(vendor.received[0]!.body.toString()).toBe('email=a%40example.com');

    const denied = await stripe.customers.del('cus_1').catch((e: unknown) => e);
    expect(denied).toBeInstanceOf(Stripe.errors.StripePermissionError);
    expect((denied as Error).message).toBe('No rule allows this request');
    const unauthorized = await stripeFor('sk_test_wrong')
      .customers.list()
      .catch((e: unknown) => e);
    expect(unauthorized).toBeInstanceOf(Stripe.errors.StripeAuthenticationError);
    expect((unauthorized as Error).message).toBe('Missing or invalid proxy key');
    const unknown = await new Stripe(key, {
      host: 'no-such-proxy.localhost',
      port,
      protocol: 'http',
      httpAgent: localhostAgent,
      maxNetworkRetries: 0,
    }).customers
      .list()
      .catch((e: unknown) => e);
    expect(unknown).toBeInstanceOf(Stripe.errors.StripeAuthenticationError);
  });

  it('through an alias port (KEYGATE_ALIAS_PORTS): host 127.0.0.1, no agent, no machine change', async () => {
    const { key } = await proxy({ alias: 'stripe-port' });
    const aliasPort = Number(new URL(gw.stack.aliasUrls['stripe-port']!).port);
    const stripe = new Stripe(key, {
      host: '127.0.0.1',
      port: aliasPort,
      protocol: 'http',
      maxNetworkRetries: 0,
    });
    vendor.respond = (req, res) =>
      req.url?.startsWith('/v1/customers?')
        ? json(res, 200, {
            object: 'list',
            data: [{ id: req.url.includes('starting_after') ? 'cus_2' : 'cus_1', object: 'customer' }],
            has_more: !req.url.includes('starting_after'),
            url: '/v1/customers',
          })
        : json(res, 200, { id: 'cus_1', object: 'customer', email: 'a@example.com' });
    expect((await stripe.customers.create({ email: 'a@example.com' })).id).toBe('cus_1');
    // Auto-pagination: both pages through the alias port, the vendor secret swapped in each time.
    const ids: string[] = [];
    for await (const customer of stripe.customers.list({ limit: 1 })) ids.push(customer.id);
    expect(ids).toEqual(['cus_1', 'cus_2']);
    expect(vendor.received.map((r) => r.url.replace(/\?.*/, ''))).toEqual([
      '/v1/customers',
      '/v1/customers',
      '/v1/customers',
    ]);
    for (const r of vendor.received) expect(r.headers.authorization).toBe(`Bearer ${VENDOR_TOKEN}`);
    const denied = await stripe.customers.del('cus_1').catch((e: unknown) => e);
    expect(denied).toBeInstanceOf(Stripe.errors.StripePermissionError);
    // The port names the proxy, whatever the path: the path form's /api/{id} is just a target path.
    const other = await new Stripe('sk_test_wrong', {
      host: '127.0.0.1',
      port: aliasPort,
      protocol: 'http',
      maxNetworkRetries: 0,
    }).customers
      .list()
      .catch((e: unknown) => e);
    expect(other).toBeInstanceOf(Stripe.errors.StripeAuthenticationError);
  });

  it('a Stripe-style target secret (key as user name, empty password) is accepted and sent as Basic', async () => {
    const { key } = await proxy({
      alias: 'stripe-basic',
      target: {
        credentialAuthType: 'basicAuth',
        credentialSecret: { username: 'sk_test_vendor_0123456789abcdef', password: '' },
      },
    });
    vendor.respond = (_req, res) => json(res, 200, { object: 'balance', available: [] });
    const viaCurl = await fetch(`${gw.stack.proxyUrl}/api/stripe-basic/v1/balance`, {
      headers: { authorization: `Bearer ${key}` },
    });
    expect(viaCurl.status).toBe(200);
    const last = vendor.received.at(-1)!;
    expect(last.headers.authorization).toBe(
      `Basic ${Buffer.from('sk_test_vendor_0123456789abcdef:').toString('base64')}`,
    );
    const listed = await gw.api('GET', `/clients/${gw.admin.clientId}/credentials`);
    expect(JSON.stringify(listed.body)).not.toContain('sk_test_vendor_0123456789abcdef');
  });
});

describe('Octokit (authorization: token …) and Link pagination', () => {
  it('paginates over three pages entirely through keygate', async () => {
    const { key } = await proxy({ alias: 'github' });
    vendor.respond = (req, res) => {
      const page = Number(new URL(req.url, vendor.url).searchParams.get('page') ?? '1');
      const links = [];
      if (page < 3) links.push(`<${vendor.url}/repos/o/r/issues?page=${page + 1}&per_page=1>; rel="next"`);
      links.push(`<${vendor.url}/repos/o/r/issues?page=3&per_page=1>; rel="last"`);
      json(res, 200, [{ id: page, number: page, title: `issue ${page}` }], { link: links.join(', ') });
    };
    const octokit = new Octokit({ auth: key, baseUrl: `${gw.stack.proxyUrl}/api/github` });
    const issues = await octokit.paginate('GET /repos/{owner}/{repo}/issues', {
      owner: 'o',
      repo: 'r',
      per_page: 1,
    });
    expect(issues.map((i) => i.id)).toEqual([1, 2, 3]);
    // Every page went through keygate: each carries the vendor token keygate injects.
    expect(vendor.received).toHaveLength(3);
    for (const rec of vendor.received) expect(rec.headers.authorization).toBe(`Bearer ${VENDOR_TOKEN}`);
    const quiet = new Octokit({
      auth: key,
      baseUrl: `${gw.stack.proxyUrl}/api/github`,
      log: { debug() {}, info() {}, warn() {}, error() {} },
    });
    const denied = await quiet.rest.issues
      .deleteComment({ owner: 'o', repo: 'r', comment_id: 1 })
      .catch((e: unknown) => e);
    expect((denied as { status?: number }).status).toBe(403);
    expect((denied as Error).message).toContain('No rule allows this request');
  });
});

describe('fetch / curl', () => {
  it('reads the key from a query parameter only when listed, and removes it before the call out and from the log', async () => {
    const { key } = await proxy({ alias: 'google', keyLocations: ['header:x-goog-api-key', 'query:key'] });
    vendor.respond = (_req, res) => json(res, 200, { ok: true });
    const byQuery = await fetch(`${gw.stack.proxyUrl}/api/google/v1/things?key=${key}&q=1`);
    expect(byQuery.status).toBe(200);
    expect(vendor.received[0]!.url).toBe('/v1/things?q=1');
    expect(outcomes.at(-1)!.query).toBe('q=1');
    const byHeader = await fetch(`${gw.stack.proxyUrl}/api/google/v1/things`, {
      headers: { 'x-goog-api-key': key },
    });
    expect(byHeader.status).toBe(200);
    expect(vendor.received[1]!.headers['x-goog-api-key']).toBeUndefined();
    // Two places at once is ambiguous: 401, nothing sent.
    const both = await fetch(`${gw.stack.proxyUrl}/api/google/v1/things?key=${key}`, {
      headers: { 'x-goog-api-key': key },
    });
    expect(both.status).toBe(401);
    const body = (await both.json()) as { error: { type: string; code: string; message: string } };
    expect(body.error).toEqual({
      type: 'authentication_error',
      code: 'proxy-unauthorized',
      message: 'Missing or invalid proxy key',
    });
    // Authorization is not a listed place for this credential.
    expect(
      (
        await fetch(`${gw.stack.proxyUrl}/api/google/v1/things`, {
          headers: { authorization: `Bearer ${key}` },
        })
      ).status,
    ).toBe(401);
    expect(vendor.received).toHaveLength(2);
  });

  it('basic-user (curl -u key:), Location rewriting, HEAD keeps Content-Length', async () => {
    const { key } = await proxy({
      alias: 'curlish',
      basePath: '/base',
      keyLocations: ['authorization', 'basic-user'],
    });
    vendor.respond = (req, res) => {
      if (req.method === 'HEAD') {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': '1234' });
        return res.end();
      }
      res.writeHead(302, {
        location: `${vendor.url}/base/next?x=1`,
        'content-location': 'https://elsewhere.example/base/x',
      });
      res.end();
    };
    const basic = `Basic ${Buffer.from(`${key}:`).toString('base64')}`;
    const moved = await fetch(`${gw.stack.proxyUrl}/api/curlish/start`, {
      headers: { authorization: basic },
      redirect: 'manual',
    });
    expect(moved.status).toBe(302);
    expect(moved.headers.get('location')).toBe(`${gw.stack.proxyUrl}/api/curlish/next?x=1`);
    expect(moved.headers.get('content-location')).toBe('https://elsewhere.example/base/x');
    const head = await fetch(`${gw.stack.proxyUrl}/api/curlish/thing`, {
      method: 'HEAD',
      headers: { authorization: `token ${key}` },
    });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe('1234');
    // A Basic password is not this form.
    const withPassword = `Basic ${Buffer.from(`${key}:x`).toString('base64')}`;
    expect(
      (await fetch(`${gw.stack.proxyUrl}/api/curlish/thing`, { headers: { authorization: withPassword } }))
        .status,
    ).toBe(401);
    expect(vendor.received).toHaveLength(2);
  });
});
