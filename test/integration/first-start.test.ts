import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from '@jest/globals';
import { nodeIsRecentEnough } from '../../local/check-node.mjs';
import {
  api,
  failedGatewayStart,
  type GatewayProcess,
  provisionProxy,
  startGatewayProcess,
} from '../helpers/gateway-process.ts';
import { startRecordingUpstream } from '../helpers/proxy-fixtures.ts';

/**
 * A first start that explains itself (docs/first-start.md): each start-up failure a user can fix
 * is ONE line saying what to do — no stack trace — and a non-zero exit; the banner says what to do
 * next; the target allowlist is changed by a restart that keeps the data. The real `npm start`
 * (package.json's script) is spawned every time.
 */
const dir = () => join(mkdtempSync(join(tmpdir(), 'kg-first-')), 'data');
const running: GatewayProcess[] = [];
afterAll(async () => {
  for (const gw of running) await gw.stop('SIGKILL');
});

/** The output is exactly one line, the given message, with no trace. */
function expectOneLine(output: string, message: RegExp) {
  const lines = output.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(message);
  expect(output).not.toMatch(/^\s+at /m);
}

function listenOnFreePort(): Promise<Server> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}
const portOf = (server: Server) => (server.address() as { port: number }).port;

/** A Node older than 22.18 on this machine (the system one, when npm's is newer), if any. */
function oldNode(): string | undefined {
  for (const candidate of ['/usr/bin/node', '/usr/local/bin/node']) {
    try {
      const version = execFileSync(candidate, ['--version'], { encoding: 'utf8' }).trim().slice(1);
      if (!nodeIsRecentEnough(version)) return candidate;
    } catch {
      // not installed there
    }
  }
  return undefined;
}

describe('start-up failures: one line saying what to do', () => {
  it.each(['KEYGATE_API_PORT', 'KEYGATE_PROXY_PORT'])(
    'a port in use (%s)',
    async (setting) => {
      const busy = await listenOnFreePort();
      try {
        const port = portOf(busy);
        const { code, output } = await failedGatewayStart(dir(), { [setting]: String(port) });
        expect(code).toBe(1);
        expectOneLine(
          output,
          new RegExp(
            `^keygate could not start: port ${port} \\(${setting}\\) is already in use — by another keygate\\? ` +
              `Stop it \\(Ctrl-C in its terminal\\), or start with ${setting}=<a free port>$`,
          ),
        );
      } finally {
        busy.close();
      }
    },
    90_000,
  );

  it('an alias port in use, and a malformed KEYGATE_ALIAS_PORTS', async () => {
    const busy = await listenOnFreePort();
    try {
      const port = portOf(busy);
      const taken = await failedGatewayStart(dir(), { KEYGATE_ALIAS_PORTS: `stripe:${port}` });
      expect(taken.code).toBe(1);
      expectOneLine(
        taken.output,
        new RegExp(
          `^keygate could not start: port ${port} \\(KEYGATE_ALIAS_PORTS\\) is already in use .* ` +
            'or start with KEYGATE_ALIAS_PORTS=stripe:<a free port>$',
        ),
      );
    } finally {
      busy.close();
    }
    const malformed = await failedGatewayStart(dir(), { KEYGATE_ALIAS_PORTS: 'Stripe=4011' });
    expect(malformed.code).toBe(2);
    expectOneLine(malformed.output, /^KEYGATE_ALIAS_PORTS: 'Stripe=4011' is not alias:port .*stripe:4011$/);
  }, 90_000);

  it('a data directory another running keygate holds; the running one is unharmed', async () => {
    const dataDir = dir();
    const first = await startGatewayProcess(dataDir);
    running.push(first);
    const { code, output } = await failedGatewayStart(dataDir);
    expect(code).toBe(1);
    expectOneLine(
      output,
      new RegExp(
        `^keygate could not start: the data directory ${dataDir} is in use by another running keygate: ` +
          'stop that one \\(Ctrl-C in its terminal\\), or start with KEYGATE_DATA_DIR=<another directory>$',
      ),
    );
    const me = await api(first.apiUrl, first.token!, 'GET', '/users/me');
    expect(me.status).toBe(200);
  }, 90_000);

  it('which Node versions run keygate', () => {
    for (const v of ['20.20.2', '22.6.0', '22.17.1', '23.5.0'])
      expect([v, nodeIsRecentEnough(v)]).toEqual([v, false]);
    for (const v of ['22.18.0', '22.23.3', '23.6.0', '24.0.0'])
      expect([v, nodeIsRecentEnough(v)]).toEqual([v, true]);
  });

  const old = oldNode();
  (old ? it : it.skip)(`a Node older than 22.18 (${old ?? 'none on this machine'})`, async () => {
    const { code, output } = await failedGatewayStart(dir(), {}, old);
    expect(code).toBe(1);
    expectOneLine(
      output,
      /^keygate needs Node\.js 22\.18 or later \(this is Node v\d+\.\d+\.\d+\): run `npm ci` .* or install Node 22/,
    );
  });
});

