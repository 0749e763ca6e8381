import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ListStreamsCommand } from '@aws-sdk/client-kinesis';
import { DescribeKeyCommand } from '@aws-sdk/client-kms';
import { ScanCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { SignatureV4 } from '@smithy/signature-v4';
import { createKmsClient } from '../../lambdas/crypto/kms-client.ts';
import { parseTargetAllowlist } from '../../lambdas/net/target-allowlist.ts';
import { createDocumentClient } from '../../lambdas/storage/dynamodb-client.ts';
import { createKinesisClient } from '../../lambdas/telemetry/kinesis-client.ts';
import { CREDENTIALS_FILE, type LocalCredentials, loadLocalCredentials } from '../../local/caller-auth.ts';
import { LOCAL_KEY_ID } from '../../local/kms-server.ts';
import { startTestGateway, type TestGateway } from '../helpers/local.ts';
import { captureLogs } from '../helpers/logs.ts';
import { send, startProxyFront, writeSnapshot } from '../helpers/proxy-fixtures.ts';

// Refused upstream calls are provoked on purpose here: their ERROR lines go to a capture.
const logs = captureLogs();
afterAll(() => logs.restore());

// Issue 10, item 4: a local stack nobody else can enter. The escalation it fixes: a non-admin user
// with `KEYGATE_TARGET_ALLOWLIST=127.0.0.1` pointed targets at the embedded DynamoDB and KMS, and
// through its own proxy read every tenant's items. Now (1) keygate's own ports are never targets,
// at save and at connect time, whatever the allowlist says, and (2) the stand-ins refuse every
// caller that does not sign with the data directory's key — the proxy's call out included.

let gw: TestGateway;
let dataDir: string;
let endpoints: Record<'dynamodb' | 'kinesis' | 'kms', string>;
let ownPorts: number[];

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'kg-isolation-'));
  gw = await startTestGateway({
    dataDir,
    telemetryPoller: false,
    targetAllowlist: ['127.0.0.1', 'localhost', '[::1]', '0.0.0.0'],
  });
  const s = gw.stack.services;
  endpoints = { dynamodb: s.dynamodbEndpoint, kinesis: s.kinesisEndpoint, kms: s.kms.endpoint };
  ownPorts = [...s.ports, Number(new URL(gw.stack.apiUrl).port), Number(new URL(gw.stack.proxyUrl).port)];
});

afterAll(async () => {
  await gw.close();
  rmSync(dataDir, { recursive: true, force: true });
});

const REGION = 'us-east-1';
const WRONG: LocalCredentials = { accessKeyId: 'local', secretAccessKey: 'local' };

/** A request signed with SigV4 by `credentials`, as an SDK would send it. */
async function signed(
  endpoint: string,
  service: string,
  target: string,
  body: string,
  credentials: LocalCredentials,
) {
  const url = new URL(endpoint);
  const signer = new SignatureV4({
    credentials,
    region: REGION,
    service,
    sha256: class {
      private h;
      constructor(secret?: unknown) {
        this.h = secret === undefined ? createHash('sha256') : createHmac('sha256', secret as string);
      }
      update(d: string | Uint8Array) {
        this.h.update(d);
      }
      async digest() {
        return this.h.digest();
      }
    } as never,
  });
  const request = await signer.sign({
    method: 'POST',
    protocol: 'http:',
    hostname: url.hostname,
    port: Number(url.port),
    path: '/',
    query: {},
    headers: {
      host: url.host,
      'content-type': `application/x-amz-json-${service === 'dynamodb' ? '1.0' : '1.1'}`,
      'x-amz-target': target,
    },
    body,
  });
  return request.headers as Record<string, string>;
}

const services = [
  ['dynamodb', 'dynamodb', 'DynamoDB_20120810.ListTables', '{}'],
  ['kinesis', 'kinesis', 'Kinesis_20131202.ListStreams', '{}'],
  ['kms', 'kms', 'TrentService.DescribeKey', JSON.stringify({ KeyId: LOCAL_KEY_ID })],
] as const;

