import { OAuth2Error } from './oauth2-tokens.ts';
import { DEFAULT_TOKEN_LIFETIME_S, type FetchedToken } from './token-cache.ts';
import { callUpstream, type UpstreamPolicy } from './upstream.ts';

/**
 * `customToken` target credentials (docs/target-auth-tokens.md): a token fetched from the vendor's
 * own endpoint, as the credential describes it — method, URL, headers, body (all sealed with the
 * rest of the secret) — read at `tokenPath` of the JSON answer, valid for `expiresInPath` seconds
 * (default 300 s). The call goes through the same address policy as every upstream. The cache and
 * single flight are token-cache.ts's; injection is inject-credential.ts's (`injectAs`).
 */
export interface CustomTokenSecret {
  tokenRequest: {
    method: string;
    url: string;
    headers?: Record<string, string>;
    body?: string | Record<string, unknown>;
  };
  tokenPath: string;
  expiresInPath?: string;
}

/** The value at a dotted path (`data.token`, `$.items[0].token`) of a parsed JSON value. */
export function readJsonPath(value: unknown, path: string): unknown {
  const steps = path.replace(/^\$\./, '').match(/[^.[\]]+|\[\d+\]/g) ?? [];
  let at = value;
  for (const step of steps) {
    if (at === null || typeof at !== 'object') return undefined;
    if (step.startsWith('[')) {
      if (!Array.isArray(at)) return undefined;
      at = at[Number(step.slice(1, -1))];
    } else {
      if (Array.isArray(at) || !Object.hasOwn(at, step)) return undefined;
      at = (at as Record<string, unknown>)[step];
    }
  }
  return at;
}

function requestBody(
  headers: Record<string, string>,
  body: CustomTokenSecret['tokenRequest']['body'],
): Buffer | undefined {
  if (body === undefined) return undefined;
  if (typeof body === 'string') return Buffer.from(body);
  if ((headers['content-type'] ?? '').toLowerCase().startsWith('application/x-www-form-urlencoded')) {
    const form = new URLSearchParams();
    for (const [k, v] of Object.entries(body)) form.set(k, typeof v === 'string' ? v : JSON.stringify(v));
    return Buffer.from(form.toString());
  }
  headers['content-type'] ??= 'application/json';
  return Buffer.from(JSON.stringify(body));
}

/** Calls the vendor's token endpoint once and reads the token and its lifetime. */
export async function fetchCustomToken(
  secret: CustomTokenSecret,
  policy: UpstreamPolicy,
  now: () => number = Date.now,
): Promise<FetchedToken> {
  const { method, url, headers: given, body } = secret.tokenRequest;
  let target: URL;
  try {
    target = new URL(url);
  } catch {
    throw new OAuth2Error('the token URL is not a URL');
  }
  const headers: Record<string, string> = { accept: 'application/json' };
  for (const [name, value] of Object.entries(given ?? {})) headers[name.toLowerCase()] = value;
  const fetchedAt = now();
  let res: Awaited<ReturnType<typeof callUpstream>>;
  try {
    res = await callUpstream(
      {
        url: target,
        pathAndQuery: target.pathname + target.search,
        method,
        headers,
        body: requestBody(headers, body),
      },
      policy,
    );
  } catch (error) {
    throw new OAuth2Error('the token endpoint could not be reached', { cause: error });
  }
  if (res.status < 200 || res.status > 299)
    throw new OAuth2Error(`the token endpoint answered ${res.status}`);
  let json: unknown;
  try {
    json = JSON.parse(res.body.toString('utf8'));
  } catch {
    throw new OAuth2Error('the token endpoint answered no JSON');
  }
  const token = readJsonPath(json, secret.tokenPath);
  if ((typeof token !== 'string' && typeof token !== 'number') || token === '')
    throw new OAuth2Error('the token endpoint answered no token at tokenPath');
  const expiresIn = secret.expiresInPath ? Number(readJsonPath(json, secret.expiresInPath)) : Number.NaN;
  const lifetimeS = Number.isFinite(expiresIn) && expiresIn > 0 ? expiresIn : DEFAULT_TOKEN_LIFETIME_S;
  return { token: String(token), fetchedAt, expiresAt: fetchedAt + lifetimeS * 1000 };
}
