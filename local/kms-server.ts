import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type LocalCredentials, loadLocalCredentials, requireGatewayCaller } from './caller-auth.ts';
import { createStsStandIn, isStsRequest, type StsStandIn } from './sts-standin.ts';

/**
 * A KMS stand-in for local mode and tests. It answers the real `@aws-sdk/client-kms` in KMS's
 * JSON 1.1 protocol (`X-Amz-Target: TrentService.<Operation>`), so the code path that runs in AWS
 * runs here too. Semantics kept: a symmetric master key that never leaves the process, data keys
 * returned in plaintext and wrapped, and the encryption context bound into every ciphertext — a
 * Decrypt under a different context fails with InvalidCiphertextException, as in KMS.
 *
 * Operations: GenerateDataKey, Decrypt, Encrypt, DescribeKey. Everything else: UnsupportedOperation.
 * The same server answers STS's AssumeRole (form-encoded Query protocol, ./sts-standin.ts), the
 * proxy's `awsSigV4` targets' source of temporary credentials (KEYGATE_STS_ENDPOINT in AWS terms).
 * Only callers signing with `credentials` are served (./caller-auth.ts); anyone else gets 403.
 */
export const LOCAL_KEY_ID = 'alias/keygate-local';
const MAGIC = Buffer.from('KGK1');

export interface KmsStandIn {
  server: Server;
  endpoint: string;
  /** The only credentials this stand-in accepts. */
  credentials: LocalCredentials;
  /** Decrypt calls answered so far (for benchmarks and cache tests). */
  counts: Record<string, number>;
  /** The STS stand-in served on the same endpoint. */
  sts: StsStandIn;
  close(): Promise<void>;
}

class KmsFault extends Error {
  readonly type: string;
  constructor(type: string, message: string) {
    super(message);
    this.type = type;
  }
}

function aad(context: unknown): Buffer {
  const ctx = (context ?? {}) as Record<string, string>;
  if (typeof ctx !== 'object' || Array.isArray(ctx)) throw new KmsFault('ValidationException', 'bad context');
  const sorted = Object.keys(ctx)
    .sort()
    .map((k) => [k, String(ctx[k])]);
  return Buffer.from(JSON.stringify(sorted));
}

/** Loads the master key from `keyFile`, creating it (mode 0600) on first start; in memory when absent. */
function loadMasterKey(keyFile?: string): Buffer {
  if (!keyFile) return randomBytes(32);
  if (existsSync(keyFile)) {
    const key = Buffer.from(readFileSync(keyFile, 'utf8').trim(), 'base64');
    if (key.length !== 32) throw new Error(`${keyFile} does not hold a 256-bit key`);
    return key;
  }
  const key = randomBytes(32);
  writeFileSync(keyFile, key.toString('base64'), { mode: 0o600, flag: 'wx' });
  return key;
}

async function readBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? (JSON.parse(text) as Record<string, unknown>) : {};
}

/** Starts the stand-in on 127.0.0.1 (port 0 picks a free one). */
export async function startKmsStandIn(
  options: { keyFile?: string; port?: number; credentials?: LocalCredentials } = {},
): Promise<KmsStandIn> {
  const master = loadMasterKey(options.keyFile);
  const credentials = options.credentials ?? loadLocalCredentials();
  const counts: Record<string, number> = {};
  const sts = createStsStandIn();

  const checkKey = (keyId: unknown) => {
    if (keyId !== LOCAL_KEY_ID && keyId !== 'local-master')
      throw new KmsFault('NotFoundException', `Key '${String(keyId)}' does not exist`);
  };

  const wrap = (plaintext: Buffer, context: unknown): Buffer => {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', master, iv);
    cipher.setAAD(aad(context));
    const ct = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return Buffer.concat([MAGIC, iv, cipher.getAuthTag(), ct]);
  };

  const unwrap = (blob: Buffer, context: unknown): Buffer => {
    if (blob.length < 32 || !blob.subarray(0, 4).equals(MAGIC))
      throw new KmsFault('InvalidCiphertextException', 'The ciphertext is invalid');
    try {
      const decipher = createDecipheriv('aes-256-gcm', master, blob.subarray(4, 16));
      decipher.setAAD(aad(context));
      decipher.setAuthTag(blob.subarray(16, 32));
      return Buffer.concat([decipher.update(blob.subarray(32)), decipher.final()]);
    } catch {
      throw new KmsFault('InvalidCiphertextException', 'The ciphertext or encryption context is invalid');
    }
  };

  const operations: Record<string, (body: Record<string, unknown>) => Record<string, unknown>> = {
    GenerateDataKey(body) {
      checkKey(body.KeyId);
      const bytes = body.KeySpec === 'AES_128' ? 16 : Number(body.NumberOfBytes ?? 32);
      const plaintext = randomBytes(bytes);
      return {
        KeyId: LOCAL_KEY_ID,
        Plaintext: plaintext.toString('base64'),
        CiphertextBlob: wrap(plaintext, body.EncryptionContext).toString('base64'),
      };
    },
    Encrypt(body) {
      checkKey(body.KeyId);
      const plaintext = Buffer.from(String(body.Plaintext ?? ''), 'base64');
      return {
        KeyId: LOCAL_KEY_ID,
        CiphertextBlob: wrap(plaintext, body.EncryptionContext).toString('base64'),
      };
    },
    Decrypt(body) {
      if (body.KeyId !== undefined) checkKey(body.KeyId);
      const blob = Buffer.from(String(body.CiphertextBlob ?? ''), 'base64');
      return {
        KeyId: LOCAL_KEY_ID,
        Plaintext: unwrap(blob, body.EncryptionContext).toString('base64'),
        EncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
      };
    },
    DescribeKey(body) {
      checkKey(body.KeyId);
      return {
        KeyMetadata: { KeyId: LOCAL_KEY_ID, Enabled: true, KeyState: 'Enabled', KeyUsage: 'ENCRYPT_DECRYPT' },
      };
    },
  };

  const server = createServer(
    requireGatewayCaller(credentials, async (req, res) => {
      const send = (status: number, payload: unknown) => {
        res.writeHead(status, { 'content-type': 'application/x-amz-json-1.1' });
        res.end(JSON.stringify(payload));
      };
      if (isStsRequest(req.headers['content-type'])) {
        const chunks: Buffer[] = [];
        for await (const chunk of req) chunks.push(chunk as Buffer);
        const { status, body } = sts.answer(Buffer.concat(chunks).toString('utf8'));
        counts.AssumeRole = (counts.AssumeRole ?? 0) + 1;
        res.writeHead(status, { 'content-type': 'text/xml' });
        res.end(body);
        return;
      }
      try {
        const target = String(req.headers['x-amz-target'] ?? '');
        const op = target.startsWith('TrentService.') ? target.slice('TrentService.'.length) : '';
        const handler = operations[op];
        if (!handler)
          throw new KmsFault('UnsupportedOperationException', `Unsupported operation '${target}'`);
        const result = handler(await readBody(req));
        counts[op] = (counts[op] ?? 0) + 1;
        send(200, result);
      } catch (error) {
        const fault =
          error instanceof KmsFault ? error : new KmsFault('ValidationException', 'Malformed request');
        send(400, { __type: fault.type, message: fault.message });
      }
    }),
  );
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    server,
    endpoint: `http://127.0.0.1:${port}`,
    credentials,
    counts,
    sts,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