describe('the stand-ins answer only this gateway', () => {
  it.each(services)(
    '%s: a raw unsigned request gets 403 and nothing else',
    async (name, _svc, target, body) => {
      const res = await fetch(endpoints[name], {
        method: 'POST',
        headers: { 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': target },
        body,
      });
      expect(res.status).toBe(403);
      expect(await res.json()).toEqual({ __type: 'AccessDeniedException', message: 'Access denied' });
    },
  );

  it.each(services)(
    '%s: a signature by another key, or a tampered signed body, gets 403',
    async (name, svc, target, body) => {
      const good = gw.stack.services.credentials;
      for (const credentials of [
        WRONG,
        { accessKeyId: good.accessKeyId, secretAccessKey: `${good.secretAccessKey}x` },
      ]) {
        const headers = await signed(endpoints[name], svc, target, body, credentials);
        expect((await fetch(endpoints[name], { method: 'POST', headers, body })).status).toBe(403);
      }
      // A valid signature over one body does not carry over to another.
      const headers = await signed(endpoints[name], svc, target, body, good);
      expect((await fetch(endpoints[name], { method: 'POST', headers, body: `${body} ` })).status).toBe(403);
      // The control: the same request, untampered, is served.
      expect((await fetch(endpoints[name], { method: 'POST', headers, body })).status).toBe(200);
    },
  );

  it('SDK clients with the wrong secret are refused by each stand-in; the gateway key works', async () => {
    const opts = (endpoint: string, credentials: LocalCredentials) => ({
      region: REGION,
      endpoint,
      credentials,
      maxAttempts: 1,
    });
    const attempts = (credentials: LocalCredentials) => [
      createDocumentClient(opts(endpoints.dynamodb, credentials)).send(
        new ScanCommand({ TableName: 'keygate' }),
      ),
      createKinesisClient(opts(endpoints.kinesis, credentials)).send(new ListStreamsCommand({})),
      createKmsClient(opts(endpoints.kms, credentials)).send(new DescribeKeyCommand({ KeyId: LOCAL_KEY_ID })),
    ];
    for (const outcome of await Promise.allSettled(attempts(WRONG))) {
      expect(outcome.status).toBe('rejected');
      expect((outcome as PromiseRejectedResult).reason).toMatchObject({ $metadata: { httpStatusCode: 403 } });
    }
    for (const outcome of await Promise.allSettled(attempts(gw.stack.services.credentials)))
      expect(outcome.status).toBe('fulfilled');
  });

  it('keeps the key in the 0700 data dir, mode 0600, and reuses it across restarts', () => {
    expect(statSync(dataDir).mode & 0o777).toBe(0o700);
    expect(statSync(join(dataDir, CREDENTIALS_FILE)).mode & 0o777).toBe(0o600);
    // What the next start loads: the same key (the stand-ins' data stays reachable to the gateway).
    const { accessKeyId, secretAccessKey } = gw.stack.services.credentials;
    expect(loadLocalCredentials(dataDir)).toEqual({ accessKeyId, secretAccessKey });
  });
});

describe("the escalation: a non-admin user aiming targets at keygate's own services", () => {
  let mallory: string;
  let clientId: string;
  const hosts = [
    '127.0.0.1',
    'localhost',
    '127.1',
    '[::1]',
    '0.0.0.0',
    '2130706433',
    '0x7f000001',
    '127.0.0.1.',
  ];

  beforeAll(async () => {
    const user = await gw.api('POST', '/users', { body: { userName: 'mallory' } });
    expect(user.status).toBe(201);
    mallory = user.body.token;
    const client = await gw.api('POST', '/clients', { token: mallory, body: { clientName: 'mallory-co' } });
    expect(client.status).toBe(201);
    clientId = client.body.clientId;
  });

  it('refuses them at save time, with bare hosts and with the exact host:port allowlisted', async () => {
    const config = gw.stack.deps.config;
    const original = config.targetAllowlist;
    try {
      for (const allowlist of [
        original,
        parseTargetAllowlist(hosts.flatMap((h) => ownPorts.map((p) => `${h}:${p}`))),
      ]) {
        config.targetAllowlist = allowlist;
        for (const port of ownPorts)
          for (const host of hosts) {
            const res = await gw.api('POST', `/clients/${clientId}/targets`, {
              token: mallory,
              body: {
                targetName: `t${port}`,
                targetBaseURL: `http://${host}:${port}/`,
                targetRegion: REGION,
              },
            });
            expect([res.status, host, port]).toEqual([400, host, port]);
            expect(res.text).toMatch(/keygate's own services/);
          }
      }
    } finally {
      config.targetAllowlist = original;
    }
  });

  it('refuses them at connect time when forced past save (every loopback spelling, all allowlisted)', async () => {
    const everything = parseTargetAllowlist(hosts.flatMap((h) => ownPorts.map((p) => `${h}:${p}`)));
    const config = { ...gw.stack.deps.config, targetAllowlist: everything };
    const proxy = await startProxyFront({ ...gw.stack.deps, config });
    try {
      for (const port of ownPorts)
        for (const host of hosts) {
          const p = await writeSnapshot(gw.stack.deps, {
            targetBaseURL: `http://${host}:${port}`,
            proxyDefaultRuleEffect: 'allow',
            targetDefaultRuleEffect: 'allow',
          });
          const res = await send(proxy.url, {
            method: 'POST',
            path: `/api/${p.proxyId}/`,
            headers: { authorization: p.proxyKey, 'x-amz-target': 'DynamoDB_20120810.Scan' },
            body: '{"TableName":"keygate"}',
          });
          expect([res.status, res.headers['keygate-proxy-code'], host, port]).toEqual([
            502,
            'proxy-target-refused',
            host,
            port,
          ]);
        }
    } finally {
      await proxy.close();
    }
  });

  it('and were the port check gone, each stand-in still refuses the proxy (it holds no key)', async () => {
    // Defence in depth: a proxy whose config forgot keygate's own ports and allowlists the stand-ins.
    const entries = Object.values(endpoints).map((e) => new URL(e).host);
    const config = { ...gw.stack.deps.config, targetAllowlist: parseTargetAllowlist(entries), ownPorts: [] };
    const proxy = await startProxyFront({ ...gw.stack.deps, config });
    try {
      for (const [name, , target, body] of services) {
        const p = await writeSnapshot(gw.stack.deps, {
          targetBaseURL: endpoints[name],
          proxyDefaultRuleEffect: 'allow',
          targetDefaultRuleEffect: 'allow',
        });
        const res = await send(proxy.url, {
          method: 'POST',
          path: `/api/${p.proxyId}/`,
          headers: {
            authorization: p.proxyKey,
            'x-amz-target': target,
            'content-type': 'application/x-amz-json-1.1',
          },
          body,
        });
        expect([name, res.status]).toEqual([name, 403]);
        expect(JSON.parse(res.text)).toEqual({ __type: 'AccessDeniedException', message: 'Access denied' });
      }
    } finally {
      await proxy.close();
    }
  });
});

describe('another OS user on this machine', () => {
  const root = process.getuid?.() === 0;
  const user = `kgiso${randomBytes(3).toString('hex')}`;
  let scriptDir: string;

  beforeAll(() => {
    if (!root) return;
    execFileSync('useradd', ['--no-create-home', '--shell', '/usr/sbin/nologin', user]);
    scriptDir = mkdtempSync(join(tmpdir(), 'kg-other-user-'));
    chmodSync(scriptDir, 0o755);
    // The other user runs its own copy of this Node: the project's may sit in a checkout that user
    // cannot enter (a clone under a 0700 temp dir), which would test the checkout's mode instead.
    copyFileSync(process.execPath, join(scriptDir, 'node'));
    chmodSync(join(scriptDir, 'node'), 0o755);
  });
  afterAll(() => {
    if (!root) return;
    spawnSync('userdel', [user]);
    rmSync(scriptDir, { recursive: true, force: true });
  });

  (root ? it : it.skip)(
    'can neither read the data dir nor get anything but 403 from the stand-ins',
    async () => {
      if (!root) {
        console.warn('skipped: the other-OS-user test needs root (useradd, runuser)');
        return;
      }
      // The other user's attempt: read the key (or anything) in the data dir, then call each stand-in.
      const script = join(scriptDir, 'attempt.mjs');
      writeFileSync(
        script,
        `import { readdirSync, readFileSync } from 'node:fs';
const [dataDir, keyFile, ...urls] = process.argv.slice(2);
const out = { files: [] };
for (const [what, f] of [['list', () => readdirSync(dataDir)], ['key', () => readFileSync(keyFile, 'utf8')]]) {
  try { f(); out.files.push(what + ':read'); } catch (e) { out.files.push(what + ':' + e.code); }
}
out.statuses = [];
for (const url of urls) {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/x-amz-json-1.1',
    'x-amz-target': 'DynamoDB_20120810.Scan', authorization: 'AWS4-HMAC-SHA256 Credential=local/20250101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=' + '0'.repeat(64) },
    body: '{"TableName":"keygate"}' });
  out.statuses.push(res.status);
}
console.log(JSON.stringify(out));
`,
        { mode: 0o644 },
      );
      // Asynchronously: the stand-ins it calls run in this very process.
      const result = await new Promise<{ stdout: string; stderr: string }>((resolve) => {
        const args = [dataDir, join(dataDir, CREDENTIALS_FILE), ...Object.values(endpoints)];
        execFile(
          'runuser',
          ['-u', user, '--', join(scriptDir, 'node'), script, ...args],
          { encoding: 'utf8', env: { PATH: process.env.PATH ?? '', HOME: '/tmp' }, timeout: 20_000 },
          (_error, stdout, stderr) => resolve({ stdout, stderr }),
        );
      });
      expect(result.stderr).toBe('');
      const out = JSON.parse(result.stdout) as { files: string[]; statuses: number[] };
      expect(out.files).toEqual(['list:EACCES', 'key:EACCES']);
      expect(out.statuses).toEqual([403, 403, 403]);
    },
  );
});
