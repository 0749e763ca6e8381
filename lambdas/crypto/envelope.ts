import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { DecryptCommand, GenerateDataKeyCommand, type KMSClient } from '@aws-sdk/client-kms';

/**
 * Envelope encryption of target secrets. KMS makes a fresh 256-bit data key per sealed secret; the
 * secret is encrypted locally with AES-256-GCM and only the KMS-encrypted data key is stored beside
 * the ciphertext. The encryption context (client and credential) binds the data key to its item:
 * KMS refuses to decrypt it under any other context, so a ciphertext copied onto another item is
 * useless. The same context is also GCM's additional data.
 *
 * Credentials seal under `credentialContext`: client, credential AND the credential's secret
 * revision (a counter the Core API bumps on every secret change and keeps on the item, outside the
 * blob). An older blob of the same credential was sealed under an older revision, so restoring it
 * (a rollback to a revoked vendor key) fails exactly like a blob moved to another item.
 *
 * A blob that fails its context or tag check is an integrity failure (`SecretIntegrityError`): a
 * moved, rolled-back or tampered blob, never "KMS is down". Callers answer it with its own code
 * and count it in its own metric; only transport and service faults of KMS are outages (503).
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

/** A sealed secret that does not open under its context: moved, rolled back or tampered with. */
export class SecretIntegrityError extends Error {
  constructor(cause?: unknown) {
    super('the sealed secret failed its integrity check', { cause });
    this.name = 'SecretIntegrityError';
  }
}

/** KMS answers for a ciphertext that does not belong to this context or key. */
const INTEGRITY_FAULTS = new Set(['InvalidCiphertextException', 'IncorrectKeyException']);

/**
 * The encryption context of a credential's sealed secret. `secretRevision` is absent only for blobs
 * sealed before revisions existed (they open as before; the next secret change adds one).
 */
export function credentialContext(
  clientId: string,
  credentialId: string,
  secretRevision?: number,
): EncryptionContext {
  return {
    clientId,
    credentialId,
    ...(secretRevision === undefined ? {} : { secretRevision: String(secretRevision) }),
  };
}

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

/**
 * Decrypts a sealed secret; KMS is asked only when the data key is not cached. A blob that does not
 * open under `context` throws SecretIntegrityError; KMS outages throw the SDK's own errors.
 */
export async function openSecret(
  kms: KMSClient,
  sealed: SealedSecret,
  context: EncryptionContext,
  cache?: DataKeyCache,
): Promise<string> {
  const id = cacheId(sealed, context);
  let key = cache?.get(id);
  if (!key) {
    let out: { Plaintext?: Uint8Array };
    try {
      out = await kms.send(
        new DecryptCommand({ CiphertextBlob: Buffer.from(sealed.edk, 'base64'), EncryptionContext: context }),
      );
    } catch (error) {
      if (INTEGRITY_FAULTS.has((error as Error)?.name)) throw new SecretIntegrityError(error);
      throw error;
    }
    if (!out.Plaintext) throw new Error('KMS returned no plaintext');
    key = Buffer.from(out.Plaintext);
    cache?.set(id, key);
  }
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(sealed.iv, 'base64'));
    decipher.setAAD(contextBytes(context));
    decipher.setAuthTag(Buffer.from(sealed.tag, 'base64'));
    return Buffer.concat([decipher.update(Buffer.from(sealed.ct, 'base64')), decipher.final()]).toString(
      'utf8',
    );
  } catch (error) {
    // A wrong tag, IV or context (the AAD): the blob is not what was sealed here.
    throw new SecretIntegrityError(error);
  }
}
