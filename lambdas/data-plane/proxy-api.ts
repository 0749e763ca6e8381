import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import { GetCommand } from '@aws-sdk/lib-dynamodb';
import { credentialContext, DataKeyCache, openSecret, SecretIntegrityError } from '../crypto/envelope.ts';
import { RuleInputError } from '../rules/errors.ts';
import { evaluateRules, prepareRuleRequest } from '../rules/evaluator.ts';
import { PatternError } from '../rules/patterns.ts';
import type { Decision } from '../rules/types.ts';
import type { Cell, Deps } from '../shared/deps.ts';
import { isAwsDependencyError } from '../shared/errors.ts';
import type { HttpEvent, HttpResult } from '../shared/http.ts';
import { logger } from '../shared/logger.ts';
import { keys } from '../storage/keys.ts';
import type { ProxySnapshot } from '../storage/snapshot-types.ts';
import { loggerMetricFields, PRODUCT_METRICS } from '../telemetry/metrics.ts';
import type { ProxyDecision } from '../telemetry/record.ts';
import { newRequestId } from '../telemetry/request-id.ts';
import { AuthFailureBudget, type AuthFailureBudgetOptions, sourceKey } from './auth-failure-budget.ts';
import { authenticateByHash, type ConsumerAuth, isExpired } from './authenticate-consumer.ts';
import { ConsentRequiredError } from './authorization-code.ts';
import { canonicalRequest, FORWARDED_METHODS } from './canonical-path.ts';
import { dependencyOf, withDeadline } from './deadline.ts';
import { cleanConsumerHeaders, cleanUpstreamHeaders, headerRefusal, hostRefusal } from './header-hygiene.ts';
import { applyHeaders, applyQuery, InjectionError, injectionFor } from './inject-credential.ts';
import {
  DEFAULT_KEY_LOCATIONS,
  type LocatedKey,
  locateProxyKey,
  removeKeyHeaders,
  withoutKeyParams,
} from './key-locations.ts';
import { ValueReader } from './meter-values.ts';
import { type Admitted, applicableMeters, MeterBook } from './meters.ts';
import { OAuth2Error } from './oauth2-tokens.ts';
import type { OutcomeHook, ProxyOutcome } from './outcome.ts';
import { RateLimiter } from './rate-limit.ts';
import { rewriteLinks, routeOf } from './routing.ts';
import { SIGNED_TARGET_TYPES, SignedTargets } from './signed-targets.ts';
import { streamAnswer } from './stream-answer.ts';
import { SignedRequestError, TargetAuthError } from './target-auth-errors.ts';
import { TargetTokens } from './target-tokens.ts';
import {
  openUpstream,
  type StreamDeadlines,
  UpstreamError,
  type UpstreamPolicy,
  type UpstreamStream,
} from './upstream.ts';
import { JwksUnavailableError, JwtVerifier } from './verify-jwt.ts';

/**
 * The data plane: `{proxyBase}/api/{proxyId or alias}/{target path}?{query}`, or the host form
 * `{proxyId or alias}.{proxy domain}/{target path}` (routing.ts).
 *
 * One request, top to bottom:
 *  1. Host, route, method, smuggling shapes, canonical request — pure checks, no I/O; ambiguity is
 *     a 400; a source or proxy over its budget of failed authentications is a 429 here, before any
 *     I/O (auth-failure-budget.ts);
 *  2. ONE store round trip: the proxy's snapshot (strongly consistent GetItem);
 *  3. the consumer's key (constant time, one 401 for every failure), the proxy's state, limits
 *     (token leases spent locally: a store write only every many requests, rate-limit.ts);
 *  4. the rules, on the canonical request — a deny sends nothing anywhere; then the meters: an
 *     exhausted blocking meter is a 429 (leases again, meters.ts), the values are counted after the
 *     answer, read from it as it passes (meter-values.ts);
 *  5. the vendor secret: opened from its envelope (data key cached in memory, so KMS ~0 per
 *     request) and injected, replacing any consumer copy; oauth2 and customToken credentials
 *     inject a fetched token, cached in memory (target-tokens.ts);
 *  6. the call out, to a checked address, with exactly the checked path and the raw query; the
 *     answer goes back as it came, minus hop-by-hop headers: status and headers as soon as the
 *     vendor's arrive, then the body as it arrives, unbuffered and uncapped (stream-answer.ts),
 *     within the time-to-first-byte, idle and total deadlines (docs/streaming.md).
 * Every exit produces one outcome for telemetry (a streamed answer's when its stream closes). Any store or KMS failure is a 503: closed, never
 * open. Nothing here caches whether a key is valid; revocation, rotation and rule changes are seen
 * by the very next request.
 */
