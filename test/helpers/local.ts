import { bootstrapFirstAdmin, type FirstAdmin } from '../../lambdas/control-plane/bootstrap.ts';
import { type LocalStack, type LocalStackOptions, startLocalStack } from '../../local/stack.ts';

/** A running local keygate (in memory unless a data dir is given) plus a first admin and helpers. */
export interface TestGateway {
  stack: LocalStack;
  admin: FirstAdmin;
  /** Calls the Core API; `token` defaults to the admin's. */
  api(
    method: string,
    path: string,
    options?: { token?: string | null; body?: unknown; rawBody?: string; headers?: Record<string, string> },
  ): Promise<{ status: number; body: any; headers: Headers; text: string }>;
  close(): Promise<void>;
}

export async function startTestGateway(options: LocalStackOptions = {}): Promise<TestGateway> {
  const stack = await startLocalStack(options);
  const admin = (await bootstrapFirstAdmin(stack.deps))!;
  const api: TestGateway['api'] = async (method, path, opts = {}) => {
    const headers: Record<string, string> = { ...(opts.headers ?? {}) };
    const token = opts.token === undefined ? admin.token : opts.token;
    if (token !== null) headers.authorization = `Bearer ${token}`;
    let body: string | undefined;
    if (opts.rawBody !== undefined) body = opts.rawBody;
    else if (opts.body !== undefined) {
      body = JSON.stringify(opts.body);
      headers['content-type'] = 'application/json';
    }
    const res = await fetch(stack.apiUrl + path, { method, headers, body });
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    return { status: res.status, body: parsed, headers: res.headers, text };
  };
  return { stack, admin, api, close: () => stack.close() };
}
