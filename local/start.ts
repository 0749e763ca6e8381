// First: an old Node or a checkout without node_modules gets one line, not a loader trace.
import './check-node.mjs';
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { bootstrapFirstAdmin } from '../lambdas/control-plane/bootstrap.ts';
import { isAliasRef } from '../lambdas/data-plane/routing.ts';
import { parseTargetAllowlist } from '../lambdas/net/target-allowlist.ts';
import { parseHostList } from '../lambdas/shared/config.ts';
import { type LocalStack, startLocalStack } from './stack.ts';
import { explainStartFailure } from './start-errors.ts';

/**
 * `npm start`: keygate whole on this machine. Settings: KEYGATE_API_PORT (4000),
 * KEYGATE_PROXY_PORT (4001), KEYGATE_DATA_DIR (.keygate), KEYGATE_TARGET_ALLOWLIST (comma-separated
 * `host:port` entries that may be private and plain-http targets; a bare host allows its default
 * ports 443/80 only; keygate's own ports never), KEYGATE_REGIONS (regions served, default us-east-1),
 * KEYGATE_DRAIN_SECONDS (30: on SIGTERM/SIGINT, how long calls in flight may finish),
 * KEYGATE_UNKNOWN_AFTER_SECONDS (60: when a call started and never completed counts as `unknown`),
 * KEYGATE_ALIAS_PORTS (`alias:port,…`: an extra proxy port per alias, docs/sdks.md).
 * See docs/local-mode-security.md, docs/audit-trail.md and docs/local-services-process.md.
 */
function port(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0 || value > 65535) {
    console.error(`${name} must be a port number, got '${raw}'`);
    process.exit(2);
  }
  return value;
}

function seconds(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0 || value > 86_400) {
    console.error(`${name} must be a number of seconds (0 to 86400), got '${raw}'`);
    process.exit(2);
  }
  return value;
}

/** KEYGATE_ALIAS_PORTS=`alias:port,…`: one extra proxy port per alias (docs/sdks.md). */
function aliasPorts(): Array<{ alias: string; port: number }> {
  const raw = process.env.KEYGATE_ALIAS_PORTS ?? '';
  const out: Array<{ alias: string; port: number }> = [];
  for (const entry of raw
    .split(',')
    .map((e) => e.trim())
    .filter(Boolean)) {
    const [alias = '', portText = '', ...rest] = entry.split(':');
    const port = Number(portText);
    if (rest.length > 0 || !isAliasRef(alias) || !/^\d+$/.test(portText) || port < 1 || port > 65535) {
      console.error(
        `KEYGATE_ALIAS_PORTS: '${entry}' is not alias:port (a proxyAlias — lower-case letters, digits, ` +
          'inner hyphens — and a port 1-65535), e.g. KEYGATE_ALIAS_PORTS=stripe:4011',
      );
      process.exit(2);
    }
    if (out.some((a) => a.alias === alias || a.port === port)) {
      console.error(`KEYGATE_ALIAS_PORTS: '${entry}' repeats an alias or a port`);
      process.exit(2);
    }
    out.push({ alias, port });
  }
  return out;
}

const drainMs = seconds('KEYGATE_DRAIN_SECONDS', 30) * 1000;
function allowlist(): string[] {
  try {
    return parseTargetAllowlist(process.env.KEYGATE_TARGET_ALLOWLIST);
  } catch (error) {
    console.error(`KEYGATE_TARGET_ALLOWLIST: ${(error as Error).message}`);
    process.exit(2);
  }
}

const dataDir = resolve(process.env.KEYGATE_DATA_DIR || '.keygate');
mkdirSync(dataDir, { recursive: true, mode: 0o700 });
const apiPort = port('KEYGATE_API_PORT', 4000);
const proxyPort = port('KEYGATE_PROXY_PORT', 4001);
const targetAllowlist = allowlist();
const aliases = aliasPorts();

let stack: LocalStack;
try {
  stack = await startLocalStack({
    dataDir,
    apiPort,
    proxyPort,
    aliasPorts: aliases,
    targetAllowlist,
    regions: parseHostList(process.env.KEYGATE_REGIONS),
    unknownAfterMs: seconds('KEYGATE_UNKNOWN_AFTER_SECONDS', 60) * 1000,
    // The stand-ins and the telemetry consumer on their own core (docs/local-services-process.md).
    servicesProcess: true,
    onServicesGiveUp: (error) => {
      console.error(`${error.message}: stopping`);
      process.exit(1);
    },
  });
} catch (error) {
  // A port in use, a data dir held by another keygate: one line saying what to do (docs/first-start.md).
  const explained = explainStartFailure(error, {
    dataDir,
    ports: [
      { setting: 'KEYGATE_API_PORT', port: apiPort },
      { setting: 'KEYGATE_PROXY_PORT', port: proxyPort },
      ...aliases.map(({ alias, port }) => ({
        setting: 'KEYGATE_ALIAS_PORTS',
        port,
        value: `${alias}:<a free port>`,
      })),
    ],
  });
  if (!explained) throw error;
  console.error(`keygate could not start: ${explained}`);
  process.exit(1);
}

const tokenFile = join(dataDir, 'admin-token');
const first = await bootstrapFirstAdmin(stack.deps);
console.log('keygate is running (local mode)');
console.log(`  Core API  ${stack.apiUrl}`);
console.log(`  Proxy     ${stack.proxyUrl}/api/{proxyId}/…`);
for (const [alias, url] of Object.entries(stack.aliasUrls))
  console.log(`  Alias     ${url}/…  → every request goes to the proxy aliased '${alias}'`);
console.log(`  Data dir  ${dataDir}`);
if (first) {
  writeFileSync(tokenFile, `${first.token}\n`, { mode: 0o600 });
  chmodSync(tokenFile, 0o600);
  console.log('First start: created an admin user, a client and a token (shown only this once):');
  console.log(`  userId    ${first.userId}`);
  console.log(`  clientId  ${first.clientId}`);
  console.log(`  token     ${first.token}`);
  console.log(`  (also written to ${tokenFile}, mode 0600)`);
} else if (existsSync(tokenFile)) {
  console.log(`Admin token: ${tokenFile}`);
}
console.log(
  targetAllowlist.length > 0
    ? `Allowed private/plain-http targets (KEYGATE_TARGET_ALLOWLIST): ${targetAllowlist.join(', ')}`
    : 'Targets on this machine or a private network (e.g. http://127.0.0.1:8080) need ' +
        'KEYGATE_TARGET_ALLOWLIST=127.0.0.1:8080 (host:port, comma-separated): Ctrl-C, then start again ' +
        'with it — the data is kept',
);
console.log('Next step, in another shell — your first call (see docs/first-start.md):');
console.log(`  curl -s ${stack.apiUrl}/users/me -H "Authorization: Bearer $(cat ${tokenFile})"`);
console.log('Ctrl-C stops keygate.');

let stopping = false;
async function stop(signal: string) {
  if (stopping) return;
  stopping = true;
  // Stop accepting, let calls in flight finish and be recorded (up to the deadline), ship them.
  console.log(`${signal}: shutting down (calls in flight get up to ${drainMs / 1000} s)`);
  await stack.close({ drainMs });
  console.log('keygate stopped');
  process.exit(0);
}
process.on('SIGINT', () => void stop('SIGINT'));
process.on('SIGTERM', () => void stop('SIGTERM'));
