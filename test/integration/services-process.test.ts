import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from '@jest/globals';
import type { ProxyOutcome } from '../../lambdas/data-plane/outcome.ts';
import { startLocalStack } from '../../local/stack.ts';
import { type GatewayProcess, startGatewayProcess } from '../helpers/gateway-process.ts';
import { INVENTORY_RULE, send, startRecordingUpstream, writeSnapshot } from '../helpers/proxy-fixtures.ts';

/**
 * `npm start` runs the embedded stand-ins and the telemetry consumer in a services process of its
 * own (local/services-process.ts): it must never outlive its parent (a kill -9 of `npm start` leaves
 * no process holding the data dir's LevelDB locks), it is restarted when it dies on its own, and it
 * ignores the Ctrl-C that reaches the whole process group so that the parent can drain first. Inside
 * it, the telemetry side (embedded Kinesis, poller, aggregator) runs on a worker thread at a lower
 * priority than the thread serving the store.
 */
const dirs: string[] = [];
const started: GatewayProcess[] = [];
afterAll(async () => {
  for (const gw of started) await gw.stop('SIGKILL');
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function dataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'kg-services-'));
  dirs.push(dir);
  return join(dir, 'data');
}

async function start(dir: string): Promise<GatewayProcess> {
  const gw = await startGatewayProcess(dir);
  started.push(gw);
  return gw;
}

/** The pids whose parent is `pid`. */
function childrenOf(pid: number): number[] {
  try {
    return execFileSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' })
      .split('\n')
      .map((l) => Number(l.trim()))
      .filter((n) => n > 0);
  } catch {
    return []; // ps exits 1 when there is none
  }
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs; // a safety net only: each check is an event, not a timing
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The nice value of each thread of a process (Linux: the nice value is per thread). */
function niceByThread(pid: number): Map<number, number> {
  const out = new Map<number, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    out.set(Number(tid), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]));
  }
  return out;
}

function servicesPid(gw: GatewayProcess): number {
  const kids = childrenOf(gw.child.pid!);
  expect(kids).toHaveLength(1);
  const cmdline = readFileSync(`/proc/${kids[0]}/cmdline`, 'utf8');
  expect(cmdline).toContain('services-process.ts');
  return kids[0]!;
}

async function createClient(gw: GatewayProcess, token: string, name: string): Promise<Response> {
  return fetch(`${gw.apiUrl}/clients`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ clientName: name }),
  });
}

describe('the services process of npm start', () => {
  it('dies with its parent on kill -9, and the data dir opens again at once', async () => {
    const dir = dataDir();
    const first = await start(dir);
    const services = servicesPid(first);
    const made = await createClient(first, first.token!, 'before-kill');
    expect(made.status).toBe(201);
    const { clientId } = (await made.json()) as { clientId: string };

    await first.stop('SIGKILL');
    await until('the services process to exit after its parent was killed', () => !alive(services));

    const second = await start(dir);
    const got = await fetch(`${second.apiUrl}/clients/${clientId}`, {
      headers: { authorization: `Bearer ${first.token}` },
    });
    expect(got.status).toBe(200);
    await second.stop('SIGTERM');
    expect(second.child.exitCode).toBe(0);
  }, 90_000);

  it('is restarted on the same ports when it dies on its own; calls meanwhile fail closed', async () => {
    const gw = await start(dataDir());
    const services = servicesPid(gw);
    process.kill(services, 'SIGKILL');
    await until('the services process to be gone', () => !alive(services));
    // While it is down the Core API cannot reach the store: never a success, never a 500.
    const during = await createClient(gw, gw.token!, 'during-restart');
    expect([201, 503]).toContain(during.status);
    await until('a new services process', () => childrenOf(gw.child.pid!).some((p) => p !== services));
    await until('the Core API to serve again', async () => {
      const r = await createClient(gw, gw.token!, 'after-restart');
      return r.status === 201;
    });
    expect(gw.output()).toContain('the services process exited unexpectedly');
    await gw.stop('SIGTERM');
    expect(gw.child.exitCode).toBe(0);
  }, 90_000);

  it('ignores the Ctrl-C sent to the process group; the parent shuts it down after draining', async () => {
    const gw = await start(dataDir());
    const services = servicesPid(gw);
    // The telemetry side runs on a worker thread below the store's priority (local/telemetry-side.ts).
    const nice = niceByThread(services);
    expect(nice.get(services)).toBe(0);
    expect([...nice.values()]).toContain(10);
    // What a terminal does on Ctrl-C: SIGINT to every process of the group, the child first.
    process.kill(services, 'SIGINT');
    process.kill(gw.child.pid!, 'SIGINT');
    await gw.stop('SIGINT');
    expect(gw.child.exitCode).toBe(0);
    expect(gw.output()).toContain('keygate stopped');
    expect(gw.output()).not.toContain('exited unexpectedly');
    expect(alive(services)).toBe(false);
  }, 90_000);
});

describe('stack.close()', () => {
  it('waits for a handler still running after its connection was closed', async () => {
    const upstream = await startRecordingUpstream();
    let releaseUpstream!: () => void;
    const held = new Promise<void>((r) => {
      releaseUpstream = r;
    });
    let arrived!: () => void;
    const upstreamReached = new Promise<void>((r) => {
      arrived = r;
    });
    upstream.respond = (_req, res) => {
      arrived();
      void held.then(() => res.end('late'));
    };
    const outcomes: ProxyOutcome[] = [];
    const stack = await startLocalStack({
      targetAllowlist: [`127.0.0.1:${upstream.port}`],
      telemetryPoller: false,
      proxyOptions: { onOutcome: (o) => outcomes.push(o) },
    });
    try {
      const p = await writeSnapshot(stack.deps, {
        targetBaseURL: upstream.url,
        rules: { targetCredential: [INVENTORY_RULE] },
      });
      const call = send(stack.proxyUrl, {
        path: `/api/${p.proxyId}/v2/inventory/items`,
        headers: { authorization: p.proxyKey },
      }).then(
        () => 'answered',
        () => 'connection closed',
      );
      await upstreamReached;
      let closed = false;
      const closing = stack.close().then(() => {
        closed = true;
      });
      // The client's connection is closed at once (no drain), the handler is still waiting upstream.
      expect(await call).toBe('connection closed');
      // Give close() every chance to finish on its own (it must not: the handler is still held).
      await Promise.race([closing, new Promise((r) => setTimeout(r, 2000))]);
      expect(closed).toBe(false);
      expect(outcomes).toHaveLength(0);
      releaseUpstream();
      await closing;
      // close() returned only after the handler had finished (its outcome recorded).
      expect(outcomes).toHaveLength(1);
    } finally {
      releaseUpstream();
      await stack.close();
      await upstream.close();
    }
  }, 30_000);
});
