import { createHash, generateKeyPairSync } from 'node:crypto';
import {
  BedrockRuntimeClient,
  InvokeModelCommand,
  InvokeModelWithResponseStreamCommand,
} from '@aws-sdk/client-bedrock-runtime';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { EventStreamCodec } from '@smithy/core/event-streams';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { createLocalJWKSet, decodeProtectedHeader, exportJWK, jwtVerify } from 'jose';
import type { ProxyOutcome } from '../../lambdas/data-plane/outcome.ts';
import type { StsStandIn } from '../../local/sts-standin.ts';
import { deferred } from '../helpers/fake-vendors.ts';
import { startTestGateway, type TestGateway } from '../helpers/local.ts';
import { captureLogs } from '../helpers/logs.ts';
import { type RecordingUpstream, send, startRecordingUpstream } from '../helpers/proxy-fixtures.ts';
import { sigV4Failure } from '../helpers/sigv4-verifier.ts';

// Refused roles and unreachable endpoints are provoked on purpose: their WARN/ERROR lines go to a capture, not the output.
const logs = captureLogs();
afterAll(() => logs.restore());

/**
 * awsSigV4 and jwt target credentials, end to end through the local stack: Core API → snapshot →
 * proxy → a fake vendor that verifies what it gets — a SigV4 signature re-computed with the AWS
 * SDK's own signer from the temporary credentials the STS stand-in issued, a JWT verified with
 * jose — and the real Bedrock Runtime client, pointed at the proxy, streaming an event stream back.
 */
const ROLE = 'arn:aws:iam::123456789012:role/keygate-bedrock';
const MODEL = 'anthropic.claude-3-haiku-20240307-v1:0';
const codec = new EventStreamCodec(
  (b) => Buffer.from(b).toString('utf8'),
  (s) => new Uint8Array(Buffer.from(s, 'utf8')),
);

let gw: TestGateway;
let upstream: RecordingUpstream;
let sts: StsStandIn;
let clientId: string;
let proxyKey: string;
let proxyCredentialId: string;
let targetId: string;
const outcomes: ProxyOutcome[] = [];

/** A Bedrock event-stream frame carrying one `chunk` whose bytes are `text`. */
function chunkFrame(text: string): Uint8Array {
  return codec.encode({
    headers: {
      ':event-type': { type: 'string', value: 'chunk' },
      ':content-type': { type: 'string', value: 'application/json' },
      ':message-type': { type: 'string', value: 'event' },
    },
    body: new Uint8Array(Buffer.from(JSON.stringify({ bytes: Buffer.from(text).toString('base64') }))),
  });
}

async function createCredential(body: Record<string, unknown>) {
  return gw.api('POST', `/clients/${clientId}/credentials`, {
    body: { credentialType: 'target', credentialName: 'signed', credentialRegion: 'us-east-1', ...body },
  });
}

/** A proxy (default allow) from the shared proxy credential to the upstream, with this target credential. */
async function proxyFor(targetCredentialId: string): Promise<string> {
  const res = await gw.api('POST', `/clients/${clientId}/proxies`, {
    body: {
      proxyName: `p-${targetCredentialId.slice(0, 8)}`,
      proxyRegion: 'us-east-1',
      proxyProxyCredentialId: proxyCredentialId,
      proxyTargetId: targetId,
      proxyTargetCredentialId: targetCredentialId,
      proxyDefaultRuleEffect: 'allow',
      proxyMaxRequestsPerMinute: 100_000,
    },
  });
  expect(res.status).toBe(201);
  return res.body.proxyId;
}

async function sigV4Proxy(secret: Record<string, unknown>): Promise<string> {
  const c = await createCredential({ credentialAuthType: 'awsSigV4', credentialSecret: secret });
  expect(c.status).toBe(201);
  return proxyFor(c.body.credentialId);
}

const lookup = (accessKeyId: string) => sts.issued.get(accessKeyId);

