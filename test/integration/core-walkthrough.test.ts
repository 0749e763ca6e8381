import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { openSecret } from '../../lambdas/crypto/envelope.ts';
import { hashSecret, hasValidChecksum, SECRET_PATTERN } from '../../lambdas/crypto/secrets.ts';
import { keys } from '../../lambdas/storage/keys.ts';
import { readSnapshot } from '../../lambdas/storage/snapshot.ts';
import { getItem } from '../../lambdas/storage/table.ts';
import { startTestGateway, type TestGateway } from '../helpers/local.ts';

/**
 * The reference post's walk-through, with its bodies verbatim (the placeholder key replaced by a
 * real 128-bit one), and what must hold around it: keys shown once, secrets sealed, snapshots exact
 * when each call answers, revocation at once. Every byte written to stdout/stderr while the gateway
 * runs is captured and searched for secrets at the end.
 */
describe('reference walk-through', () => {
  let gw: TestGateway;
  let clientId: string;
  const proxyKey = `rr_live_${randomBytes(16).toString('hex')}`;
  const vendorSecret = `shpat_${randomBytes(20).toString('hex')}`;
  const vendorSecret2 = `shpat_${randomBytes(20).toString('hex')}`;
  const answers: string[] = [];
  let logged = '';
  const originals = { out: process.stdout.write, err: process.stderr.write };
  const cell = () => gw.stack.deps.cells['us-east-1']!;

  const api: TestGateway['api'] = async (method, path, opts) => {
    const res = await gw.api(method, path, opts);
    answers.push(res.text);
    return res;
  };

  beforeAll(async () => {
    const capture =
      (orig: typeof process.stdout.write) =>
      (chunk: unknown, ...rest: unknown[]): boolean => {
        logged += String(chunk);
        return (orig as (...a: unknown[]) => boolean).call(process.stdout, chunk, ...rest);
      };
    process.stdout.write = capture(originals.out) as typeof process.stdout.write;
    process.stderr.write = capture(originals.err) as typeof process.stderr.write;
    gw = await startTestGateway();
    clientId = gw.admin.clientId;
  });
  afterAll(async () => {
    await gw.close();
    process.stdout.write = originals.out;
    process.stderr.write = originals.err;
  });

  let proxyCredentialId: string;
  let targetCredentialId: string;
  let targetId: string;
  let proxyId: string;
  let ruleId: string;

  it('1. creates the proxy credential with the verbatim body; the key is never answered', async () => {
    const res = await api('POST', `/clients/${clientId}/credentials`, {
      body: {
        credentialType: 'proxy',
        credentialAuthType: 'key',
        credentialName: 'inventory-service',
        credentialRegion: 'us-east-1',
        credentialSecret: {
          key: proxyKey,
        },
      },
    });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({
      credentialType: 'proxy',
      credentialAuthType: 'key',
      credentialName: 'inventory-service',
      credentialRegion: 'us-east-1',
      credentialSecretHint: { type: 'apiKey', prefix: 'rr_live_', last4: proxyKey.slice(-4) },
    });
    expect(res.body.credentialSecret).toBeUndefined();
    expect(res.text).not.toContain(proxyKey);
    proxyCredentialId = res.body.credentialId;
    const stored = await getItem<Record<string, unknown>>(
      cell(),
      keys.credential(clientId, proxyCredentialId),
    );
    expect(stored?.secretHash).toBe(hashSecret(proxyKey));
    expect(JSON.stringify(stored)).not.toContain(proxyKey);
  });

  it('2. adds the verbatim rule', async () => {
    const res = await api('POST', `/clients/${clientId}/credentials/${proxyCredentialId}/rules`, {
      body: {
        effect: 'allow',
        methods: ['GET'],
        path: {
          path: { pattern: '^/v2/inventory/.*' },
          presence: 'must_exist',
        },
        priority: 10,
        notes: 'Inventory service: read-only access to /v2/inventory/*',
      },
    });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({
      effect: 'allow',
      methods: ['GET'],
      path: { path: { pattern: '^/v2/inventory/.*' }, presence: 'must_exist' },
      priority: 10,
      parentType: 'credential',
      parentId: proxyCredentialId,
    });
    ruleId = res.body.ruleId;
  });

  it('creates the Shopify target and its API-key target credential (sealed, never answered)', async () => {
    const t = await api('POST', `/clients/${clientId}/targets`, {
      body: {
        targetName: 'shopify',
        targetBaseURL: 'https://acme-shop.myshopify.com/admin/api/2024-01/',
        targetRegion: 'us-east-1',
      },
    });
    expect(t.status).toBe(201);
    expect(t.body).toMatchObject({
      targetBaseURL: 'https://acme-shop.myshopify.com/admin/api/2024-01',
      targetDefaultRuleEffect: 'deny',
    });
    targetId = t.body.targetId;
    const c = await api('POST', `/clients/${clientId}/credentials`, {
      body: {
        credentialType: 'target',
        credentialAuthType: 'apiKey',
        credentialName: 'shopify-api-key',
        credentialRegion: 'us-east-1',
        credentialSecret: { key: vendorSecret, headerName: 'X-Shopify-Access-Token' },
      },
    });
    expect(c.status).toBe(201);
    expect(c.body.credentialSettings).toEqual({ headerName: 'X-Shopify-Access-Token' });
    expect(c.text).not.toContain(vendorSecret);
    targetCredentialId = c.body.credentialId;
  });

  it('3. creates the proxy with the verbatim body; its snapshot holds everything, exact', async () => {
    const res = await api('POST', `/clients/${clientId}/proxies`, {
      body: {
        proxyName: 'shopify-inventory',
        proxyRegion: 'us-east-1',
        proxyProxyCredentialId: proxyCredentialId,
        proxyTargetId: targetId,
        proxyTargetCredentialId: targetCredentialId,
        proxyDefaultRuleEffect: 'deny',
      },
    });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({
      proxyName: 'shopify-inventory',
      proxyActive: true,
      proxyDefaultRuleEffect: 'deny',
      proxyMaxRequestsPerMinute: 600,
      proxyMaxRequestsPerDay: 100_000,
    });
    proxyId = res.body.proxyId;

    const snap = (await readSnapshot(cell(), proxyId))!;
    expect(snap).toMatchObject({
      proxyId,
      clientId,
      proxyRegion: 'us-east-1',
      proxyActive: true,
      proxyDefaultRuleEffect: 'deny',
      target: {
        targetId,
        targetBaseURL: 'https://acme-shop.myshopify.com/admin/api/2024-01',
        targetDefaultRuleEffect: 'deny',
      },
      proxyCredential: {
        credentialId: proxyCredentialId,
        credentialAuthType: 'apiKey',
        secretHash: hashSecret(proxyKey),
      },
      targetCredential: { credentialId: targetCredentialId, credentialAuthType: 'apiKey' },
      rules: { proxyCredential: [{ ruleId, effect: 'allow' }], targetCredential: [], proxy: [], target: [] },
    });
    const opened = await openSecret(cell().kms, snap.targetCredential!.sealedSecret!, {
      clientId,
      credentialId: targetCredentialId,
      secretRevision: '1',
    });
    expect(JSON.parse(opened)).toEqual({ key: vendorSecret, headerName: 'X-Shopify-Access-Token' });
    // Sealed under its own credential: moved to another item it does not open.
    await expect(
      openSecret(cell().kms, snap.targetCredential!.sealedSecret!, {
        clientId,
        credentialId: proxyCredentialId,
      }),
    ).rejects.toThrow();
  });

  it('simulates the reference rule: GET under /v2/inventory allowed, the rest denied by default', async () => {
    const ok = await api('POST', `/clients/${clientId}/proxies/${proxyId}/simulate`, {
      body: { method: 'GET', path: '/v2/inventory/items?limit=5' },
    });
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({
      decision: 'allow',
      reason: 'rule',
      rule: { scope: 'proxyCredential', ruleId, priority: 10 },
      canonical: { method: 'GET', path: '/v2/inventory/items', query: [['limit', '5']] },
    });
    const post = await api('POST', `/clients/${clientId}/proxies/${proxyId}/simulate`, {
      body: { method: 'POST', path: '/v2/inventory/items' },
    });
    expect(post.body).toMatchObject({ decision: 'deny', reason: 'default', status: 403 });
  });

  it('4. rotates the target credential with zero downtime: new credential, PUT the proxy, delete the old', async () => {
    const c = await api('POST', `/clients/${clientId}/credentials`, {
      body: {
        credentialType: 'target',
        credentialAuthType: 'apiKey',
        credentialName: 'shopify-api-key-2',
        credentialRegion: 'us-east-1',
        credentialSecret: { key: vendorSecret2, headerName: 'X-Shopify-Access-Token' },
      },
    });
    const newId = c.body.credentialId;
    const got = await api('GET', `/clients/${clientId}/proxies/${proxyId}`);
    const put = await api('PUT', `/clients/${clientId}/proxies/${proxyId}`, {
      body: { ...got.body, proxyTargetCredentialId: newId },
    });
    expect(put.status).toBe(200);
    expect(put.body.proxyTargetCredentialId).toBe(newId);
    expect((await readSnapshot(cell(), proxyId))!.targetCredential?.credentialId).toBe(newId);

    expect((await api('DELETE', `/clients/${clientId}/credentials/${targetCredentialId}`)).status).toBe(204);
    expect((await api('GET', `/clients/${clientId}/credentials/${targetCredentialId}`)).status).toBe(404);
    const snap = (await readSnapshot(cell(), proxyId))!;
    expect(snap.targetCredential?.credentialId).toBe(newId);
    expect(snap.proxyCredential?.credentialId).toBe(proxyCredentialId);
    targetCredentialId = newId;
  });

  it('generates proxy keys when none is given: kg_live_/kg_test_, checksummed, answered once', async () => {
    const live = await api('POST', `/clients/${clientId}/credentials`, {
      body: {
        credentialType: 'proxy',
        credentialAuthType: 'apiKey',
        credentialName: 'billing-agent',
        credentialRegion: 'us-east-1',
      },
    });
    expect(live.status).toBe(201);
    const key = live.body.credentialSecret.key as string;
    expect(key).toMatch(SECRET_PATTERN);
    expect(key.startsWith('kg_live_')).toBe(true);
    expect(hasValidChecksum(key)).toBe(true);
    expect(live.body.credentialSecretHint).toEqual({
      type: 'apiKey',
      prefix: 'kg_live_',
      last4: key.slice(-4),
    });
    const again = await gw.api('GET', `/clients/${clientId}/credentials/${live.body.credentialId}`);
    expect(again.text).not.toContain(key);
    const list = await gw.api('GET', `/clients/${clientId}/credentials`);
    expect(list.text).not.toContain(key);
    expect(list.text).not.toContain('secretHash');
    expect(list.text).not.toContain('sealedSecret');

    const test = await gw.api('POST', `/clients/${clientId}/credentials`, {
      body: {
        credentialType: 'proxy',
        credentialAuthType: 'bearer',
        credentialName: 'ci',
        credentialRegion: 'us-east-1',
        credentialSecret: { keyEnvironment: 'test' },
      },
    });
    expect(test.body.credentialSecret.token).toMatch(/^kg_test_[0-9A-Za-z]{36}$/);
    expect(hasValidChecksum(test.body.credentialSecret.token)).toBe(true);
  });

  it('6. DELETE of the proxy credential blocks the proxy at once (gone from the snapshot)', async () => {
    expect((await api('DELETE', `/clients/${clientId}/credentials/${proxyCredentialId}`)).status).toBe(204);
    const snap = (await readSnapshot(cell(), proxyId))!;
    expect(snap.proxyCredential).toBeUndefined();
    expect(snap.rules.proxyCredential).toEqual([]);
    // Its rules went with it.
    expect(
      (await api('GET', `/clients/${clientId}/credentials/${proxyCredentialId}/rules/${ruleId}`)).status,
    ).toBe(404);
    const sim = await api('POST', `/clients/${clientId}/proxies/${proxyId}/simulate`, {
      body: { method: 'GET', path: '/v2/inventory/items' },
    });
    expect(sim.body).toMatchObject({ credentials: { proxyCredential: 'missing', targetCredential: 'ok' } });
  });

  it('a KMS outage while sealing a secret is a 503, logged without the secret', async () => {
    await gw.stack.services.kms.close();
    const res = await api('POST', `/clients/${clientId}/credentials`, {
      body: {
        credentialType: 'target',
        credentialAuthType: 'bearer',
        credentialName: 'openai',
        credentialRegion: 'us-east-1',
        credentialSecret: { token: vendorSecret },
      },
    });
    expect(res.status).toBe(503);
    expect(res.body.code).toBe('service_unavailable');
    // The capture works: the failure was logged, naming KMS (the KmsErrors metric counts it).
    const line = logged.split('\n').find((l) => l.includes('"dependency unavailable"'));
    expect(JSON.parse(line!)).toMatchObject({ level: 'ERROR', dependency: 'kms' });
  });

  it('no secret appears in any answer after creation or in any log line', () => {
    expect(answers.length).toBeGreaterThan(5);
    for (const text of answers) {
      expect(text).not.toContain(proxyKey);
      expect(text).not.toContain(vendorSecret);
      expect(text).not.toContain(vendorSecret2);
    }
    for (const secret of [proxyKey, vendorSecret, vendorSecret2, hashSecret(proxyKey)])
      expect(logged).not.toContain(secret);
  });
});
