import type { Deps } from '../shared/deps.ts';
import { type HttpEvent, type HttpResult, json } from '../shared/http.ts';

/**
 * The data plane's handler. The proxy itself (authentication, rules, injection, forwarding) is the
 * data-plane issue's work; until then every call is refused, closed, with the gateway's headers.
 */
export function createProxyHandler(_deps: Deps) {
  return async (_event: HttpEvent, context: { awsRequestId: string }): Promise<HttpResult> =>
    json(
      501,
      { message: 'The proxy data plane is not available in this build', code: 'not_implemented' },
      { 'keygate-proxy-code': 'proxy-not-implemented', 'keygate-request-id': context.awsRequestId },
    );
}
