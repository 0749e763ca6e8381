import type { Deps } from '../../lambdas/shared/deps.ts';
import type { TestGateway } from './local.ts';
import { type RecordingUpstream, send } from './proxy-fixtures.ts';

/**
 * Helpers of the integrity tests: a store seam that fails the N-th DynamoDB call, a fixture of one
 * working proxy, and probes that ask the data plane whether something still works.
 */

type Sender = { send: (command: unknown, ...rest: unknown[]) => Promise<unknown> };

/** A DynamoDB 5xx as the SDK raises it (the Core API answers 503). */
function storeFault(): Error {
  return Object.assign(new Error('injected store fault'), {
    name: 'InternalServerError',
    $fault: 'server',
    $metadata: { httpStatusCode: 500 },
  });
}

/**
 * Fails the `n`-th DynamoDB call made through `deps` (every table): `before` fails it without
 * sending, `after` sends it and then fails (the write happened; the caller never learns it).
 */
export function failNthStoreCall(deps: Deps, n: number, mode: 'before' | 'after') {
  const clients = new Set<Sender>([
    deps.home.ddb as unknown as Sender,
    ...Object.values(deps.cells).map((c) => c.ddb as unknown as Sender),
  ]);
  let calls = 0;
  const originals = new Map<Sender, Sender['send']>();
  for (const client of clients) {
    const original = client.send.bind(client);
    originals.set(client, client.send);
    client.send = async (command: unknown, ...rest: unknown[]) => {
      calls++;
      if (calls !== n) return original(command, ...rest);
      if (mode === 'after') await original(command, ...rest);
      throw storeFault();
    };
  }
  return {
    /** How many store calls were made while armed. */
    calls: () => calls,
    disarm() {
      for (const [client, send] of originals) client.send = send;
    },
  };
}

export interface ProxyFixture {
  proxyId: string;
  proxyCredentialId: string;
  targetCredentialId: string;
  targetId: string;
  key: string;
  /** The vendor secret the target credential injects (X-Vendor-Key). */
  vendorSecret: string;
}

function expectStatus(res: { status: number; text: string }, ...ok: number[]) {
  if (!ok.includes(res.status)) throw new Error(`unexpected ${res.status}: ${res.text}`);
}

/** A proxy that forwards everything (both defaults allow) to the recording upstream. */
export async function createProxyFixture(
  gw: TestGateway,
  upstream: RecordingUpstream,
  options: { clientId?: string; defaults?: 'allow' | 'deny' } = {},
): Promise<ProxyFixture> {
  const c = `/clients/${options.clientId ?? gw.admin.clientId}`;
  const defaults = options.defaults ?? 'allow';
  const pc = await gw.api('POST', `${c}/credentials`, {
    body: {
      credentialType: 'proxy',
      credentialAuthType: 'apiKey',
      credentialName: 'consumer',
      credentialRegion: 'us-east-1',
      credentialSecret: {},
    },
  });
  expectStatus(pc, 201);
  const vendorSecret = `vendor-${Math.random().toString(36).slice(2)}`;
  const tc = await gw.api('POST', `${c}/credentials`, {
    body: {
      credentialType: 'target',
      credentialAuthType: 'apiKey',
      credentialName: 'vendor',
      credentialRegion: 'us-east-1',
      credentialSecret: { key: vendorSecret, headerName: 'X-Vendor-Key' },
    },
  });
  expectStatus(tc, 201);
  const target = await gw.api('POST', `${c}/targets`, {
    body: {
      targetName: 'vendor',
      targetBaseURL: upstream.url,
      targetRegion: 'us-east-1',
      targetDefaultRuleEffect: defaults,
    },
  });
  expectStatus(target, 201);
  const proxy = await gw.api('POST', `${c}/proxies`, {
    body: {
      proxyName: 'p',
      proxyRegion: 'us-east-1',
      proxyProxyCredentialId: pc.body.credentialId,
      proxyTargetId: target.body.targetId,
      proxyTargetCredentialId: tc.body.credentialId,
      proxyDefaultRuleEffect: defaults,
    },
  });
  expectStatus(proxy, 201);
  return {
    proxyId: proxy.body.proxyId,
    proxyCredentialId: pc.body.credentialId,
    targetCredentialId: tc.body.credentialId,
    targetId: target.body.targetId,
    key: pc.body.credentialSecret.key,
    vendorSecret,
  };
}

/**
 * Sends one proxied call and tells whether it reached the vendor, and with which vendor secret.
 */
export async function probe(
  proxyUrl: string,
  upstream: RecordingUpstream,
  proxyId: string,
  key: string,
  path = '/probe',
): Promise<{ status: number; reached: boolean; vendorKey?: string }> {
  const before = upstream.received.length;
  const res = await send(proxyUrl, {
    path: `/api/${proxyId}${path}`,
    headers: { authorization: `Bearer ${key}` },
  });
  const got = upstream.received.slice(before).find((r) => r.url.startsWith(path));
  return {
    status: res.status,
    reached: got !== undefined,
    vendorKey: got ? String(got.headers['x-vendor-key'] ?? '') : undefined,
  };
}
