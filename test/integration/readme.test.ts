import { type ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { completionChunk, type FakeMcp, startFakeMcp } from '../helpers/fake-vendors.ts';
import { type GatewayProcess, startGatewayProcess } from '../helpers/gateway-process.ts';

/**
 * The README, run as written. Every fenced block a newcomer is told to run carries a
 * `<!-- readme-test: NAME -->` marker; this file runs the shell blocks in order in ONE bash process
 * against a real `npm start` (local/start.ts on a fresh data directory), doing the prerequisites the
 * text names (a restart with the allowlist it gives, the fake vendor it gives), and runs each SDK
 * snippet as its own Node program against local fake vendors. A line ending in `# → X` (or
 * `// → X`) must print X. The only changes made to the text: the documented ports 4000, 4001 and
 * 8080 become free ones, so the test never collides with a running gateway.
 */

const execFileAsync = promisify(execFile);
const README = readFileSync('README.md', 'utf8');

interface Block {
  name: string;
  lang: string;
  code: string;
}

function fencedBlocks(): { marker?: string; lang: string; code: string }[] {
  const found: { marker?: string; lang: string; code: string }[] = [];
  const re = /(?:<!-- readme-test: ([^>]+?) -->\n)?```(\w*)\n([\s\S]*?)\n```/g;
  for (const m of README.matchAll(re)) found.push({ marker: m[1], lang: m[2]!, code: m[3]! });
  return found;
}

function block(name: string): Block {
  const found = fencedBlocks().find((b) => b.marker === name);
  if (!found) throw new Error(`README has no block marked "readme-test: ${name}"`);
  return { name, lang: found.lang, code: found.code };
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

interface Ports {
  api: number;
  proxy: number;
  vendor: number;
  /** The README's alias port for Stripe (KEYGATE_ALIAS_PORTS=stripe:4011). */
  alias?: number;
}

function withPorts(text: string, ports: Ports): string {
  return text
    .replaceAll('127.0.0.1:4000', `127.0.0.1:${ports.api}`)
    .replaceAll('127.0.0.1:4001', `127.0.0.1:${ports.proxy}`)
    .replaceAll('127.0.0.1:8080', `127.0.0.1:${ports.vendor}`)
    .replaceAll('listen(8080,', `listen(${ports.vendor},`)
    .replaceAll('port: 4011', `port: ${ports.alias ?? 4011}`);
}

const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

/**
 * A README shell block as bash will run it: continuation lines joined, and each `cmd  # → X` turned
 * into "run cmd, print what it printed, fail unless that contains X".
 */
function checkedShell(code: string): string {
  const logical = code.replace(/\\\n\s*/g, '');
  return logical
    .split('\n')
    .map((line) => {
      const m = /^(.*?\S)\s+# → (.+)$/.exec(line);
      if (!m) return line;
      const [, command, expected] = m;
      return `__out=$(${command}); printf '%s\\n' "$__out"; __expect "$__out" ${quote(expected!.trim())} ${quote(command!)}`;
    })
    .join('\n');
}

const PRELUDE = `set -eo pipefail
__expect() { case "$1" in *"$2"*) ;; *) printf 'README expectation failed: %s\\n  expected to print: %s\\n  printed: %s\\n' "$3" "$2" "$1" >&2; exit 1;; esac; }
`;

/** One bash process for the whole README; between blocks it waits on a FIFO while the test acts. */
class ReadmeShell {
  private out = '';
  private err = '';
  private readonly child: ChildProcess;
  private readonly fifo: string;
  private exited = false;
  private step = 0;

  constructor(cwd: string, blocks: string[]) {
    this.fifo = join(cwd, '.readme-fifo');
    execFileSync('mkfifo', [this.fifo]);
    const script = [PRELUDE];
    blocks.forEach((b, i) => {
      script.push(b, `printf '\\n__BLOCK_DONE_${i}__\\n'`, `read -r __go < ${quote(this.fifo)}`);
    });
    const file = join(cwd, '.readme-script.sh');
    writeFileSync(file, script.join('\n'));
    this.child = spawn('bash', ['--noprofile', '--norc', file], {
      cwd,
      env: { PATH: process.env.PATH, HOME: process.env.HOME, LANG: 'C.UTF-8' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stdout!.on('data', (d: Buffer) => {
      this.out += d.toString();
    });
    this.child.stderr!.on('data', (d: Buffer) => {
      this.err += d.toString();
    });
    this.child.once('exit', () => {
      this.exited = true;
    });
  }

  /** Waits until the next block has run; returns what it printed. */
  async nextBlock(): Promise<string> {
    const i = this.step++;
    const marker = `__BLOCK_DONE_${i}__`;
    const from = this.out.length;
    if (this.exited) throw new Error(`README shell ended before block ${i}:\n${this.err}`);
    // Async: opening a FIFO waits for its reader, which must not stall the test's event loop.
    if (i > 0) void writeFile(this.fifo, 'go\n');
    while (!this.out.includes(marker)) {
      if (this.exited) throw new Error(`README block ${i} failed:\n${this.out.slice(from)}\n${this.err}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    return this.out.slice(from, this.out.indexOf(marker));
  }

  errors(): string {
    return this.err;
  }

  close(): void {
    if (!this.exited) this.child.kill('SIGKILL');
  }
}

describe('README walk-through, run as written', () => {
  let home: string;
  let ports: Ports;
  let gateway: GatewayProcess | undefined;
  let vendor: ChildProcess | undefined;
  let shell: ReadmeShell;

  const start = async (env: Record<string, string> = {}) => {
    gateway = await startGatewayProcess(join(home, '.keygate'), {
      KEYGATE_API_PORT: String(ports.api),
      KEYGATE_PROXY_PORT: String(ports.proxy),
      ...env,
    });
  };

  beforeAll(async () => {
    home = mkdtempSync(join(tmpdir(), 'keygate-readme-'));
    ports = { api: await freePort(), proxy: await freePort(), vendor: await freePort() };
  });

  afterAll(async () => {
    shell?.close();
    vendor?.kill('SIGKILL');
    await gateway?.stop('SIGTERM');
    rmSync(home, { recursive: true, force: true });
  });

  it('the first look at the Core API runs against a fresh `npm start`', async () => {
    await start();
    shell = new ReadmeShell(home, [
      withPorts(checkedShell(block('session').code), ports),
      withPorts(checkedShell(block('first-call').code), ports),
      withPorts(checkedShell(block('budget').code), ports),
      withPorts(checkedShell(block('revoke').code), ports),
    ]);
    const printed = await shell.nextBlock();
    expect(printed).toContain('kg_user_');
    expect(shell.errors()).toBe('');
  });

  it('a restart with the allowlist keeps the data, and the first proxied call works as the text says', async () => {
    const prerequisites = block('prerequisites').code.split('\n');
    const startLine = prerequisites.find((l) => l.includes('# terminal 1'))!;
    const vendorLine = prerequisites.find((l) => l.includes('# terminal 2'))!;
    const env = Object.fromEntries(
      [...withPorts(startLine, ports).matchAll(/(\w+)=(\S+)\s+(?=.*npm start)/g)].map((m) => [m[1]!, m[2]!]),
    );
    expect(Object.keys(env)).toEqual(['KEYGATE_TARGET_ALLOWLIST']);
    expect(startLine).toMatch(/npm start/);
    await gateway!.stop('SIGINT');
    await start(env);
    // The same admin token works after the restart: the data directory was kept.
    expect(gateway!.token).toBeUndefined();

    vendor = spawn('bash', ['-c', withPorts(vendorLine.replace(/\s+# terminal 2$/, ''), ports)], {
      stdio: 'ignore',
    });
    await waitForPort(ports.vendor);

    const printed = await shell.nextBlock();
    expect(printed).toContain('"x-shopify-access-token": "shpat_0123456789abcdef0123456789abcdef"');
    expect(printed).not.toContain('kg_live_');
    expect(shell.errors()).toBe('');
  });

  it('a budget refuses the call past its limit', async () => {
    await shell.nextBlock();
    expect(shell.errors()).toBe('');
  });

  it('a revoked key is refused on the very next call', async () => {
    await shell.nextBlock();
    expect(shell.errors()).toBe('');
  });
});

async function waitForPort(port: number): Promise<void> {
  for (;;) {
    const ok = await fetch(`http://127.0.0.1:${port}/`).then(
      () => true,
      () => false,
    );
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('README: every block a reader is told to run is run by this file', () => {
  it('marks every shell and JavaScript block but the install/start and deploy commands', () => {
    const unmarked = fencedBlocks()
      .filter((b) => !b.marker && (b.lang === 'sh' || b.lang === 'js'))
      .map((b) => b.code.split('\n')[0]);
    // npm install/npm start are what this file's gateway process is; the deploy needs an AWS account;
    // the development commands are what CI itself runs.
    expect(unmarked).toEqual([
      'npm install',
      'npm run synth                                   # offline: a summary of the stacks, cdk-nag and cfn-guard checks',
      'npm test         # every test: unit, integration through the local HTTP fronts, infrastructure, and this README',
    ]);
  });
});

// ---------------------------------------------------------------------------------------------
// SDK snippets

const VENDOR_SECRET = 'vendor-secret-0123456789abcdef';

interface Received {
  url: string;
  headers: IncomingMessage['headers'];
}

/** One fake vendor that answers like OpenAI, Anthropic and GitHub by path, and records every request. */
async function startSdkVendor() {
  const received: Received[] = [];
  const reply = (res: ServerResponse, status: number, body: unknown, headers = {}) => {
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify(body));
  };
  const server = createServer((req, res) => {
    received.push({ url: req.url!, headers: req.headers });
    req.resume();
    const url = new URL(req.url!, 'http://vendor');
    if (url.pathname === '/v1/chat/completions') {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(completionChunk(1, 'Hello'));
      res.write(completionChunk(2, ' there'));
      res.end('data: [DONE]\n\n');
    } else if (url.pathname === '/v1/models') {
      reply(res, 200, { object: 'list', data: [] });
    } else if (url.pathname === '/stripe/v1/customers' && req.method === 'POST') {
      reply(res, 200, { id: 'cus_1', object: 'customer', email: 'jenny@example.com' });
    } else if (url.pathname === '/v1/messages') {
      reply(res, 200, {
        id: 'msg_1',
        type: 'message',
        role: 'assistant',
        model: 'claude-sonnet-5-5',
        content: [{ type: 'text', text: 'Hello from Claude' }],
        stop_reason: 'end_turn',
        stop_sequence: null,
        usage: { input_tokens: 3, output_tokens: 4 },
      });
    } else if (url.pathname === '/github/repos/acme/app/issues') {
      const page = Number(url.searchParams.get('page') ?? '1');
      const perPage = Number(url.searchParams.get('per_page') ?? '30');
      const all = [1, 2, 3, 4, 5].map((n) => ({ id: n, number: n, title: `issue ${n}` }));
      const last = Math.ceil(all.length / perPage);
      const link = (p: number, rel: string) =>
        `<http://127.0.0.1:${port}/github/repos/acme/app/issues?per_page=${perPage}&page=${p}>; rel="${rel}"`;
      const links = page < last ? [link(page + 1, 'next'), link(last, 'last')] : [];
      reply(
        res,
        200,
        all.slice((page - 1) * perPage, page * perPage),
        links.length ? { link: links.join(', ') } : {},
      );
    } else reply(res, 404, { message: 'not found' });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    received,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}

describe('README: calling through keygate from your code (the real SDKs, through `npm start`)', () => {
  let home: string;
  let gateway: GatewayProcess;
  let vendor: Awaited<ReturnType<typeof startSdkVendor>>;
  let mcp: FakeMcp;
  let snippetDir: string;
  const keys: string[] = [];
  const ports: Ports = { api: 0, proxy: 0, vendor: 0 };

  const api = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(gateway.apiUrl + path, {
      method,
      headers: { authorization: `Bearer ${gateway.token}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const answer = (await res.json()) as Record<string, any>;
    if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(answer)}`);
    return answer;
  };

  /** A proxy made as the README's table says, with the alias the snippet's URL names. */
  const proxyFor = async (
    alias: string,
    targetBaseURL: string,
    targetCredential: Record<string, unknown>,
    keyLocations?: string[],
  ) => {
    const client = `/clients/${gateway.clientId}`;
    const proxyCred = await api('POST', `${client}/credentials`, {
      credentialType: 'proxy',
      credentialAuthType: 'key',
      credentialName: `${alias}-agent`,
      credentialRegion: 'us-east-1',
      ...(keyLocations ? { credentialKeyLocations: keyLocations } : {}),
    });
    const target = await api('POST', `${client}/targets`, {
      targetName: alias,
      targetBaseURL,
      targetRegion: 'us-east-1',
    });
    const secret = await api('POST', `${client}/credentials`, {
      credentialType: 'target',
      credentialName: `${alias}-vendor`,
      credentialRegion: 'us-east-1',
      ...targetCredential,
    });
    const proxy = await api('POST', `${client}/proxies`, {
      proxyName: alias,
      proxyAlias: alias,
      proxyRegion: 'us-east-1',
      proxyProxyCredentialId: proxyCred.credentialId,
      proxyTargetId: target.targetId,
      proxyTargetCredentialId: secret.credentialId,
      proxyDefaultRuleEffect: 'allow',
    });
    await api('POST', `${client}/proxies/${proxy.proxyId}/rules`, { effect: 'allow', priority: 10 });
    const key = proxyCred.credentialSecret.key as string;
    keys.push(key);
    return key;
  };

  /** Runs the snippet as its own ES module (it resolves the SDKs from this checkout). */
  const runSnippet = async (name: string, key: string) => {
    const { code } = block(`sdk ${name}`);
    const file = join(snippetDir, `${name}.mjs`);
    writeFileSync(file, withPorts(code, ports));
    // Asynchronously: the fake vendors answer from this very process.
    const { stdout: printed } = await execFileAsync(process.execPath, [file], {
      env: { PATH: process.env.PATH, PROXY_KEY: key },
      encoding: 'utf8',
      timeout: 60_000,
    });
    for (const [, expected] of code.matchAll(/\/\/ → (.+)$/gm)) expect(printed).toContain(expected!.trim());
    return printed;
  };

  beforeAll(async () => {
    home = mkdtempSync(join(tmpdir(), 'keygate-readme-sdk-'));
    snippetDir = join(process.cwd(), `.readme-snippets-${process.pid}`);
    mkdirSync(snippetDir, { recursive: true });
    vendor = await startSdkVendor();
    mcp = await startFakeMcp();
    ports.alias = await freePort();
    gateway = await startGatewayProcess(join(home, '.keygate'), {
      KEYGATE_TARGET_ALLOWLIST: `127.0.0.1:${vendor.port},${new URL(mcp.url).host}`,
      KEYGATE_ALIAS_PORTS: `stripe:${ports.alias}`,
    });
    ports.api = Number(new URL(gateway.apiUrl).port);
    ports.proxy = Number(new URL(gateway.proxyUrl).port);
  });

  afterAll(async () => {
    // The invariant of the whole section: no proxy key ever reached a vendor.
    for (const rec of vendor.received) {
      const seen = `${rec.url}\n${JSON.stringify(rec.headers)}`;
      for (const key of keys) expect(seen).not.toContain(key);
    }
    await gateway?.stop('SIGTERM');
    await vendor?.close();
    await mcp?.close();
    rmSync(snippetDir, { recursive: true, force: true });
    rmSync(home, { recursive: true, force: true });
  });

  it('OpenAI: a streamed chat completion', async () => {
    const key = await proxyFor('openai', `http://127.0.0.1:${vendor.port}/v1`, {
      credentialAuthType: 'bearer',
      credentialSecret: { token: VENDOR_SECRET },
    });
    vendor.received.length = 0;
    await runSnippet('openai', key);
    expect(vendor.received.map((r) => r.headers.authorization)).toEqual([`Bearer ${VENDOR_SECRET}`]);
    await runSnippet('fetch', key);
  });

  it('Anthropic: x-api-key swapped for the vendor key', async () => {
    const key = await proxyFor(
      'anthropic',
      `http://127.0.0.1:${vendor.port}`,
      { credentialAuthType: 'apiKey', credentialSecret: { key: VENDOR_SECRET, headerName: 'x-api-key' } },
      ['authorization', 'header:x-api-key'],
    );
    vendor.received.length = 0;
    await runSnippet('anthropic', key);
    expect(vendor.received.map((r) => r.headers['x-api-key'])).toEqual([VENDOR_SECRET]);
  });

  it('Octokit: every page of a paginated list goes through keygate', async () => {
    const key = await proxyFor('github', `http://127.0.0.1:${vendor.port}/github`, {
      credentialAuthType: 'bearer',
      credentialSecret: { token: VENDOR_SECRET },
    });
    vendor.received.length = 0;
    await runSnippet('github', key);
    expect(vendor.received).toHaveLength(3);
    for (const rec of vendor.received) expect(rec.headers.authorization).toBe(`Bearer ${VENDOR_SECRET}`);
  });

  it('Stripe: host and port only, through the alias port', async () => {
    const key = await proxyFor('stripe', `http://127.0.0.1:${vendor.port}/stripe`, {
      credentialAuthType: 'bearer',
      credentialSecret: { token: VENDOR_SECRET },
    });
    vendor.received.length = 0;
    await runSnippet('stripe', key);
    expect(vendor.received.map((r) => [r.url, r.headers.authorization])).toEqual([
      ['/stripe/v1/customers', `Bearer ${VENDOR_SECRET}`],
    ]);
  });

  it('MCP: a tool call over Streamable HTTP', async () => {
    const key = await proxyFor('mcp', mcp.url.replace(/\/mcp$/, ''), {
      credentialAuthType: 'bearer',
      credentialSecret: { token: VENDOR_SECRET },
    });
    await runSnippet('mcp', key);
    expect(mcp.seen.length).toBeGreaterThan(0);
  });
});