export interface ProxyHandlerOptions {
  /** Receives one outcome per request (telemetry). Called synchronously; must not throw or block. */
  onOutcome?: OutcomeHook;
  /**
   * Records that the call is going out, before its first byte does (the audit trail's start
   * record, docs/audit-trail.md). Synchronous; when it throws, nothing is sent and the answer is a
   * 503: a call that could not be recorded is not made.
   */
  onCallOut?: OutcomeHook;
  /** The region whose cell this proxy serves; default the deployment's own region. */
  region?: string;
  /** Deadlines of the call out, unless the proxy sets its own (`proxyTimeouts`); see DEFAULT_DEADLINES. */
  deadlines?: Partial<StreamDeadlines>;
  /** Deadline of each store or KMS step (SDK retries included); default 2 s. Past it: 503. */
  dependencyTimeoutMs?: number;
  /** Budget of failed authentications per source and per proxy (auth-failure-budget.ts). */
  authFailureBudget?: AuthFailureBudgetOptions;
  /** The rate limiter (its stats count claims); default: one per handler, on the cell's table. */
  rateLimiter?: RateLimiter;
  /**
   * The domain under which `{proxyId or alias}.{domain}` routes to a proxy (routing.ts); default
   * the deployment's KEYGATE_PROXY_DOMAIN, else `localhost`.
   */
  proxyDomain?: string;
  /**
   * Every request this handler serves goes to this proxy id or alias, whatever its path and Host
   * (local mode's alias ports, `KEYGATE_ALIAS_PORTS`: for SDKs that take only host/port/protocol).
   */
  fixedRoute?: string;
}

/**
 * Deadlines of a forwarded call (docs/streaming.md): the vendor's headers within 60 s, never more
 * than 5 min of silence (API Gateway's own idle limit for streams), 15 min in all (Lambda's limit;
 * the function's remaining time caps it further).
 */
export const DEFAULT_DEADLINES: StreamDeadlines = { firstByteMs: 60_000, idleMs: 300_000, totalMs: 900_000 };
/** Left between the total deadline and the function's own timeout, to close the stream cleanly. */
const FUNCTION_MARGIN_MS = 1000;
/** Token endpoints and JWKS: small answers, buffered. */
const AUXILIARY_POLICY = { timeoutMs: 10_000, maxResponseBytes: 1024 * 1024 };

/**
 * What the handler answers: a gateway answer (JSON string body) or the vendor's answer with its body
 * still streaming. The Lambda wrapper (streaming-lambda.ts) sends the status and headers at once,
 * then pipes the body.
 */
export type ProxyResult = Omit<HttpResult, 'body'> & { body?: string | Readable };

/** What the handler reads of the Lambda context: the time left, which caps the total deadline. */
export interface ProxyContext {
  getRemainingTimeInMillis(): number;
}
export const DEFAULT_DEPENDENCY_TIMEOUT_MS = 2000;

const PROXY_ID = /^[A-Za-z0-9_-]{1,128}$/;

type Refusal = {
  status: number;
  code: string;
  decision: ProxyDecision;
  message: string;
  headers?: Record<string, string>;
};

const REFUSALS = {
  route: {
    status: 404,
    code: 'proxy-route-not-found',
    decision: 'bad_request',
    message: 'Use /api/{proxyId or alias}/{path}, or the host name {proxyId or alias}.{proxy domain}',
  },
  method: {
    status: 405,
    code: 'proxy-method-not-allowed',
    decision: 'bad_request',
    message: 'This method is never forwarded',
  },
  unauthorized: {
    status: 401,
    code: 'proxy-unauthorized',
    decision: 'unauthenticated',
    message: 'Missing or invalid proxy key',
  },
  authThrottled: {
    status: 429,
    code: 'proxy-auth-throttled',
    decision: 'unauthenticated',
    message: 'Too many failed authentications; try again later',
  },
  inactive: {
    status: 403,
    code: 'proxy-inactive',
    decision: 'inactive',
    message: 'This proxy is not active',
  },
  noTargetCredential: {
    status: 403,
    code: 'proxy-target-credential-unavailable',
    decision: 'inactive',
    message: 'The target credential of this proxy was deleted or has expired',
  },
  denied: {
    status: 403,
    code: 'proxy-access-denied',
    decision: 'denied',
    message: 'No rule allows this request',
  },
  timeout: {
    status: 504,
    code: 'proxy-upstream-timeout',
    decision: 'error',
    message: 'The target did not answer in time',
  },
  unreachable: {
    status: 502,
    code: 'proxy-upstream-unreachable',
    decision: 'error',
    message: 'The target could not be reached',
  },
  addressRefused: {
    status: 502,
    code: 'proxy-target-refused',
    decision: 'error',
    message: 'The target is not a public https address',
  },
  tooLarge: {
    status: 413,
    code: 'proxy-response-too-large',
    decision: 'error',
    message: 'The target answer is over the size cap',
  },
  consentRequired: {
    status: 403,
    code: 'proxy-target-credential-pending',
    decision: 'inactive',
    message: 'The target credential awaits the user’s consent (oauth2 authorization code)',
  },
  tokenEndpoint: {
    status: 502,
    code: 'proxy-upstream-auth-failed',
    decision: 'error',
    message: 'The target credential could not obtain an access token',
  },
  dependency: {
    status: 503,
    code: 'proxy-dependency-unavailable',
    decision: 'error',
    message: 'A backing service is unavailable; try again later',
  },
  integrity: {
    status: 500,
    code: 'proxy-credential-integrity-failure',
    decision: 'error',
    message: 'A stored credential failed its integrity check',
  },
  internal: { status: 500, code: 'proxy-internal-error', decision: 'error', message: 'Internal error' },
} satisfies Record<string, Refusal>;