beforeAll(async () => {
  upstream = await startRecordingUpstream();
  gw = await startTestGateway({
    targetAllowlist: [`127.0.0.1:${upstream.port}`],
    proxyOptions: { onOutcome: (o) => outcomes.push(o) },
  });
  sts = gw.stack.services.kms.sts!;
  clientId = gw.admin.clientId;
  const p = await gw.api('POST', `/clients/${clientId}/credentials`, {
    body: {
      credentialType: 'proxy',
      credentialAuthType: 'apiKey',
      credentialName: 'agent',
      credentialRegion: 'us-east-1',
    },
  });
  expect(p.status).toBe(201);
  proxyKey = p.body.credentialSecret.key;
  proxyCredentialId = p.body.credentialId;
  const t = await gw.api('POST', `/clients/${clientId}/targets`, {
    body: {
      targetName: 'bedrock',
      targetBaseURL: upstream.url,
      targetRegion: 'us-east-1',
      targetDefaultRuleEffect: 'allow',
    },
  });
  expect(t.status).toBe(201);
  targetId = t.body.targetId;
});

afterAll(async () => {
  await gw?.close();
  await upstream?.close();
});

describe('awsSigV4 target credentials', () => {
  it('signs exactly what is sent with the assumed role; the STS stand-in saw the role and external id', async () => {
    const proxyId = await sigV4Proxy({
      roleArn: ROLE,
      externalId: 'tenant-42',
      service: 'bedrock',
      region: 'us-east-1',
    });
    const verdicts: Array<string | undefined> = [];
    upstream.respond = (req, res) => {
      void sigV4Failure(req, lookup, { service: 'bedrock', region: 'us-east-1' }).then((failure) => {
        verdicts.push(failure);
        res.writeHead(failure ? 403 : 200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ failure: failure ?? null }));
      });
    };
    const callsBefore = sts.calls.length;
    const body = JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], max_tokens: 5 });
    const res = await send(gw.stack.proxyUrl, {
      method: 'POST',
      path: `/api/${proxyId}/model/${encodeURIComponent(MODEL)}/invoke?trace=ENABLED&tag=a%20b&tag=c`,
      headers: {
        authorization: `Bearer ${proxyKey}`,
        'content-type': 'application/json',
        accept: 'application/json',
        'x-amzn-bedrock-trace': 'ENABLED',
        // A consumer's own signature parts are dropped, never forwarded nor signed.
        'x-amz-date': '20000101T000000Z',
        'x-amz-security-token': 'consumer-token',
      },
      body,
    });
    expect(res.json()).toEqual({ failure: null });
    expect(res.status).toBe(200);
    const got = upstream.received.at(-1)!;
    expect(got.url).toBe(`/model/${encodeURIComponent(MODEL)}/invoke?trace=ENABLED&tag=a%20b&tag=c`);
    expect(got.body.toString()).toBe(body);
    expect(got.headers['x-amz-security-token']).not.toBe('consumer-token');
    expect(String(got.headers.authorization)).toMatch(
      /SignedHeaders=accept;content-length;content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token;x-amzn-bedrock-trace,/,
    );
    expect(String(got.headers.authorization)).not.toContain(proxyKey);
    expect(sts.calls.slice(callsBefore)).toEqual([
      expect.objectContaining({ roleArn: ROLE, externalId: 'tenant-42', durationSeconds: 3600 }),
    ]);
    expect(sts.calls.at(-1)!.roleSessionName).toMatch(/^keygate-/);
    expect(verdicts).toEqual([undefined]);
  });

  it('assumes the role once for concurrent requests (single flight) and reuses the credentials', async () => {
    const proxyId = await sigV4Proxy({
      roleArn: ROLE,
      service: 'bedrock',
      region: 'eu-west-1',
      sessionName: 'agents',
    });
    const failures: Array<string | undefined> = [];
    upstream.respond = (req, res) => {
      void sigV4Failure(req, lookup, { service: 'bedrock', region: 'eu-west-1' }).then((f) => {
        failures.push(f);
        res.writeHead(f ? 403 : 200);
        res.end();
      });
    };
    const before = sts.calls.length;
    const statuses = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        send(gw.stack.proxyUrl, {
          method: i % 2 ? 'GET' : 'POST',
          path: `/api/${proxyId}/model/m${i}/invoke`,
          headers: { authorization: proxyKey, 'content-type': 'application/json' },
          body: i % 2 ? undefined : `{"i":${i}}`,
        }).then((r) => r.status),
      ),
    );
    const again = await send(gw.stack.proxyUrl, {
      path: `/api/${proxyId}/x`,
      headers: { authorization: proxyKey },
    });
    expect([...statuses, again.status]).toEqual(Array(13).fill(200));
    expect(failures).toEqual(Array(13).fill(undefined));
    expect(sts.calls.slice(before)).toEqual([expect.objectContaining({ roleSessionName: 'agents' })]);
  });

  it('answers 502 when STS refuses the role, and 400 for a query a signature cannot cover as sent', async () => {
    const refusedRole = 'arn:aws:iam::123456789012:role/not-trusted';
    sts.refusedRoles.add(refusedRole);
    const refused = await sigV4Proxy({ roleArn: refusedRole, service: 'bedrock', region: 'us-east-1' });
    upstream.received.length = 0;
    const r1 = await send(gw.stack.proxyUrl, {
      path: `/api/${refused}/x`,
      headers: { authorization: proxyKey },
    });
    expect(r1.status).toBe(502);
    expect(r1.json().code).toBe('proxy-upstream-auth-failed');
    expect(r1.text).not.toContain(refusedRole);
    const ok = await sigV4Proxy({ roleArn: ROLE, service: 'bedrock', region: 'us-east-1' });
    for (const query of ['a=b+c', 'a=%2f', 'a=b!']) {
      const r = await send(gw.stack.proxyUrl, {
        path: `/api/${ok}/x?${query}`,
        headers: { authorization: proxyKey },
      });
      expect(r.status).toBe(400);
    }
    expect(upstream.received).toHaveLength(0);
  });

  it('the real Bedrock Runtime client works through the proxy: bearer proxy key, streamed event stream unbuffered', async () => {
    const proxyId = await sigV4Proxy({ roleArn: ROLE, service: 'bedrock', region: 'us-east-1' });
    const firstSeen = deferred();
    const verdicts: Array<string | undefined> = [];
    upstream.respond = (req, res) => {
      void (async () => {
        const failure = await sigV4Failure(req, lookup, { service: 'bedrock', region: 'us-east-1' });
        verdicts.push(failure);
        if (failure) {
          res.writeHead(403, { 'content-type': 'application/json' });
          return res.end(JSON.stringify({ message: failure }));
        }
        if (req.url.endsWith('/invoke')) {
          res.writeHead(200, { 'content-type': 'application/json', 'x-amzn-bedrock-input-token-count': '3' });
          return res.end(JSON.stringify({ completion: 'plain' }));
        }
        res.writeHead(200, {
          'content-type': 'application/vnd.amazon.eventstream',
          'x-amzn-bedrock-content-type': 'application/json',
        });
        res.write(chunkFrame('{"delta":"Hel"}'));
        // The second frame goes only after the client has decoded the first: a buffered stream
        // would never get here (the test would time out instead of passing).
        await firstSeen.promise;
        res.end(chunkFrame('{"delta":"lo"}'));
      })();
    };
    const client = new BedrockRuntimeClient({
      region: 'us-east-1',
      endpoint: `${gw.stack.proxyUrl}/api/${proxyId}`,
      // The proxy key as Bedrock's API key (bearer), over HTTP/1.1 (the client's default for
      // Bedrock Runtime is HTTP/2, which the proxy's fronts do not speak).
      token: { token: proxyKey },
      authSchemePreference: ['httpBearerAuth'],
      requestHandler: new NodeHttpHandler(),
    });
    try {
      const plain = await client.send(
        new InvokeModelCommand({ modelId: MODEL, contentType: 'application/json', body: '{"prompt":"x"}' }),
      );
      expect(Buffer.from(plain.body!).toString()).toBe('{"completion":"plain"}');
      const out = await client.send(
        new InvokeModelWithResponseStreamCommand({
          modelId: MODEL,
          contentType: 'application/json',
          body: JSON.stringify({ prompt: 'hello' }),
        }),
      );
      const deltas: string[] = [];
      for await (const event of out.body!) {
        deltas.push(Buffer.from(event.chunk!.bytes!).toString());
        firstSeen.resolve();
      }
      expect(deltas).toEqual(['{"delta":"Hel"}', '{"delta":"lo"}']);
    } finally {
      client.destroy();
    }
    expect(verdicts).toEqual([undefined, undefined]);
    const streamed = upstream.received.at(-1)!;
    expect(streamed.url).toBe(`/model/${encodeURIComponent(MODEL)}/invoke-with-response-stream`);
    expect(JSON.stringify(streamed.headers)).not.toContain(proxyKey);
  });

  it('keeps the secrets out of answers, reads and outcomes (the request log)', async () => {
    const list = await gw.api('GET', `/clients/${clientId}/credentials`);
    const issued = [...sts.issued.values()];
    expect(issued.length).toBeGreaterThan(0);
    const everything = JSON.stringify(outcomes) + list.text;
    for (const c of issued) {
      expect(everything).not.toContain(c.secretAccessKey);
      expect(everything).not.toContain(c.sessionToken);
    }
    expect(JSON.stringify(outcomes)).not.toContain(proxyKey);
    expect(JSON.stringify(outcomes)).not.toMatch(/AWS4-HMAC-SHA256/);
    const sig = list.body.credentials.find(
      (c: any) => c.credentialAuthType === 'awsSigV4' && c.credentialSettings.externalIdSet,
    );
    expect(sig.credentialSettings).toEqual({
      roleArn: ROLE,
      service: 'bedrock',
      region: 'us-east-1',
      externalIdSet: true,
    });
    expect(list.text).not.toContain('tenant-42');
  });

  it('refuses malformed awsSigV4 secrets with clear 400s', async () => {
    const good = { roleArn: ROLE, service: 'bedrock', region: 'us-east-1' };
    const bad: Array<[Record<string, unknown>, RegExp]> = [
      [{ ...good, roleArn: 'arn:aws:iam::12345:role/x' }, /roleArn/],
      [{ ...good, roleArn: 'arn:aws:iam::123456789012:user/x' }, /roleArn/],
      [{ ...good, service: 'bedrock-runtime' }, /signs as service/],
      [{ ...good, service: 'Bedrock!' }, /service/],
      [{ ...good, region: 'mars-1' }, /region/],
      [{ ...good, externalId: 'x' }, /externalId/],
      [{ ...good, sessionName: 'has space' }, /sessionName/],
      [{ ...good, accessKeyId: 'AKIA…' }, /accessKeyId|Unrecognized/],
    ];
    for (const [secret, message] of bad) {
      const res = await createCredential({ credentialAuthType: 'awsSigV4', credentialSecret: secret });
      expect(res.status).toBe(400);
      expect(res.text).toMatch(message);
    }
    const asProxy = await createCredential({
      credentialType: 'proxy',
      credentialAuthType: 'awsSigV4',
      credentialSecret: good,
    });
    expect(asProxy.status).toBe(400);
    expect(asProxy.text).toMatch(/target credentials only/);
  });
});

