import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A small OAuth 2.0 provider and the API it protects, on loopback, strict where real ones are:
 *  - `GET /authorize` (the user's consent, simulated by calling the URL): checks response_type,
 *    client_id, the registered redirect_uri and a PKCE S256 challenge, then redirects (302) to
 *    redirect_uri with a single-use code and the state;
 *  - `POST /token`: authorization_code (code once, same redirect_uri, client secret,
 *    S256(code_verifier) = challenge) and refresh_token grants; every refresh ROTATES the refresh
 *    token and the old one is refused afterwards (`invalid_grant`); access tokens live `lifetimeS`;
 *  - `POST /revoke`: RFC 7009, records what was revoked (or hangs, when told to);
 *  - `/api/*`: the vendor API: 200 for a live access token, 401 otherwise.
 * Every decision is counted, so tests assert on what happened, not on timing.
 */
export interface FakeOAuth {
  url: string;
  clientId: string;
  clientSecret: string;
  redirectUri?: string;
  /** Lifetime of the next access tokens, in seconds. */
  lifetimeS: number;
  /** Delay of token answers (so concurrent refreshers really overlap). */
  tokenDelayMs: number;
  /** Access tokens accepted this long after their nominal expiry (keeps the API side speed-proof). */
  graceMs: number;
  hangRevocation: boolean;
  issuedAccess: string[];
  issuedRefresh: string[];
  /** Refresh grants answered 200, and refused. */
  refreshes: number;
  refusedRefreshes: number;
  codeExchanges: Array<Record<string, string>>;
  revoked: Array<Record<string, string>>;
  revocationRequests: number;
  /** The API's answers: status per call, and the bodies it got. */
  apiStatuses: number[];
  apiBodies: string[];
  /** Refuses this access token from now on (the provider revoked it early). */
  revokeAccess(token: string): void;
  close(): Promise<void>;
}

const s256 = (v: string) => createHash('sha256').update(v).digest('base64url');
const random = (prefix: string) => `${prefix}${randomBytes(18).toString('hex')}`;

export async function startFakeOAuth(): Promise<FakeOAuth> {
  const codes = new Map<string, { challenge?: string; redirectUri: string; used: boolean }>();
  const refreshLive = new Set<string>();
  const access = new Map<string, number>();
  const sockets = new Set<ServerResponse>();
  const fake: FakeOAuth = {
    url: '',
    clientId: 'keygate-test-app',
    clientSecret: random('client-secret-'),
    lifetimeS: 3600,
    tokenDelayMs: 20,
    graceMs: 30_000,
    hangRevocation: false,
    issuedAccess: [],
    issuedRefresh: [],
    refreshes: 0,
    refusedRefreshes: 0,
    codeExchanges: [],
    revoked: [],
    revocationRequests: 0,
    apiStatuses: [],
    apiBodies: [],
    revokeAccess: (token) => {
      access.delete(token);
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const r of sockets) r.destroy();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };

  const json = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  };
  const issue = (res: ServerResponse) => {
    const accessToken = random('at-');
    const refreshToken = random('rt-');
    access.set(accessToken, Date.now() + fake.lifetimeS * 1000);
    refreshLive.add(refreshToken);
    fake.issuedAccess.push(accessToken);
    fake.issuedRefresh.push(refreshToken);
    setTimeout(
      () =>
        json(res, 200, {
          access_token: accessToken,
          token_type: 'Bearer',
          expires_in: fake.lifetimeS,
          refresh_token: refreshToken,
        }),
      fake.tokenDelayMs,
    );
  };

  const handle = (req: IncomingMessage, body: string, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', fake.url);
    if (req.method === 'GET' && url.pathname === '/authorize') {
      const q = url.searchParams;
      const redirectUri = q.get('redirect_uri') ?? '';
      if (
        q.get('response_type') !== 'code' ||
        q.get('client_id') !== fake.clientId ||
        (fake.redirectUri && redirectUri !== fake.redirectUri) ||
        q.get('code_challenge_method') !== 'S256' ||
        !/^[\w-]{43}$/.test(q.get('code_challenge') ?? '') ||
        !q.get('state')
      )
        return json(res, 400, { error: 'invalid_request' });
      const code = random('code-');
      codes.set(code, { challenge: q.get('code_challenge')!, redirectUri, used: false });
      const back = new URL(redirectUri);
      back.searchParams.set('code', code);
      back.searchParams.set('state', q.get('state')!);
      res.writeHead(302, { location: back.href }).end();
      return;
    }
    if (req.method === 'POST' && url.pathname === '/token') {
      const form = Object.fromEntries(new URLSearchParams(body));
      if (form.client_id !== fake.clientId || form.client_secret !== fake.clientSecret)
        return json(res, 401, { error: 'invalid_client' });
      if (form.grant_type === 'authorization_code') {
        fake.codeExchanges.push(form);
        const code = codes.get(form.code ?? '');
        if (
          !code ||
          code.used ||
          code.redirectUri !== form.redirect_uri ||
          !form.code_verifier ||
          s256(form.code_verifier) !== code.challenge
        )
          return json(res, 400, { error: 'invalid_grant' });
        code.used = true;
        return issue(res);
      }
      if (form.grant_type === 'refresh_token') {
        if (!refreshLive.delete(form.refresh_token ?? '')) {
          fake.refusedRefreshes++;
          return json(res, 400, { error: 'invalid_grant' });
        }
        fake.refreshes++;
        return issue(res);
      }
      return json(res, 400, { error: 'unsupported_grant_type' });
    }
    if (req.method === 'POST' && url.pathname === '/revoke') {
      fake.revocationRequests++;
      if (fake.hangRevocation) {
        sockets.add(res);
        return;
      }
      const form = Object.fromEntries(new URLSearchParams(body));
      fake.revoked.push(form);
      refreshLive.delete(form.token ?? '');
      access.delete(form.token ?? '');
      return res.writeHead(200).end();
    }
    if (url.pathname.startsWith('/api/')) {
      const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '';
      const expires = access.get(token);
      const ok = expires !== undefined && expires + fake.graceMs > Date.now();
      fake.apiStatuses.push(ok ? 200 : 401);
      fake.apiBodies.push(body);
      return ok
        ? json(res, 200, { ok: true, path: url.pathname })
        : json(res, 401, { error: 'invalid_token' });
    }
    json(res, 404, { error: 'not_found' });
  };

  const server: Server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    handle(req, Buffer.concat(chunks).toString('utf8'), res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  fake.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return fake;
}
