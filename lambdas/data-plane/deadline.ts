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

export type Dependency = 'the store' | 'KMS';
const failedDependency = new WeakMap<object, Dependency>();

/**
 * Which dependency an error came from, when it was raised by a call made through `withDeadline`
 * (for the KmsErrors / StoreErrors metrics; the consumer's answer is the same 503 either way).
 */
export function dependencyOf(error: unknown): Dependency | undefined {
  return typeof error === 'object' && error !== null ? failedDependency.get(error) : undefined;
}

/**
 * The work, or a 503-mapped DeadlineError once `ms` pass. Given a function, the work gets an
 * AbortSignal that fires at the same deadline (an SDK call then aborts itself and frees its socket
 * and retries). One timer per call, cleared when the call ends: unlike `AbortSignal.timeout`, a call
 * that answers in time leaves no timer behind and never builds the abort's DOMException.
 */
export function withDeadline<T>(
  work: Promise<T> | ((signal: AbortSignal) => Promise<T>),
  ms: number,
  what: Dependency,
): Promise<T> {
  const controller = typeof work === 'function' ? new AbortController() : undefined;
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new DeadlineError(what, ms));
      controller?.abort();
    }, ms);
  });
  const promise = typeof work === 'function' ? work(controller!.signal) : work;
  return Promise.race([promise, expired])
    .catch((error: unknown) => {
      if (typeof error === 'object' && error !== null && !failedDependency.has(error))
        failedDependency.set(error, what);
      throw error;
    })
    .finally(() => clearTimeout(timer));
}
