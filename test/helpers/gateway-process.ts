import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { expect } from '@jest/globals';

/**
 * `npm start` as a child process — the real local/start.ts, started the way package.json's
 * `start` script starts it — for tests that read its banner and its start-up failures, kill it
 * with SIGKILL or SIGTERM and start it again on the same data directory. The one helper every
 * test that spawns keygate uses.
 */
export interface GatewayProcess {
  child: ChildProcess;
  apiUrl: string;
  proxyUrl: string;
  /** The first admin's token (printed on the first start only). */
  token?: string;
  clientId?: string;
  output(): string;
  /** Ends the process with the signal and waits for it to be gone. */
  stop(signal: NodeJS.Signals): Promise<void>;
  /** Resolves with the exit code and signal once the process is gone. */
  exited(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** The Node arguments of `npm start` (package.json's `start` script minus `node`). */
export function startScriptArgs(): string[] {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
  const [node, ...args] = (pkg.scripts.start as string).split(/\s+/);
  if (node !== 'node') throw new Error(`unexpected start script: ${pkg.scripts.start}`);
  return args;
}

/** Spawns `npm start` on `dataDir` (API and proxy on free ports unless `env` says otherwise). */
function spawnGateway(dataDir: string, env: Record<string, string>, nodePath = process.execPath) {
  const child = spawn(nodePath, startScriptArgs(), {
    env: {
      ...process.env,
      NODE_OPTIONS: '',
      KEYGATE_DATA_DIR: dataDir,
      KEYGATE_API_PORT: '0',
      KEYGATE_PROXY_PORT: '0',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const collect = (d: Buffer) => {
    out += d.toString();
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, output: () => out, exit };
}

/** The banner's last line: everything before it (URLs, token) has been printed. */
const READY = /Ctrl-C stops keygate/;

export async function startGatewayProcess(
  dataDir: string,
  env: Record<string, string> = {},
): Promise<GatewayProcess> {
  const { child, output, exit } = spawnGateway(dataDir, env);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gateway did not start:\n${output()}`)), 60_000);
    const check = () => {
      if (!READY.test(output())) return;
      clearTimeout(timer);
      resolve();
    };
    child.stdout!.on('data', check);
    child.once('exit', () => {
      clearTimeout(timer);
      reject(new Error(`gateway exited during start:\n${output()}`));
    });
  });
  const out = output();
  return {
    child,
    apiUrl: /Core API\s+(http:\/\/\S+)/.exec(out)![1]!,
    proxyUrl: /Proxy\s+(http:\/\/[^/\s]+)/.exec(out)![1]!,
    token: /token\s+(kg_user_\S+)/.exec(out)?.[1],
    clientId: /clientId\s+(\S+)/.exec(out)?.[1],
    output,
    exited: () => exit,
    stop: async (signal) => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exit;
    },
  };
}

/**
 * Runs `npm start` expecting it to fail during start-up: resolves with its exit code and output.
 * `nodePath` runs it on another Node (the Node-version check).
 */
export async function failedGatewayStart(
  dataDir: string,
  env: Record<string, string> = {},
  nodePath?: string,
): Promise<{ code: number | null; output: string }> {
  const { child, output, exit } = spawnGateway(dataDir, env, nodePath);
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const { code } = await exit;
  clearTimeout(timer);
  return { code, output: output() };
}

/** One Core API call with a bearer token; the body parsed. */
export async function api(base: string, token: string, method: string, path: string, body?: unknown) {
  const res = await fetch(base + path, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as any) : undefined };
}

/** Target, vendor and consumer credentials, a GET rule under /v2/inventory/ and the proxy. */
export async function provisionProxy(
  base: string,
  token: string,
  clientId: string,
  vendorUrl: string,
  proxyKey: string,
) {
  const call = async (path: string, body: unknown) => {
    const res = await api(base, token, 'POST', `/clients/${clientId}${path}`, body);
    expect({ path, status: res.status, body: res.status === 201 ? undefined : res.body }).toEqual({
      path,
      status: 201,
      body: undefined,
    });
    return res.body;
  };
  const target = await call('/targets', {
    targetName: 'vendor',
    targetBaseURL: vendorUrl,
    targetRegion: 'us-east-1',
  });
  const vendor = await call('/credentials', {
    credentialType: 'target',
    credentialAuthType: 'apiKey',
    credentialName: 'vendor-key',
    credentialRegion: 'us-east-1',
    credentialSecret: { key: 'sk_live_vendor_secret_0123456789' },
  });
  const consumer = await call('/credentials', {
    credentialType: 'proxy',
    credentialAuthType: 'key',
    credentialName: 'consumer',
    credentialRegion: 'us-east-1',
    credentialSecret: { key: proxyKey },
  });
  await call(`/credentials/${consumer.credentialId}/rules`, {
    effect: 'allow',
    methods: ['GET'],
    path: { path: { pattern: '^/v2/inventory/.*' }, presence: 'must_exist' },
    priority: 10,
  });
  const proxy = await call('/proxies', {
    proxyName: 'audited',
    proxyRegion: 'us-east-1',
    proxyProxyCredentialId: consumer.credentialId,
    proxyTargetId: target.targetId,
    proxyTargetCredentialId: vendor.credentialId,
    proxyDefaultRuleEffect: 'deny',
  });
  return proxy.proxyId as string;
}
