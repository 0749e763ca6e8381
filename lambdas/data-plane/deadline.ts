/**
 * A hard deadline on a dependency call. The SDK's own socket timeouts do not fire on every stall (a
 * store that accepts the connection and never answers kept a request hanging in our fault tests),
 * and a hung read must become a fast 503, not a Lambda timeout. The late result, if any, is dropped.
 */
export class DeadlineError extends Error {
  constructor(what: string, ms: number) {
    super(`${what} did not answer within ${ms} ms`);
    // The name the error mapping recognises as a dependency failure (→ 503).
    this.name = 'TimeoutError';
  }
}

export function withDeadline<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DeadlineError(what, ms)), ms);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}