describe('the banner and the allowlist', () => {
  it('prints the next step, which works as printed', async () => {
    const probe = await listenOnFreePort();
    const aliasPort = portOf(probe);
    await new Promise((resolve) => probe.close(resolve));
    const gw = await startGatewayProcess(dir(), { KEYGATE_ALIAS_PORTS: `stripe:${aliasPort}` });
    running.push(gw);
    const out = gw.output();
    expect(out).toContain(
      `Alias     http://127.0.0.1:${aliasPort}/…  → every request goes to the proxy aliased 'stripe'`,
    );
    expect(out).toContain('KEYGATE_TARGET_ALLOWLIST=127.0.0.1:8080');
    const snippet = /Next step.*\n\s+(curl .*)\n/.exec(out)?.[1];
    expect(snippet).toContain(gw.apiUrl);
    const me = JSON.parse(execFileSync('sh', ['-c', snippet!], { encoding: 'utf8' }));
    expect(me.clients).toEqual([expect.objectContaining({ clientId: gw.clientId })]);
  }, 90_000);

  it('a private target without the allowlist says what to set; a restart with it keeps the data', async () => {
    const vendor = await startRecordingUpstream();
    const entry = `127.0.0.1:${vendor.port}`;
    const hint = `restart keygate with KEYGATE_TARGET_ALLOWLIST=${entry}`;
    const dataDir = dir();
    try {
      let gw = await startGatewayProcess(dataDir);
      const { token, clientId } = gw as Required<GatewayProcess>;
      const proxyKey = `kg_test_${randomBytes(24).toString('base64url')}`;
      const refused = await api(gw.apiUrl, token, 'POST', `/clients/${clientId}/targets`, {
        targetName: 'local-vendor',
        targetBaseURL: vendor.url,
        targetRegion: 'us-east-1',
      });
      expect(refused.status).toBe(400);
      expect(JSON.stringify(refused.body)).toContain(hint);
      await gw.stop('SIGTERM');

      gw = await startGatewayProcess(dataDir, { KEYGATE_TARGET_ALLOWLIST: entry });
      expect(gw.output()).toContain(`(KEYGATE_TARGET_ALLOWLIST): ${entry}`);
      const proxyId = await provisionProxy(gw.apiUrl, token, clientId, vendor.url, proxyKey);
      const call = () =>
        fetch(`${gw.proxyUrl}/api/${proxyId}/v2/inventory/items`, { headers: { authorization: proxyKey } });
      expect((await call()).status).toBe(200);
      expect(vendor.received).toHaveLength(1);
      await gw.stop('SIGTERM');

      // The allowlist taken away again: the data is still there, and the call says what to set.
      gw = await startGatewayProcess(dataDir);
      const answer = await call();
      expect(answer.status).toBe(502);
      expect(answer.headers.get('keygate-proxy-code')).toBe('proxy-target-refused');
      expect(((await answer.json()) as { message: string }).message).toContain(hint);
      expect(vendor.received).toHaveLength(1);
      await gw.stop('SIGTERM');
      expect(readFileSync(join(dataDir, 'admin-token'), 'utf8').trim()).toBe(token);
    } finally {
      await vendor.close();
    }
  }, 120_000);
});
