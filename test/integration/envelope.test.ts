import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { credentialContext, DataKeyCache, openSecret, sealSecret } from '../../lambdas/crypto/envelope.ts';
import { createKmsClient } from '../../lambdas/crypto/kms-client.ts';
import { type KmsStandIn, LOCAL_KEY_ID, startKmsStandIn } from '../../local/kms-server.ts';

describe('envelope encryption through the real KMS client and the KMS stand-in', () => {
  let kmsServer: KmsStandIn;
  let keyFile: string;
  const ctx = { clientId: 'c1', credentialId: 'k1' };

  beforeAll(async () => {
    keyFile = join(mkdtempSync(join(tmpdir(), 'kg-kms-')), 'kms-master-key');
    kmsServer = await startKmsStandIn({ keyFile });
  });
  afterAll(() => kmsServer.close());

  const client = () =>
    createKmsClient({
      region: 'us-east-1',
      endpoint: kmsServer.endpoint,
      credentials: kmsServer.credentials,
    });

  it('keeps the master key in a 0600 file', () => {
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
  });

  it('round-trips a secret and never stores the plaintext', async () => {
    const sealed = await sealSecret(client(), LOCAL_KEY_ID, 'sk_live_vendor_secret', ctx);
    expect(JSON.stringify(sealed)).not.toContain('sk_live_vendor_secret');
    expect(await openSecret(client(), sealed, ctx)).toBe('sk_live_vendor_secret');
  });

  it('refuses to decrypt under another encryption context (ciphertext moved to another item): an integrity failure', async () => {
    const sealed = await sealSecret(client(), LOCAL_KEY_ID, 'secret', ctx);
    await expect(openSecret(client(), sealed, { clientId: 'c1', credentialId: 'k2' })).rejects.toMatchObject({
      name: 'SecretIntegrityError',
      cause: { name: 'InvalidCiphertextException' },
    });
  });

  it('refuses an older revision of the same credential (rollback), and a tampered tag, as integrity failures', async () => {
    const old = await sealSecret(client(), LOCAL_KEY_ID, 'old', credentialContext('c1', 'k1', 1));
    await expect(openSecret(client(), old, credentialContext('c1', 'k1', 2))).rejects.toMatchObject({
      name: 'SecretIntegrityError',
    });
    const cache = new DataKeyCache();
    const sealed = await sealSecret(client(), LOCAL_KEY_ID, 'x', credentialContext('c1', 'k1', 2));
    expect(await openSecret(client(), sealed, credentialContext('c1', 'k1', 2), cache)).toBe('x');
    const tampered = { ...sealed, tag: Buffer.alloc(16).toString('base64') };
    await expect(
      openSecret(client(), tampered, credentialContext('c1', 'k1', 2), cache),
    ).rejects.toMatchObject({
      name: 'SecretIntegrityError',
    });
  });

  it('survives a restart of the stand-in with the same key file', async () => {
    const sealed = await sealSecret(client(), LOCAL_KEY_ID, 'persisted', ctx);
    await kmsServer.close();
    kmsServer = await startKmsStandIn({ keyFile });
    expect(await openSecret(client(), sealed, ctx)).toBe('persisted');
  });

  it('amortises Decrypt through the data-key cache', async () => {
    const kms = client();
    const cache = new DataKeyCache();
    const sealed = await sealSecret(kms, LOCAL_KEY_ID, 'cached', ctx);
    const before = kmsServer.counts.Decrypt ?? 0;
    for (let i = 0; i < 20; i++) expect(await openSecret(kms, sealed, ctx, cache)).toBe('cached');
    expect((kmsServer.counts.Decrypt ?? 0) - before).toBe(1);
  });

  it('expires cached data keys and bounds their number', () => {
    let now = 0;
    const cache = new DataKeyCache(2, 1000, () => now);
    cache.set('a', Buffer.alloc(32, 1));
    cache.set('b', Buffer.alloc(32, 2));
    cache.set('c', Buffer.alloc(32, 3));
    expect(cache.size).toBe(2);
    expect(cache.get('a')).toBeUndefined();
    now = 1000;
    expect(cache.get('b')).toBeUndefined();
    expect(() => new DataKeyCache(10, 10 * 60_000)).toThrow();
  });

  it('answers an unknown key id with NotFoundException', async () => {
    await expect(sealSecret(client(), 'alias/other', 'x', ctx)).rejects.toMatchObject({
      name: 'NotFoundException',
    });
  });
});
