import { GetCommand, UpdateCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { coreRoutes } from '../../lambdas/control-plane/api.ts';
import { checkRouteAccess } from '../../lambdas/control-plane/router.ts';
import type { ProxyOutcome } from '../../lambdas/data-plane/outcome.ts';
import { keys } from '../../lambdas/storage/keys.ts';
import { startTestGateway, type TestGateway } from '../helpers/local.ts';
import { captureLogs } from '../helpers/logs.ts';
import {
  REGION,
  type RecordingUpstream,
  send,
  startProxyFront,
  startRecordingUpstream,
} from '../helpers/proxy-fixtures.ts';

// Failures are provoked on purpose here: their ERROR lines go to a capture, not the output.
const logs = captureLogs();
afterAll(() => logs.restore());

/**
 * Core API hygiene: who may call is checked before the body is read; predictable keys are refused;
 * URLs answered to members carry no credential; an older sealed blob of a credential cannot be
 * restored (and is reported as an integrity failure, not as a KMS outage).
 */
let gw: TestGateway;
let upstream: RecordingUpstream;
let clientId: string;
let strangerToken: string;

beforeAll(async () => {
  upstream = await startRecordingUpstream();
  gw = await startTestGateway({ targetAllowlist: [`127.0.0.1:${upstream.port}`] });
  clientId = (await gw.api('POST', '/clients', { body: { clientName: 'hygiene' } })).body.clientId;
  const stranger = await gw.api('POST', '/users', { body: { userName: 'stranger' } });
  expect(stranger.status).toBe(201);
  strangerToken = stranger.body.token;
});

afterAll(async () => {
  await upstream.close();
  await gw.close();
});

describe('membership before body validation', () => {
  it('answers a non-member 404 on every client route, whatever the body', async () => {
    const clientRoutes = coreRoutes.filter((r) => r.path.includes('{clientId}'));
    expect(clientRoutes.length).toBeGreaterThan(20);
    for (const r of clientRoutes) {
      const path = r.path.replace('{clientId}', clientId).replace(/\{\w+\}/g, 'x');
      for (const rawBody of ['{not json', '[]', '{"credentialType":42}', '']) {
        const res = await gw.api(r.method, path, {
          token: strangerToken,
          ...(r.method === 'GET' ? {} : { rawBody, headers: { 'content-type': 'application/json' } }),
        });
        expect([r.method, r.path, res.status, res.body?.code]).toEqual([r.method, r.path, 404, 'not_found']);
      }
    }
  });

  it('refuses a route table that forgets who may call a route', () => {
    expect(() => checkRouteAccess(coreRoutes)).not.toThrow();
    const bare = { ...coreRoutes.find((r) => r.path === '/clients/{clientId}/targets')!, access: undefined };
    expect(() => checkRouteAccess([bare])).toThrow(/declares no access/);
    expect(() => checkRouteAccess([{ ...bare, access: 'anyUser' }])).toThrow(/does not fit/);
  });
});

describe('strength of user-supplied keys', () => {
  const create = (key: string) =>
    gw.api('POST', `/clients/${clientId}/credentials`, {
      body: {
        credentialType: 'proxy',
        credentialAuthType: 'apiKey',
        credentialName: 'k',
        credentialRegion: REGION,
        credentialSecret: { key },
      },
    });

  it.each([
    'Password1Password1Password1',
    'qwertyuiopasdfghjklzxcvbnm1234567890',
    '1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p',
    'rr_live_abcdefghijklmnopqrstuvwxyz0123456789',
  ])('refuses %s with a clear 400', async (key) => {
    const res = await create(key);
    expect(res.status).toBe(400);
    expect(res.body.code).toBe('weak_key');
    expect(res.body.message).toMatch(/credentialSecret\.key/);
    expect(res.text).not.toContain(key);
  });

  it('accepts a random key', async () => {
    const res = await create(
      `rr_live_${Buffer.from(crypto.getRandomValues(new Uint8Array(24))).toString('base64url')}`,
    );
    expect(res.status).toBe(201);
  });
});

describe('credentials inside URLs', () => {
  it('masks a jwksUrl token and userinfo wherever the credential is shown', async () => {
    const res = await gw.api('POST', `/clients/${clientId}/credentials`, {
      body: {
        credentialType: 'proxy',
        credentialAuthType: 'jwtVerify',
        credentialName: 'jwt',
        credentialRegion: REGION,
        credentialSecret: { jwksUrl: `${upstream.url}/jwks.json?token=jwks-secret-123&kid=a` },
      },
    });
    expect(res.status).toBe(201);
    const read = await gw.api('GET', `/clients/${clientId}/credentials/${res.body.credentialId}`);
    const list = await gw.api('GET', `/clients/${clientId}/credentials`);
    for (const text of [res.text, read.text, list.text]) {
      expect(text).not.toContain('jwks-secret-123');
      expect(text).toContain('kid=a');
    }
    expect(read.body.credentialSettings.jwksUrl).toBe(`${upstream.url}/jwks.json?token=****&kid=a`);
  });
});

describe('sealed secrets cannot be rolled back', () => {
  it('refuses an older blob of the same credential as an integrity failure, sending nothing', async () => {
    const post = async (path: string, body: unknown) => {
      const r = await gw.api('POST', `/clients/${clientId}${path}`, { body });
      expect(r.status).toBe(201);
      return r.body;
    };
    const base = { credentialName: 'c', credentialRegion: REGION };
    const pc = await post('/credentials', { ...base, credentialType: 'proxy', credentialAuthType: 'apiKey' });
    const tc = await post('/credentials', {
      ...base,
      credentialType: 'target',
      credentialAuthType: 'apiKey',
      credentialSecret: { key: 'vendor-key-old-revoked' },
    });
    const t = await post('/targets', { targetName: 't', targetBaseURL: upstream.url, targetRegion: REGION });
    await post(`/targets/${t.targetId}/rules`, { effect: 'allow', priority: 1 });
    const p = await post('/proxies', {
      proxyName: 'p',
      proxyRegion: REGION,
      proxyProxyCredentialId: pc.credentialId,
      proxyTargetId: t.targetId,
      proxyTargetCredentialId: tc.credentialId,
      proxyDefaultRuleEffect: 'allow',
    });
    const cell = gw.stack.deps.cells[REGION]!;
    const credentialKey = keys.credential(clientId, tc.credentialId);
    const oldBlob = (await cell.ddb.send(new GetCommand({ TableName: cell.tableName, Key: credentialKey })))
      .Item!.sealedSecret;
    const rotated = await gw.api('PUT', `/clients/${clientId}/credentials/${tc.credentialId}`, {
      body: { credentialSecret: { key: 'vendor-key-new' } },
    });
    expect(rotated.status).toBe(200);

    const outcomes: ProxyOutcome[] = [];
    const front = await startProxyFront(gw.stack.deps, { onOutcome: (o) => outcomes.push(o) });
    try {
      const call = () =>
        send(front.url, {
          path: `/api/${p.proxyId}/v1/x`,
          headers: { authorization: pc.credentialSecret.key },
        });
      const since = upstream.received.length;
      expect((await call()).status).toBe(200);
      expect(upstream.received[since]!.headers['x-api-key']).toBe('vendor-key-new');

      // Restore the old blob where the data plane reads it (the snapshot) — a rollback.
      await cell.ddb.send(
        new UpdateCommand({
          TableName: cell.tableName,
          Key: keys.proxySnapshot(p.proxyId),
          UpdateExpression: 'SET targetCredential.sealedSecret = :old',
          ExpressionAttributeValues: { ':old': oldBlob },
        }),
      );
      const before = upstream.received.length;
      const res = await call();
      expect(res.status).toBe(500);
      expect(res.json().code).toBe('proxy-credential-integrity-failure');
      expect(upstream.received.length).toBe(before);
      const last = outcomes[outcomes.length - 1]!;
      expect(last.integrityFailure).toBe(true);
      expect(last.failedDependency).toBeUndefined();
    } finally {
      await front.close();
    }
  });
});
