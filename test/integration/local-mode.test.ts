import { existsSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from '@jest/globals';
import { startGatewayProcess } from '../helpers/gateway-process.ts';

describe('npm start (local mode)', () => {
  it('bootstraps once, keeps everything across a restart and shuts down cleanly', async () => {
    const dataDir = join(mkdtempSync(join(tmpdir(), 'kg-local-')), 'data');
    const apiPort = 40000 + Math.floor(Math.random() * 10000);
    const ports = { KEYGATE_API_PORT: String(apiPort), KEYGATE_PROXY_PORT: String(apiPort + 1) };
    const first = await startGatewayProcess(dataDir, ports);
    const banner = first.output();
    expect(banner).toContain(`Core API  http://127.0.0.1:${apiPort}`);
    expect(banner).toContain('First start');
    const tokenFile = join(dataDir, 'admin-token');
    expect(statSync(tokenFile).mode & 0o777).toBe(0o600);
    expect(statSync(join(dataDir, 'kms-master-key')).mode & 0o777).toBe(0o600);
    const token = readFileSync(tokenFile, 'utf8').trim();
    expect(banner).toContain(token);

    const api = `http://127.0.0.1:${apiPort}`;
    const created = await fetch(`${api}/clients`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ clientName: 'survives-restart' }),
    }).then((r) => r.json() as Promise<{ clientId: string }>);
    const proxied = await fetch(`http://127.0.0.1:${apiPort + 1}/api/anything/x`);
    expect(proxied.headers.get('keygate-proxy-code')).toBeTruthy();
    await first.stop('SIGTERM');
    expect(first.child.exitCode).toBe(0);

    const second = await startGatewayProcess(dataDir, ports);
    expect(second.output()).not.toContain('First start');
    expect(second.output()).not.toContain(token);
    const got = await fetch(`${api}/clients/${created.clientId}`, { headers: { authorization: token } });
    expect(got.status).toBe(200);
    expect(((await got.json()) as { clientName: string }).clientName).toBe('survives-restart');
    await second.stop('SIGTERM');
    expect(second.child.exitCode).toBe(0);
    expect(existsSync(join(dataDir, 'dynamodb'))).toBe(true);
  }, 60_000);
});