export function createProxyHandler(deps: Deps, options: ProxyHandlerOptions = {}) {
  const region = options.region ?? deps.config.homeRegion;
  const cell: Cell | undefined = deps.cells[region];
  if (!cell) throw new Error(`keygate proxy: no cell configured for region ${region}`);
  const policy: UpstreamPolicy = {
    allowlist: deps.config.targetAllowlist,
    ownPorts: deps.config.ownPorts,
    ...AUXILIARY_POLICY,
  };
  const defaults: StreamDeadlines = { ...DEFAULT_DEADLINES, ...options.deadlines };
  const dependencyMs = options.dependencyTimeoutMs ?? DEFAULT_DEPENDENCY_TIMEOUT_MS;
  const dataKeys = new DataKeyCache();
  const limiter = options.rateLimiter ?? new RateLimiter(cell, dependencyMs);
  const meterBook = new MeterBook(limiter);
  const signedTargets = new SignedTargets(policy);
  const targetTokens = new TargetTokens(policy, dataKeys, dependencyMs);
  const jwtVerifier = new JwtVerifier(policy);
  const authBudget = new AuthFailureBudget(options.authFailureBudget);
  const proxyDomain = options.proxyDomain ?? deps.config.proxyDomain ?? 'localhost';

  async function handle(
    event: HttpEvent,
    o: ProxyOutcome,
    now: Date,
    ctx: Call,
  ): Promise<HttpResult | ProxyResult> {
    // 1. Host, route, method, header shapes and the canonical request: no I/O, nothing ambiguous passes.
    const ambiguousHost = hostRefusal(event.rawPath, event.headers?.host);
    if (ambiguousHost) return badRequest(o, ambiguousHost);
    event.headers ??= {};
    const route = routeOf(originForm(event.rawPath), event.headers, proxyDomain, options.fixedRoute);
    if (!route) return refuse(o, REFUSALS.route);
    const { ref, targetRawPath } = route;
    o.proxyId = ref;
    o.path = targetRawPath;
    if (!FORWARDED_METHODS.has(o.method))
      return refuse(o, { ...REFUSALS.method, headers: { allow: [...FORWARDED_METHODS].join(', ') } });
    const smuggling = headerRefusal(event.headers);
    if (smuggling) return badRequest(o, smuggling);
    const headers = cleanConsumerHeaders(event.headers, event.cookies);
    o.headers = withoutCookies(headers);
    const body = requestBody(event);
    o.bytes.in = body.length;
    const canonicalOf = (rawQuery: string) =>
      canonicalRequest({ method: o.method, rawPath: targetRawPath, rawQuery, headers, body });
    const canonical = canonicalOf(event.rawQueryString);
    if (!canonical.ok) return badRequest(o, canonical.reason);
    let req = canonical.value;
    o.path = req.path;

    // A source or proxy that used up its budget of failed authentications: 429, no I/O at all.
    const authDigest = keyMaterialDigest(event.headers);
    const sourceIp = event.requestContext.http.sourceIp;
    const budget = authBudget.check(sourceIp, ref, authDigest, now.getTime());
    if (!budget.ok)
      return refuse(o, {
        ...REFUSALS.authThrottled,
        headers: { 'retry-after': String(budget.retryAfterSeconds) },
      });

    // 2. One store round trip: the snapshot.
    const storeStart = performance.now();
    const snapshot = PROXY_ID.test(ref)
      ? await withDeadline(
          (signal) => readSnapshot(cell!, ref, route.byAlias, signal),
          dependencyMs,
          'the store',
        )
      : undefined;
    o.durations.storeMs = performance.now() - storeStart;
    const proxyId = snapshot?.proxyId ?? ref;
    o.proxyId = proxyId;

    // 3. Who is calling. Every failure is the same 401 after the same work. The key is read from
    //    the places the credential lists, and removed from all of them before the rules, the
    //    request log and the vendor see the request (key-locations.ts).
    const locations = snapshot?.proxyCredential?.credentialKeyLocations ?? DEFAULT_KEY_LOCATIONS;
    const located = locateProxyKey(locations, event.headers, event.rawQueryString);
    const rawQuery = withoutKeyParams(locations, event.rawQueryString);
    if (removeKeyHeaders(locations, headers) || rawQuery !== event.rawQueryString) {
      o.headers = withoutCookies(headers);
      o.query = rawQuery;
      const stripped = canonicalOf(rawQuery);
      if (!stripped.ok) return badRequest(o, stripped.reason);
      req = stripped.value;
    }
    const auth = await authenticate(snapshot, located, event.headers.authorization, now);
    // The proxy's owner sees refused calls in its telemetry too (a flood of bad keys is an anomaly).
    if (snapshot) o.clientId = snapshot.clientId;
    if (!snapshot || !auth.ok) {
      for (const scope of authBudget.recordFailure(sourceIp, ref, now.getTime()))
        flagAuthFailureBurst(scope, scope === 'source' ? sourceKey(sourceIp) : ref, o, now);
      return refuse(o, REFUSALS.unauthorized);
    }
    authBudget.recordSuccess(ref, authDigest);
    o.proxyCredentialId = auth.credentialId;
    o.targetId = snapshot.target.targetId;
    o.targetCredentialId = snapshot.targetCredential?.credentialId;
    if (!snapshot.proxyActive) return refuse(o, REFUSALS.inactive);
    const targetCredential = snapshot.targetCredential;
    if (!targetCredential || isExpired(targetCredential.expiresAt, now))
      return refuse(o, REFUSALS.noTargetCredential);
    // Only now, authenticated, may the request spend a token: wrong keys burn nothing.
    const limit = await withDeadline(
      limiter.check(
        proxyId,
        { minute: snapshot.proxyMaxRequestsPerMinute, day: snapshot.proxyMaxRequestsPerDay },
        now,
      ),
      dependencyMs,
      'the store',
    );
    if (!limit.ok)
      return refuse(o, {
        status: 429,
        code: 'proxy-rate-limited',
        decision: 'rate_limited',
        message: 'Over this proxy’s request limit',
        headers: { 'retry-after': String(limit.retryAfterSeconds) },
      });

    // 4. The rules, on exactly what will be sent. The body is read (strictly) only when a rule
    //    checks it; a content-decoded body is sent decoded, as it was checked.
    const rulesStart = performance.now();
    let decision: Decision;
    let outBody = body;
    try {
      const prepared = prepareRuleRequest(req, snapshot.rules);
      decision = evaluateRules(prepared.req, snapshot.rules, {
        proxyDefault: snapshot.proxyDefaultRuleEffect,
        targetDefault: snapshot.target.targetDefaultRuleEffect,
      });
      if (prepared.decoded) {
        outBody = prepared.decoded;
        delete headers['content-encoding'];
      }
    } catch (error) {
      const refusal = ruleRefusal(error);
      if (!refusal) throw error;
      o.durations.rulesMs = performance.now() - rulesStart;
      return refuse(o, refusal);
    }
    o.durations.rulesMs = performance.now() - rulesStart;
    o.rule = decidingRule(decision);
    if (decision.effect !== 'allow') return refuse(o, REFUSALS.denied);

    // 5. The vendor secret, opened and injected.
    const cryptoStart = performance.now();
    const secretJson =
      targetCredential.sealedSecret === undefined
        ? '{}'
        : await withDeadline(
            openSecret(
              cell!.kms,
              targetCredential.sealedSecret,
              credentialContext(
                snapshot.clientId,
                targetCredential.credentialId,
                targetCredential.secretRevision,
              ),
              dataKeys,
            ),
            dependencyMs,
            'KMS',
          );
    const secret = parseSecret(secretJson);
    o.durations.cryptoMs = performance.now() - cryptoStart;
    const tokenSource = {
      cell: cell!,
      clientId: snapshot.clientId,
      credential: targetCredential,
      secret,
      secretJson,
    };
    const accessToken = await targetTokens.token(tokenSource);
    // awsSigV4 and jwt: credentials or a token made for this credential (signed-targets.ts).
    const signed = SIGNED_TARGET_TYPES.has(targetCredential.credentialAuthType)
      ? await signedTargets.prepare(
          cell!.sts,
          targetCredential.credentialId,
          targetCredential.credentialAuthType,
          secretJson,
          secret,
        )
      : undefined;
    let injection =
      signed?.injection ?? injectionFor(targetCredential.credentialAuthType, secret, accessToken);
    // What to inject instead once the vendor refused our token (401); none when nothing was fetched.
    const refreshed =
      signed?.refresh ??
      (accessToken
        ? async () =>
            injectionFor(
              targetCredential.credentialAuthType,
              secret,
              await targetTokens.token(tokenSource, accessToken),
            )
        : undefined);

    // 6. The call out: checked address, checked path, raw query; the answer as it came.
    const base = new URL(snapshot.target.targetBaseURL);
    const basePath = base.pathname.endsWith('/') ? base.pathname.slice(0, -1) : base.pathname;
    const query = applyQuery(rawQuery, injection);
    const pathAndQuery = `${basePath}${req.path}${query ? `?${query}` : ''}`;
    signed?.check?.(pathAndQuery);
    const deadlines = deadlinesFor(snapshot, defaults, ctx.remainingMs);
    const upstreamStart = performance.now();
    const send = async () => {
      let outgoing = { ...headers };
      applyHeaders(outgoing, injection);
      const request = { url: base, pathAndQuery, method: o.method, headers: outgoing, body: outBody };
      if (signed?.sign) outgoing = await signed.sign(request);
      const left = deadlines.totalMs - (performance.now() - upstreamStart);
      return openUpstream(
        { ...request, headers: outgoing },
        {
          allowlist: policy.allowlist,
          ownPorts: policy.ownPorts,
          firstByteMs: Math.min(deadlines.firstByteMs, left),
        },
      );
    };
    // The meters: one unit of each blocking meter's budget, or a 429 (meters.ts).
    const meters = applicableMeters(snapshot, o.method, req.path);
    let admitted: Admitted[] = [];
    if (meters.length > 0) {
      const admission = await withDeadline(meterBook.admit(meters, now), dependencyMs, 'the store');
      if (!admission.ok) {
        meterBook.refused(admission.meter, proxyId, now);
        o.meters = [{ meterId: admission.meter.meterId, value: 0, blocked: true }];
        return refuse(o, {
          status: 429,
          code: 'proxy-meter-exhausted',
          decision: 'rate_limited',
          message: `Over the ${admission.meter.window} budget of meter '${admission.meter.meterName}'`,
          headers: { 'retry-after': String(admission.retryAfterSeconds) },
        });
      }
      admitted = admission.admitted;
    }
    // The start record is durable before the first byte goes out (docs/audit-trail.md).
    if (options.onCallOut) {
      o.durations.gatewayMs = performance.now() - ctx.started;
      try {
        options.onCallOut(o);
      } catch {
        logger.error('call-out record not written', { requestId: o.requestId });
        meterBook.release(admitted);
        return refuse(o, REFUSALS.dependency);
      }
    }
    let res: UpstreamStream;
    try {
      res = await send();
      if (res.status === 401 && refreshed) {
        // The vendor refused our token (revoked early, or our clock is off): one fresh token, one
        // retry. The body is a buffer, so the retry sends exactly what was checked.
        res.body.destroy();
        injection = await refreshed();
        res = await send();
      }
    } catch (error) {
      o.durations.upstreamMs = performance.now() - upstreamStart;
      meterBook.release(admitted);
      throw error;
    }
    const ttfb = performance.now() - upstreamStart;
    o.durations.ttfbMs = ttfb;
    o.proxyCode = 'proxy-access-granted';
    o.decision = 'allowed';
    o.status = res.status;
    const answer = cleanUpstreamHeaders(res.rawHeaders);
    rewriteLinks(answer.headers, base, route.publicBase);
    ctx.streamed = true;
    const reader = admitted.some((a) => a.meter.meterType === 'response_value')
      ? new ValueReader(
          admitted.map((a) => a.meter),
          res.body.headers,
        )
      : undefined;
    const answerBody = streamAnswer(res.body, {
      idleMs: deadlines.idleMs,
      remainingMs: deadlines.totalMs - ttfb,
      startedAt: upstreamStart,
      onChunk: reader ? (chunk) => reader.push(chunk) : undefined,
      onEnd: (summary) => {
        o.end = summary.end;
        o.bytes.out = summary.bytes;
        o.durations.upstreamMs = summary.durationMs;
        if (admitted.length === 0) return ctx.emit();
        // Off the consumer's path: the answer is already out. The record waits for the values.
        settleMeters(admitted, reader, o, now).finally(ctx.emit);
      },
    });
    return {
      statusCode: res.status,
      headers: { ...answer.headers, 'keygate-proxy-code': o.proxyCode, 'keygate-request-id': o.requestId },
      cookies: answer.cookies.length > 0 ? answer.cookies : undefined,
      body: answerBody,
    };
  }

  /** Counts a call's meter values (meters.ts) into its outcome; a failure loses them, logged, never thrown. */
  async function settleMeters(
    admitted: Admitted[],
    reader: ValueReader | undefined,
    o: ProxyOutcome,
    now: Date,
  ) {
    try {
      const read = reader ? await reader.finish() : undefined;
      o.meters = await meterBook.settle(admitted, read, now);
    } catch (error) {
      logger.error('meter values not counted', { requestId: o.requestId, errorName: errorName(error) });
    }
  }

  /**
   * A budget of failed authentications was just used up: one log line per scope and window, with
   * the AnomalyFlags and ProxyAuthFailureBursts metrics (embedded metric format), so a key-guessing
   * flood raises the same alarm as any other anomaly. Never a key or digest in the line.
   */
  function flagAuthFailureBurst(scope: 'source' | 'proxy', key: string, o: ProxyOutcome, now: Date) {
    logger.warn('auth failure burst', {
      ...loggerMetricFields([PRODUCT_METRICS.anomalyFlags, PRODUCT_METRICS.authFailureBursts], now.getTime()),
      anomaly: {
        type: 'auth_failure_burst',
        scope,
        threshold: scope === 'source' ? authBudget.perSource : authBudget.perProxy,
      },
      ...(scope === 'source' ? { source: key } : {}),
      proxyId: o.proxyId,
      clientId: o.clientId,
    });
  }

  /**
   * Hash check for apiKey/bearer/basicAuth (of the key where it was found), signature check for
   * jwtVerify (Authorization only); unknown proxy, no key or an ambiguous one: the same hash work.
   */
  async function authenticate(
    snapshot: ProxySnapshot | undefined,
    located: LocatedKey,
    authorization: string | undefined,
    now: Date,
  ): Promise<ConsumerAuth> {
    const credential = snapshot?.proxyCredential;
    if (!snapshot || credential?.credentialAuthType !== 'jwtVerify' || !credential.jwt) {
      if (located.kind === 'authorization') return authenticateByHash(credential, located.value, now);
      if (located.kind === 'bare') return authenticateByHash(credential, located.value, now, true);
      authenticateByHash(credential, '', now);
      return { ok: false };
    }
    authenticateByHash(undefined, authorization, now);
    if (isExpired(credential.expiresAt, now) || !authorization || !/^bearer /i.test(authorization))
      return { ok: false };
    const sealed = credential.jwt.sealedSecret;
    const shared =
      sealed === undefined
        ? undefined
        : sharedSecretOf(
            await withDeadline(
              openSecret(
                cell!.kms,
                sealed,
                credentialContext(snapshot.clientId, credential.credentialId, credential.secretRevision),
                dataKeys,
              ),
              dependencyMs,
              'KMS',
            ),
          );
    const valid = await jwtVerifier.verify(authorization.slice(7).trim(), credential.jwt, shared);
    return valid ? { ok: true, credentialId: credential.credentialId } : { ok: false };
  }

  /**
   * One request. A gateway answer's outcome is emitted before it is returned; a streamed answer's
   * when its stream closes (with its bytes, end reason and durations).
   */
  return async function proxyHandler(event: HttpEvent, context?: ProxyContext): Promise<ProxyResult> {
    const started = performance.now();
    const now = deps.now();
    const o = newOutcome(event, now);
    const emit = () => {
      if (!options.onOutcome) return;
      try {
        options.onOutcome(o);
      } catch {
        // Telemetry never changes an answer.
      }
    };
    const call: Call = {
      streamed: false,
      emit,
      started,
      remainingMs: context?.getRemainingTimeInMillis?.(),
    };
    let result: ProxyResult;
    try {
      result = await handle(event, o, now, call);
    } catch (error) {
      result = refuse(o, refusalFor(error));
      const dependency = dependencyOf(error);
      if (o.status === 503 && dependency) o.failedDependency = dependency === 'KMS' ? 'kms' : 'store';
      if (error instanceof SecretIntegrityError) o.integrityFailure = true;
      if (o.status >= 500)
        logger.error('proxy request failed', { requestId: o.requestId, errorName: errorName(error) });
    }
    o.durations.gatewayMs = Math.max(
      0,
      performance.now() - started - (o.durations.ttfbMs ?? o.durations.upstreamMs ?? 0),
    );
    if (!call.streamed) emit();
    return result;
  };
}

