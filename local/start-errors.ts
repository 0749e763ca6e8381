/**
 * The start-up failures a user can fix, each turned into ONE line saying what to do (no stack
 * trace): a port in use, a data directory another keygate holds, a port that needs privileges.
 * Anything else is a bug and keeps its trace. docs/first-start.md lists every message.
 */

/** A port `npm start` listens on and the setting that chose it. */
export interface PortSetting {
  setting: string;
  port: number;
  /** What to set it to instead (default `<a free port>`). */
  value?: string;
}

export interface StartContext {
  dataDir: string;
  ports: readonly PortSetting[];
}

/** The messages of an error and of its causes (LevelDB wraps the one that matters), on one line. */
export function errorChain(error: unknown): string {
  const parts: string[] = [];
  for (let e = error, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) parts.push(e.message);
  return parts.join(' ← ') || String(error);
}

function portFix(error: { port?: unknown }, context: StartContext) {
  const port = typeof error.port === 'number' ? error.port : undefined;
  const found = context.ports.find((p) => p.port === port);
  return {
    port: port === undefined ? 'a port' : `port ${port}`,
    setting: found?.setting ?? 'the port settings',
    value: found?.value ?? '<a free port>',
  };
}

/** The one-line explanation of a start-up failure, or undefined when it is not one of those. */
export function explainStartFailure(error: unknown, context: StartContext): string | undefined {
  const code = (error as { code?: unknown } | undefined)?.code;
  if (code === 'EADDRINUSE') {
    const { port, setting, value } = portFix(error as { port?: unknown }, context);
    return (
      `${port} (${setting}) is already in use — by another keygate? Stop it (Ctrl-C in its terminal), ` +
      `or start with ${setting}=${value}`
    );
  }
  if (code === 'EACCES' && (error as { syscall?: unknown }).syscall === 'listen') {
    const { port, setting } = portFix(error as { port?: unknown }, context);
    return `${port} (${setting}) needs privileges: start with ${setting} set to a port above 1023`;
  }
  if (/IO error: lock .*LOCK/.test(errorChain(error))) {
    return (
      `the data directory ${context.dataDir} is in use by another running keygate: stop that one ` +
      '(Ctrl-C in its terminal), or start with KEYGATE_DATA_DIR=<another directory>'
    );
  }
  return undefined;
}
