/**
 * The error hierarchy. Every error a handler may answer with is a KeygateError carrying its HTTP
 * status, a stable machine-readable `code` and whether its message may be shown to the caller.
 * One middleware (`http.ts`) turns them into JSON; nothing else serialises an error.
 */
export class KeygateError extends Error {
  readonly statusCode: number;
  readonly code: string;
  readonly expose: boolean;
  readonly details?: unknown;

  constructor(
    statusCode: number,
    code: string,
    message: string,
    options: { cause?: unknown; details?: unknown; expose?: boolean } = {},
  ) {
    super(message, { cause: options.cause });
    this.name = 'KeygateError';
    this.statusCode = statusCode;
    this.code = code;
    this.expose = options.expose ?? statusCode < 500;
    this.details = options.details;
  }
}

export class BadRequestError extends KeygateError {
  constructor(message: string, code = 'bad_request', details?: unknown) {
    super(400, code, message, { details });
    this.name = 'BadRequestError';
  }
}

export class ValidationError extends KeygateError {
  constructor(message: string, details?: unknown) {
    super(400, 'validation_failed', message, { details });
    this.name = 'ValidationError';
  }
}

export class UnauthorizedError extends KeygateError {
  constructor(message = 'Missing or invalid token') {
    super(401, 'unauthorized', message);
    this.name = 'UnauthorizedError';
  }
}

export class ForbiddenError extends KeygateError {
  constructor(message = 'Your role does not allow this') {
    super(403, 'forbidden', message);
    this.name = 'ForbiddenError';
  }
}

export class NotFoundError extends KeygateError {
  constructor(message = 'Not found', code = 'not_found') {
    super(404, code, message);
    this.name = 'NotFoundError';
  }
}

export class ConflictError extends KeygateError {
  constructor(message: string, code = 'conflict') {
    super(409, code, message);
    this.name = 'ConflictError';
  }
}

export class PayloadTooLargeError extends KeygateError {
  constructor(message = 'Request body too large') {
    super(413, 'payload_too_large', message);
    this.name = 'PayloadTooLargeError';
  }
}

/** A dependency (DynamoDB, KMS) failed: we fail closed and tell the caller to retry later. */
export class DependencyUnavailableError extends KeygateError {
  constructor(dependency: string, cause?: unknown) {
    super(503, 'service_unavailable', 'A backing service is unavailable; try again later', {
      cause,
      details: { dependency },
      expose: true,
    });
    this.name = 'DependencyUnavailableError';
  }
}

/**
 * True for errors thrown by an AWS SDK v3 client or its transport (timeouts, refused connections,
 * throttling, 5xx): these become a 503, never a 500 and never an open door.
 */
export function isAwsDependencyError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const e = error as Error & { $metadata?: unknown; $fault?: string; code?: string };
  if (e.$metadata !== undefined || e.$fault !== undefined) return true;
  return (
    ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN'].includes(e.code ?? '') ||
    e.name === 'TimeoutError' ||
    e.name === 'AbortError'
  );
}