/** The per-request state shared by the handler's steps and the stream's end. */
interface Call {
  streamed: boolean;
  emit(): void;
  /** performance.now() when the request arrived. */
  started: number;
  /** The Lambda function's remaining time when the request arrived (absent: no cap). */
  remainingMs?: number;
}

/**
 * The deadlines of one call: the proxy's own (`proxyTimeouts`) over the deployment's defaults, the
 * total capped by the time the function has left.
 */
export function deadlinesFor(
  snapshot: Pick<ProxySnapshot, 'proxyTimeouts'>,
  defaults: StreamDeadlines,
  remainingMs?: number,
): StreamDeadlines {
  const own: Partial<StreamDeadlines> = snapshot.proxyTimeouts ?? {};
  const pick = (v: unknown, fallback: number) =>
    typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : fallback;
  const totalMs = Math.min(
    pick(own.totalMs, defaults.totalMs),
    remainingMs === undefined ? Number.POSITIVE_INFINITY : Math.max(0, remainingMs - FUNCTION_MARGIN_MS),
  );
  return {
    firstByteMs: Math.min(pick(own.firstByteMs, defaults.firstByteMs), totalMs),
    idleMs: pick(own.idleMs, defaults.idleMs),
    totalMs,
  };
}

/** The snapshot by proxy id, or its alias copy (keys.aliasSnapshot): one GetItem either way. */
async function readSnapshot(
  cell: Cell,
  ref: string,
  byAlias: boolean,
  abortSignal: AbortSignal,
): Promise<ProxySnapshot | undefined> {
  const key = byAlias ? keys.aliasSnapshot(ref) : keys.proxySnapshot(ref);
  const out = await cell.ddb.send(
    new GetCommand({ TableName: cell.tableName, Key: key, ConsistentRead: true }),
    // Aborts the call itself (and frees its socket) when the store hangs; withDeadline answers.
    { abortSignal },
  );
  if (out.Item === undefined) return undefined;
  if (!isSnapshot(out.Item, ref, byAlias)) throw new MalformedSnapshotError();
  return out.Item;
}

