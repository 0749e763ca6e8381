/**
 * Reads until `done` holds and returns that value — or, once `timeoutMs` passed, the last value
 * read, for the caller's assertion to report. The deadline is a safety net for a wedged run, not a
 * timing assertion: a slow machine only waits longer, so it is generous on purpose.
 */
export async function eventually<T>(
  read: () => Promise<T> | T,
  done: (value: T) => boolean,
  { timeoutMs = 60_000, everyMs = 25 }: { timeoutMs?: number; everyMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (done(value) || Date.now() > deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}
