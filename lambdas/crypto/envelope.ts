import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { DecryptCommand, GenerateDataKeyCommand, type KMSClient } from '@aws-sdk/client-kms';

/**
 * Envelope encryption of target secrets. KMS makes a fresh 256-bit data key per sealed secret; the
 * secret is encrypted locally with AES-256-GCM and only the KMS-encrypted data key is stored beside
 * the ciphertext. The encryption context (client and credential) binds the data key to its item:
 * KMS refuses to decrypt it under any other context, so a ciphertext copied onto another item is
 * useless. The same context is also GCM's additional data.
 */
export interface SealedSecret {
  v: 1;
  /** KMS-encrypted data key (base64). */
  edk: string;
  iv: string;
  tag: string;
  ct: string;
}

export type EncryptionContext = Record<string, string>;

function contextBytes(context: EncryptionContext): Buffer {
  const sorted = Object.keys(context)
    .sort()
    .map((k) => [k, context[k]]);
  return Buffer.from(JSON.stringify(sorted), 'utf8');
}

/** Encrypts `plaintext` under a new data key from KMS, bound to `context`. */
export async function sealSecret(
  kms: KMSClient,
  keyId: string,
  plaintext: string,
  context: EncryptionContext,
): Promise<SealedSecret> {
  const dataKey = await kms.send(
    new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256', EncryptionContext: context }),
  );
  if (!dataKey.Plaintext || !dataKey.CiphertextBlob) throw new Error('KMS returned no data key');
  const key = Buffer.from(dataKey.Plaintext);
  try {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', key, iv);
    cipher.setAAD(contextBytes(context));
    const ct = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return {
      v: 1,
      edk: Buffer.from(dataKey.CiphertextBlob).toString('base64'),
      iv: iv.toString('base64'),
      tag: cipher.getAuthTag().toString('base64'),
      ct: ct.toString('base64'),
    };
  } finally {
    key.fill(0);
  }
}

/**
 * Plaintext data keys, kept in memory so KMS Decrypt is paid once per data key per TTL rather than
 * once per request. Bounded (least recently used goes first) and short-lived (TTL ≤ 5 minutes).
 * It caches key material only — never whether a credential is still valid: the caller has already
 * read the credential's current item before it asks to open it.
 */
export class DataKeyCache {
  private readonly entries = new Map<string, { key: Buffer; expiresAt: number }>();
  private readonly maxEntries: number;
  private readonly ttlMs: number;
  private readonly now: () => number;

  constructor(maxEntries = 1000, ttlMs = 5 * 60_000, now: () => number = Date.now) {
    if (ttlMs > 5 * 60_000) throw new Error('data-key cache TTL must be at most 5 minutes');
    this.maxEntries = maxEntries;
    this.ttlMs = ttlMs;
    this.now = now;
  }

  get(id: string): Buffer | undefined {
    const entry = this.entries.get(id);
    if (!entry) return undefined;
    if (entry.expiresAt <= this.now()) {
      entry.key.fill(0);
      this.entries.delete(id);
      return undefined;
    }
    this.entries.delete(id);
    this.entries.set(id, entry);
    return entry.key;
  }

  set(id: string, key: Buffer): void {
    this.entries.delete(id);
    this.entries.set(id, { key, expiresAt: this.now() + this.ttlMs });
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.get(oldest)?.key.fill(0);
      this.entries.delete(oldest);
    }
  }

  get size(): number {
    return this.entries.size;
  }
}

function cacheId(sealed: SealedSecret, context: EncryptionContext): string {
  return createHash('sha256').update(sealed.edk).update(contextBytes(context)).digest('base64');
}

/** Decrypts a sealed secret; KMS is asked only when the data key is not cached. */
export async function openSecret(
  kms: KMSClient,
  sealed: SealedSecret,
  context: EncryptionContext,
  cache?: DataKeyCache,
): Promise<string> {
  const id = cacheId(sealed, context);
  let key = cache?.get(id);
  if (!key) {
    const out = await kms.send(
      new DecryptCommand({ CiphertextBlob: Buffer.from(sealed.edk, 'base64'), EncryptionContext: context }),
    );
    if (!out.Plaintext) throw new Error('KMS returned no plaintext');
    key = Buffer.from(out.Plaintext);
    cache?.set(id, key);
  }
  const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(sealed.iv, 'base64'));
  decipher.setAAD(contextBytes(context));
  decipher.setAuthTag(Buffer.from(sealed.tag, 'base64'));
  return Buffer.concat([decipher.update(Buffer.from(sealed.ct, 'base64')), decipher.final()]).toString(
    'utf8',
  );
}
