import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from '@jest/globals';

/** Starts `npm start`'s entry point as a real child process and waits for its banner. */
async function startKeygate(dataDir: string, apiPort: number, proxyPort: number) {
  const child = spawn(process.execPath, ['local/start.ts'], {
    env: {
      ...process.env,
      NODE_OPTIONS: '',
      KEYGATE_DATA_DIR: dataDir,
      KEYGATE_API_PORT: String(apiPort),
      KEYGATE_PROXY_PORT: String(proxyPort),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d) => {
    out += d;
  });
  child.stderr.on('data', (d) => {
    out += d;
  });
  const deadline = Date.now() + 20_000;
  while (!/Data dir/.test(out) || !/admin-token/.test(out)) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`keygate did not start:\n${out}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  const stop = async () => {
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    return exited;
  };
  return { output: () => out, stop };
}

describe('npm start (local mode)', () => {
  it('bootstraps once, keeps everything across a restart and shuts down cleanly', async () => {
    const dataDir = join(mkdtempSync(join(tmpdir(), 'kg-local-')), 'data');
    const apiPort = 40000 + Math.floor(Math.random() * 10000);
    const first = await startKeygate(dataDir, apiPort, apiPort + 1);
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
    expect(await first.stop()).toBe(0);

    const second = await startKeygate(dataDir, apiPort, apiPort + 1);
    expect(second.output()).not.toContain('First start');
    expect(second.output()).not.toContain(token);
    const got = await fetch(`${api}/clients/${created.clientId}`, { headers: { authorization: token } });
    expect(got.status).toBe(200);
    expect(((await got.json()) as { clientName: string }).clientName).toBe('survives-restart');
    expect(await second.stop()).toBe(0);
    expect(existsSync(join(dataDir, 'dynamodb'))).toBe(true);
  }, 60_000);
});