/**
 * A stored snapshot the proxy cannot read (a hand-edited item, a half-migrated shape) is a fault
 * of the store, not a reason to guess: it fails closed with the same 503 as an unreachable table
 * and counts as a store error. Only what the hot path relies on is checked — a handful of typeof
 * tests, nothing that costs.
 */
export class MalformedSnapshotError extends Error {
  constructor() {
    super('the stored proxy snapshot is malformed');
    this.name = 'MalformedSnapshotError';
  }
}

const RULE_SCOPES = ['proxyCredential', 'targetCredential', 'proxy', 'target'] as const;

function isSnapshot(
  item: Record<string, unknown>,
  ref: string,
  byAlias: boolean,
): item is ProxySnapshot & Record<string, unknown> {
  const s = item as Partial<ProxySnapshot>;
  return (
    (byAlias ? s.proxyAlias === ref && typeof s.proxyId === 'string' : s.proxyId === ref) &&
    typeof s.clientId === 'string' &&
    typeof s.proxyActive === 'boolean' &&
    typeof s.version === 'number' &&
    typeof s.target?.targetBaseURL === 'string' &&
    typeof s.rules === 'object' &&
    s.rules !== null &&
    RULE_SCOPES.every((scope) => Array.isArray(s.rules![scope])) &&
    (s.meters === undefined || Array.isArray(s.meters)) &&
    (s.proxyCredential === undefined || typeof s.proxyCredential.credentialAuthType === 'string') &&
    (s.targetCredential === undefined || typeof s.targetCredential.credentialAuthType === 'string')
  );
}