describe('jwt target credentials', () => {
  const hsSecret = 'k'.repeat(16) + createHash('sha256').update('jwt').digest('hex');
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const pem = (k: { privateKey: import('node:crypto').KeyObject }) =>
    k.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const claims = { iss: 'svc@example.iam', aud: 'https://vendor.example/token', scope: 'read' };

  const cases = [
    { algorithm: 'HS256', key: hsSecret, verifyKey: new TextEncoder().encode(hsSecret) },
    { algorithm: 'RS256', key: pem(rsa), verifyKey: rsa.publicKey },
    { algorithm: 'ES256', key: pem(ec), verifyKey: ec.publicKey },
  ] as const;

  for (const c of cases)
    it(`${c.algorithm}: a JWT from the template, verified by jose, signed once per lifetime`, async () => {
      const cred = await createCredential({
        credentialAuthType: 'jwt',
        credentialSecret: {
          algorithm: c.algorithm,
          key: c.key,
          claims,
          ttlSeconds: 600,
          header: { kid: 'k1' },
        },
      });
      expect(cred.status).toBe(201);
      expect(cred.text).not.toContain(c.key.slice(40, 80));
      expect(cred.body.credentialSettings).toMatchObject({ algorithm: c.algorithm, claims, ttlSeconds: 600 });
      const proxyId = await proxyFor(cred.body.credentialId);
      upstream.received.length = 0;
      upstream.respond = (_req, res) => {
        res.writeHead(200);
        res.end('ok');
      };
      const statuses = await Promise.all(
        Array.from({ length: 4 }, () =>
          send(gw.stack.proxyUrl, {
            path: `/api/${proxyId}/v1/things`,
            headers: { authorization: proxyKey },
          }).then((r) => r.status),
        ),
      );
      expect(statuses).toEqual([200, 200, 200, 200]);
      const bearers = upstream.received.map((r) => String(r.headers.authorization));
      expect(new Set(bearers).size).toBe(1);
      const jwt = bearers[0]!.replace(/^Bearer /, '');
      const { payload, protectedHeader } = await jwtVerify(jwt, c.verifyKey, {
        algorithms: [c.algorithm],
        issuer: claims.iss,
        audience: claims.aud,
      });
      expect(protectedHeader).toMatchObject({ alg: c.algorithm, kid: 'k1', typ: 'JWT' });
      expect(payload.scope).toBe('read');
      expect(payload.exp! - payload.iat!).toBe(600);
      expect(payload.jti).toMatch(/^[0-9a-f-]{36}$/);
      expect(JSON.stringify(outcomes)).not.toContain(jwt);
    });

  it('exchanges the JWT at tokenUrl (RFC 7523 JWT bearer grant) and sends the access token', async () => {
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const jwks = createLocalJWKSet({ keys: [{ ...(await exportJWK(publicKey)), kid: 'svc', alg: 'ES256' }] });
    let exchanges = 0;
    const grants: string[] = [];
    upstream.respond = (req, res) => {
      if (req.url === '/oauth/token') {
        void (async () => {
          const form = new URLSearchParams(req.body.toString());
          grants.push(form.get('grant_type') ?? '');
          const assertion = form.get('assertion') ?? '';
          const ok = await jwtVerify(assertion, jwks, { audience: `${upstream.url}/oauth/token` }).then(
            () => decodeProtectedHeader(assertion).kid === 'svc',
            () => false,
          );
          exchanges++;
          res.writeHead(ok ? 200 : 400, { 'content-type': 'application/json' });
          res.end(
            JSON.stringify(
              ok ? { access_token: `at-${exchanges}`, expires_in: 3600 } : { error: 'invalid_grant' },
            ),
          );
        })();
        return;
      }
      res.writeHead(200);
      res.end(String(req.headers.authorization));
    };
    const cred = await createCredential({
      credentialAuthType: 'jwt',
      credentialSecret: {
        algorithm: 'ES256',
        key: privateKey.export({ type: 'sec1', format: 'pem' }).toString(),
        claims: { iss: 'svc', aud: `${upstream.url}/oauth/token` },
        header: { kid: 'svc' },
        tokenUrl: `${upstream.url}/oauth/token`,
      },
    });
    expect(cred.status).toBe(201);
    const proxyId = await proxyFor(cred.body.credentialId);
    const answers = await Promise.all(
      Array.from({ length: 3 }, () =>
        send(gw.stack.proxyUrl, { path: `/api/${proxyId}/data`, headers: { authorization: proxyKey } }),
      ),
    );
    expect(answers.map((a) => a.text)).toEqual(Array(3).fill('Bearer at-1'));
    expect(exchanges).toBe(1);
    expect(grants).toEqual(['urn:ietf:params:oauth:grant-type:jwt-bearer']);
  });

  it('a refused token (401) is replaced once: an exchanged token revoked early, then a JWT older than the vendor takes', async () => {
    // Exchanged: the vendor revokes at-1 early; the proxy exchanges once more and retries once.
    let exchanges = 0;
    const revoked = new Set<string>();
    upstream.respond = (req, res) => {
      if (req.url === '/oauth/token') {
        exchanges++;
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ access_token: `at-${exchanges}`, expires_in: 3600 }));
        return;
      }
      const bearer = String(req.headers.authorization);
      res.writeHead(revoked.has(bearer) ? 401 : 200);
      res.end(bearer);
    };
    const exchanged = await createCredential({
      credentialAuthType: 'jwt',
      credentialSecret: {
        algorithm: 'HS256',
        key: hsSecret,
        claims: { iss: 'svc' },
        tokenUrl: `${upstream.url}/oauth/token`,
      },
    });
    const viaExchange = await proxyFor(exchanged.body.credentialId);
    const call = (proxyId: string) =>
      send(gw.stack.proxyUrl, { path: `/api/${proxyId}/data`, headers: { authorization: proxyKey } });
    expect((await call(viaExchange)).text).toBe('Bearer at-1');
    revoked.add('Bearer at-1');
    upstream.received.length = 0;
    const retried = await call(viaExchange);
    expect([retried.status, retried.text]).toEqual([200, 'Bearer at-2']);
    expect(upstream.received.map((r) => `${r.url} ${r.headers.authorization ?? ''}`)).toEqual([
      '/data Bearer at-1',
      '/oauth/token ',
      '/data Bearer at-2',
    ]);
    expect((await call(viaExchange)).text).toBe('Bearer at-2');
    expect(exchanges).toBe(2);

    // Sent as is: a vendor that refuses the first JWT it sees (as one that wants a fresher `iat`
    // would) gets a freshly signed one — a new jti — and the fresh one is what is cached.
    let firstJwt: string | undefined;
    upstream.respond = (req, res) => {
      const jwt = String(req.headers.authorization).replace(/^Bearer /, '');
      firstJwt ??= jwt;
      res.writeHead(jwt === firstJwt ? 401 : 200);
      res.end(jwt);
    };
    const direct = await createCredential({
      credentialAuthType: 'jwt',
      credentialSecret: { algorithm: 'HS256', key: hsSecret, claims: { iss: 'svc' } },
    });
    const viaBearer = await proxyFor(direct.body.credentialId);
    upstream.received.length = 0;
    const first = await call(viaBearer);
    expect(first.status).toBe(200);
    expect(upstream.received).toHaveLength(2);
    const [refused, replacement] = upstream.received.map((r) =>
      String(r.headers.authorization).replace(/^Bearer /, ''),
    );
    expect(replacement).not.toBe(refused);
    const claimsOf = async (jwt: string) =>
      (await jwtVerify(jwt, new TextEncoder().encode(hsSecret), { algorithms: ['HS256'] })).payload;
    expect((await claimsOf(replacement!)).jti).not.toBe((await claimsOf(refused!)).jti);
    expect((await call(viaBearer)).text).toBe(replacement);
    expect(upstream.received).toHaveLength(3);

    // A vendor that refuses every token: one retry, then its 401 goes back to the consumer.
    upstream.respond = (_req, res) => {
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end('{"error":"unauthorized"}');
    };
    upstream.received.length = 0;
    const refusedAll = await call(viaBearer);
    expect(refusedAll.status).toBe(401);
    expect(refusedAll.text).toBe('{"error":"unauthorized"}');
    expect(upstream.received).toHaveLength(2);
  });

  it('a new key (PUT of the secret) signs the very next request; a bad one is refused and changes nothing', async () => {
    const oldKey = `${hsSecret}-old`;
    const newKey = `${hsSecret}-new`;
    const cred = await createCredential({
      credentialAuthType: 'jwt',
      credentialSecret: { algorithm: 'HS256', key: oldKey, claims: { sub: 'rot' } },
    });
    const credentialId = cred.body.credentialId;
    const proxyId = await proxyFor(credentialId);
    upstream.respond = (req, res) => {
      res.writeHead(200);
      res.end(String(req.headers.authorization).replace(/^Bearer /, ''));
    };
    const call = () =>
      send(gw.stack.proxyUrl, { path: `/api/${proxyId}/r`, headers: { authorization: proxyKey } }).then(
        (r) => r.text,
      );
    await expect(jwtVerify(await call(), new TextEncoder().encode(oldKey))).resolves.toBeDefined();
    const bad = await gw.api('PUT', `/clients/${clientId}/credentials/${credentialId}`, {
      body: { credentialSecret: { algorithm: 'ES256', key: newKey, claims: { sub: 'rot' } } },
    });
    expect(bad.status).toBe(400);
    await expect(jwtVerify(await call(), new TextEncoder().encode(oldKey))).resolves.toBeDefined();
    const put = await gw.api('PUT', `/clients/${clientId}/credentials/${credentialId}`, {
      body: { credentialSecret: { algorithm: 'HS256', key: newKey, claims: { sub: 'rot' } } },
    });
    expect(put.status).toBe(200);
    await expect(jwtVerify(await call(), new TextEncoder().encode(newKey))).resolves.toBeDefined();
  });

  it('refuses bad algorithms, bad PEMs, key/algorithm mismatches and unsafe token URLs with 400s', async () => {
    const base = { claims: { iss: 'x' } };
    const rsaPem = pem(rsa);
    const bad: Array<[Record<string, unknown>, RegExp]> = [
      [{ ...base, algorithm: 'none', key: hsSecret }, /algorithm/],
      [{ ...base, algorithm: 'HS512', key: hsSecret }, /algorithm/],
      [{ ...base, algorithm: 'HS256', key: 'short' }, /at least 32 bytes/],
      [
        { ...base, algorithm: 'RS256', key: '-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----' },
        /not a PEM private key/,
      ],
      [
        {
          ...base,
          algorithm: 'RS256',
          key: rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
        },
        /not a PEM private key/,
      ],
      [{ ...base, algorithm: 'ES256', key: rsaPem }, /EC key on P-256/],
      [{ ...base, algorithm: 'RS256', key: pem(ec) }, /RSA key/],
      [{ ...base, algorithm: 'HS256', key: hsSecret, claims: { exp: 1 } }, /filled per token/],
      [{ ...base, algorithm: 'HS256', key: hsSecret, header: { alg: 'none' } }, /not settable/],
      [{ ...base, algorithm: 'HS256', key: hsSecret, tokenUrl: 'http://169.254.169.254/token' }, /tokenUrl/],
    ];
    for (const [secret, message] of bad) {
      const res = await createCredential({ credentialAuthType: 'jwt', credentialSecret: secret });
      expect(res.status).toBe(400);
      expect(res.text).toMatch(message);
      expect(res.text).not.toContain('BEGIN');
    }
  });

  it('documents both secret shapes in the OpenAPI document', async () => {
    const doc = await gw.api('GET', '/openapi.json');
    const text = doc.text;
    for (const field of [
      'roleArn',
      'externalId',
      'sessionName',
      'ttlSeconds',
      'tokenUrl',
      'awsSigV4',
      'RS256',
    ])
      expect(text).toContain(field);
  });
});
