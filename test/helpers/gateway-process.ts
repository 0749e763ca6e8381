import { type ChildProcess, spawn } from 'node:child_process';

/**
 * `npm start` as a child process (the real local/start.ts), for tests that kill it with SIGKILL or
 * SIGTERM and start it again on the same data directory.
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
}

export async function startGatewayProcess(
  dataDir: string,
  env: Record<string, string> = {},
): Promise<GatewayProcess> {
  const child = spawn(process.execPath, ['--enable-source-maps', 'local/start.ts'], {
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
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gateway did not start:\n${out}`)), 60_000);
    const check = () => {
      if (/Proxy\s+http:\/\/\S+/.test(out) && (/token\s+kg_user_\S+/.test(out) || /Admin token/.test(out))) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on('data', check);
    child.once('exit', () => {
      clearTimeout(timer);
      reject(new Error(`gateway exited during start:\n${out}`));
    });
  });
  const apiUrl = /Core API\s+(http:\/\/\S+)/.exec(out)![1]!;
  const proxyUrl = /Proxy\s+(http:\/\/[^/\s]+)/.exec(out)![1]!;
  return {
    child,
    apiUrl,
    proxyUrl,
    token: /token\s+(kg_user_\S+)/.exec(out)?.[1],
    clientId: /clientId\s+(\S+)/.exec(out)?.[1],
    output: () => out,
    stop: async (signal) => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}