/**
 * The origin-form path of a request target: an absolute-form target (`http://host/api/…`, which
 * only the local front can deliver; hostRefusal has checked its host) loses its scheme and host.
 */
function originForm(rawPath: string): string {
  const absolute = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/[^/?#]*/.exec(rawPath);
  if (!absolute) return rawPath;
  return rawPath.slice(absolute[0].length) || '/';
}

/**
 * What identifies a caller's key before the snapshot (and so the credential's key locations) is
 * read: Authorization and every header whose name says key or token. Query parameters are left
 * out (they change from call to call); a key presented only there is budgeted like no key.
 */
function keyMaterialDigest(headers: Record<string, string | undefined>): string {
  const hash = createHash('sha256').update(headers.authorization ?? '');
  for (const name of Object.keys(headers).sort())
    if (/key|token/.test(name)) hash.update(`\n${name}:${headers[name] ?? ''}`);
  return hash.digest('base64');
}

function newOutcome(event: HttpEvent, now: Date): ProxyOutcome {
  return {
    requestId: newRequestId(now),
    processedAt: now.toISOString(),
    proxyId: '',
    method: event.requestContext.http.method,
    path: '',
    query: event.rawQueryString,
    headers: {},
    status: 0,
    proxyCode: '',
    decision: 'error',
    durations: { gatewayMs: 0 },
    bytes: { in: 0, out: 0 },
    sourceIp: event.requestContext.http.sourceIp,
    userAgent: event.requestContext.http.userAgent || undefined,
  };
}

/**
 * The `error.type` of a gateway answer, in the vocabulary vendor SDKs share (Stripe, OpenAI and
 * Anthropic pick their error class by status and read `error.message` / `error.type`).
 */
function errorType(status: number): string {
  if (status === 401) return 'authentication_error';
  if (status === 403) return 'permission_error';
  if (status === 404) return 'not_found_error';
  if (status === 413) return 'request_too_large';
  if (status === 429) return 'rate_limit_error';
  if (status >= 500) return 'api_error';
  return 'invalid_request_error';
}

/**
 * A gateway answer: JSON body, the proxy code and the request id, recorded in the outcome. The body
 * carries `error: {type, code, message}` besides the flat fields, so vendor SDKs raise their usual
 * error classes with keygate's message (docs/sdks.md).
 */
function refuse(o: ProxyOutcome, r: Refusal): HttpResult {
  o.status = r.status;
  o.proxyCode = r.code;
  o.decision = r.decision;
  const body = JSON.stringify({
    message: r.message,
    code: r.code,
    requestId: o.requestId,
    error: { type: errorType(r.status), code: r.code, message: r.message },
  });
  o.bytes.out = Buffer.byteLength(body);
  return {
    statusCode: r.status,
    headers: {
      'content-type': 'application/json',
      'cache-control': 'no-store',
      'keygate-proxy-code': r.code,
      'keygate-request-id': o.requestId,
      ...r.headers,
    },
    body,
  };
}

function badRequest(o: ProxyOutcome, reason: string): HttpResult {
  return refuse(o, {
    status: 400,
    code: 'proxy-bad-request',
    decision: 'bad_request',
    message: `Refused an ambiguous or malformed request: ${reason}`,
  });
}

/**
 * A request the rules cannot judge within their limits (unreadable body, value too long, over the
 * work budget) is refused with the error's own status and code; a stored pattern over today's
 * limits (saved before they tightened) denies rather than guesses.
 */
function ruleRefusal(error: unknown): Refusal | undefined {
  if (error instanceof RuleInputError)
    return { status: error.statusCode, code: error.code, decision: 'bad_request', message: error.message };
  if (error instanceof PatternError)
    return {
      status: 403,
      code: 'proxy-rule-invalid',
      decision: 'denied',
      message: 'A rule of this proxy is over the pattern limits; save it again',
    };
  return undefined;
}

/** Failures thrown on the way map here, in one place. Unknown errors are a bare 500. */
function refusalFor(error: unknown): Refusal {
  if (error instanceof UpstreamError) {
    if (error.kind === 'timeout') return REFUSALS.timeout;
    if (error.kind === 'too_large') return REFUSALS.tooLarge;
    if (error.kind === 'address_refused') {
      const r = REFUSALS.addressRefused;
      return error.hint ? { ...r, message: `${r.message}; ${error.hint}` } : r;
    }
    return REFUSALS.unreachable;
  }
  if (error instanceof ConsentRequiredError) return REFUSALS.consentRequired;
  if (error instanceof OAuth2Error || error instanceof TargetAuthError) return REFUSALS.tokenEndpoint;
  if (error instanceof SignedRequestError)
    return {
      status: 400,
      code: 'proxy-bad-request',
      decision: 'bad_request',
      message: `Refused an ambiguous or malformed request: ${error.message}`,
    };
  // Before the dependency check: a moved or rolled-back blob is tampering, not a KMS outage.
  if (error instanceof SecretIntegrityError) return REFUSALS.integrity;
  if (
    error instanceof JwksUnavailableError ||
    error instanceof MalformedSnapshotError ||
    isAwsDependencyError(error)
  )
    return REFUSALS.dependency;
  return REFUSALS.internal;
}

/** The error's class name only: messages of unexpected errors may quote data (JSON.parse does). */
function errorName(error: unknown): string {
  return error instanceof InjectionError ? error.message : ((error as Error)?.name ?? typeof error);
}

function requestBody(event: HttpEvent): Buffer {
  if (!event.body) return Buffer.alloc(0);
  return Buffer.from(event.body, event.isBase64Encoded ? 'base64' : 'utf8');
}

function withoutCookies(headers: Record<string, string>): Record<string, string> {
  if (!('cookie' in headers)) return headers;
  const { cookie: _cookie, ...rest } = headers;
  return rest;
}

function parseSecret(json: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    throw new InjectionError('the target credential secret is not JSON');
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw new InjectionError('the target credential secret is not an object');
  return value as Record<string, unknown>;
}

/** jwtVerify shared secret: the sealed credentialSecret JSON's `secret`, or the sealed string itself. */
function sharedSecretOf(opened: string): string {
  try {
    const value = JSON.parse(opened) as { secret?: unknown };
    if (typeof value?.secret === 'string') return value.secret;
  } catch {
    // Not JSON: the sealed value is the secret.
  }
  return opened;
}

function decidingRule(decision: Decision): ProxyOutcome['rule'] {
  if (decision.reason !== 'rule') return undefined;
  return {
    ruleId: decision.ruleId,
    scope: decision.scope,
    effect: decision.effect,
    priority: decision.priority,
  };
}
