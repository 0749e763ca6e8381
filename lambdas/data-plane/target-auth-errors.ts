/**
 * Failures of the signing target types (awsSigV4, jwt), mapped to answers in proxy-api.ts:
 * - TargetAuthError: the credential could not obtain what it signs with (STS refused the role,
 *   the token endpoint refused the assertion) → 502 proxy-upstream-auth-failed; never the vendor's
 *   or STS's own words, which may quote the request;
 * - SignedRequestError: the request cannot be signed as it would be sent (a query not in the
 *   encoding a signature covers) → 400 proxy-bad-request.
 * A faulty STS (5xx, throttling, unreachable) is neither: it stays an AWS dependency error → 503.
 */
export class TargetAuthError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TargetAuthError';
  }
}

export class SignedRequestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SignedRequestError';
  }
}
