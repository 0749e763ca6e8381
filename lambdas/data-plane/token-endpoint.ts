import { callUpstream, type UpstreamPolicy } from './upstream.ts';

/**
 * The OAuth 2.0 token and revocation endpoints as keygate calls them (RFC 6749 §4.1.3 and §6,
 * RFC 7009): a form POST through the same address policy as every upstream (https and public
 * addresses only, checked at connect time), a small buffered answer. Errors name the endpoint's
 * status and its `error` code, never a token, a secret or the answer's body.
 */
export interface TokenAnswer {
  accessToken: string;
  /** Lifetime in seconds, when the endpoint said. */
  expiresInS?: number;
  /** A new refresh token (rotation), when the endpoint sent one. */
  refreshToken?: string;
}

/** A token could not be had from a vendor's token endpoint (any grant keygate makes). */
export class OAuth2Error extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'OAuth2Error';
  }
}

export class TokenEndpointError extends OAuth2Error {
  /** The endpoint's `error` code (`invalid_grant`…), when it sent a well-formed one. */
  readonly oauthError?: string;
  readonly status?: number;
  constructor(message: string, details: { oauthError?: string; status?: number; cause?: unknown } = {}) {
    super(message, { cause: details.cause });
    this.name = 'TokenEndpointError';
    this.oauthError = details.oauthError;
    this.status = details.status;
  }
}

/** An OAuth `error` code is a short ASCII word; anything else is not repeated anywhere. */
const ERROR_CODE = /^[a-z_]{1,64}$/;

async function postForm(url: string, form: Record<string, string | undefined>, policy: UpstreamPolicy) {
  let target: URL;
  try {
    target = new URL(url);
  } catch {
    throw new TokenEndpointError('the token URL is not a URL');
  }
  const body = new URLSearchParams();
  for (const [k, v] of Object.entries(form)) if (v !== undefined) body.set(k, v);
  try {
    return await callUpstream(
      {
        url: target,
        pathAndQuery: target.pathname + target.search,
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
        body: Buffer.from(body.toString()),
      },
      policy,
    );
  } catch (error) {
    throw new TokenEndpointError('the token endpoint could not be reached', { cause: error });
  }
}

function parseJson(body: Buffer): Record<string, unknown> | undefined {
  try {
    const value = JSON.parse(body.toString('utf8')) as unknown;
    return value !== null && typeof value === 'object' && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/** POSTs a token request (`grant_type` … in `form`) and reads the tokens of a 200 answer. */
export async function requestToken(
  tokenUrl: string,
  form: Record<string, string | undefined>,
  policy: UpstreamPolicy,
): Promise<TokenAnswer> {
  const res = await postForm(tokenUrl, form, policy);
  const json = parseJson(res.body);
  if (res.status !== 200) {
    const code = typeof json?.error === 'string' && ERROR_CODE.test(json.error) ? json.error : undefined;
    throw new TokenEndpointError(`the token endpoint answered ${res.status}${code ? ` (${code})` : ''}`, {
      oauthError: code,
      status: res.status,
    });
  }
  if (!json) throw new TokenEndpointError('the token endpoint answered no JSON');
  if (typeof json.access_token !== 'string' || json.access_token === '')
    throw new TokenEndpointError('the token endpoint answered no access_token');
  const expiresIn = Number(json.expires_in);
  return {
    accessToken: json.access_token,
    expiresInS: Number.isFinite(expiresIn) && expiresIn > 0 ? expiresIn : undefined,
    refreshToken:
      typeof json.refresh_token === 'string' && json.refresh_token !== '' ? json.refresh_token : undefined,
  };
}

/** RFC 7009 revocation: answers the endpoint's status (200 means revoked, or already invalid). */
export async function revokeToken(
  revocationUrl: string,
  form: Record<string, string | undefined>,
  policy: UpstreamPolicy,
): Promise<number> {
  return (await postForm(revocationUrl, form, policy)).status;
}
