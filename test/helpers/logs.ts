import { jest } from '@jest/globals';
import { logger } from '../../lambdas/shared/logger.ts';

/** One line the logger was asked to print. */
export interface LoggedLine {
  level: 'warn' | 'error' | 'critical';
  message: string;
  attributes: Record<string, unknown>;
}

/**
 * Routes the logger's warnings and errors to a capture instead of the test output, for tests
 * that provoke them on purpose (faults injected, poison records): a green run prints no WARN or
 * ERROR line, and the test can assert the lines it expects. `restore()` puts the logger back.
 */
export function captureLogs(): { lines: LoggedLine[]; restore(): void } {
  const lines: LoggedLine[] = [];
  const spies = (['warn', 'error', 'critical'] as const).map((level) =>
    jest.spyOn(logger, level).mockImplementation(((message: unknown, ...extra: unknown[]) => {
      const attributes = Object.assign({}, ...extra.filter((e) => typeof e === 'object' && e !== null));
      lines.push({ level, message: String(message), attributes });
    }) as never),
  );
  return {
    lines,
    restore: () => {
      for (const spy of spies) spy.mockRestore();
    },
  };
}
