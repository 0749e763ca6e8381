import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import type * as z from 'zod/mini';
import {
  DependencyUnavailableError,
  isAwsDependencyError,
  KeygateError,
  PayloadTooLargeError,
  ValidationError,
} from './errors.ts';
import { logger } from './logger.ts';

/** The API Gateway HTTP API (payload 2.0) event, which Lambda function URLs deliver too. */
export type HttpEvent = APIGatewayProxyEventV2;
export type HttpResult = APIGatewayProxyStructuredResultV2;

/** A JSON answer. */
export function json(statusCode: number, body: unknown, headers: Record<string, string> = {}): HttpResult {
  return {
    statusCode,
    headers: { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers },
    body: JSON.stringify(body),
  };
}

/** The body of a request as text, decoded from base64 when API Gateway encoded it. */
export function bodyText(event: HttpEvent): string {
  if (!event.body) return '';
  return event.isBase64Encoded ? Buffer.from(event.body, 'base64').toString('utf8') : event.body;
}

/** Parses and validates a JSON body: malformed JSON, a wrong shape or an oversized body is a 400/413. */
export function parseJsonBody<S extends z.ZodMiniType>(
  event: HttpEvent,
  schema: S,
  maxBytes: number,
): z.infer<S> {
  const text = bodyText(event);
  if (Buffer.byteLength(text, 'utf8') > maxBytes)
    throw new PayloadTooLargeError(`Request body over ${maxBytes} bytes`);
  let value: unknown;
  if (text.trim() === '') {
    value = {};
  } else {
    try {
      value = JSON.parse(text);
    } catch {
      throw new KeygateError(400, 'invalid_json', 'Request body is not valid JSON');
    }
  }
  return validate(schema, value, 'body');
}

/** Validates a value against a schema, turning failures into a 400 that names each field. */
export function validate<S extends z.ZodMiniType>(schema: S, value: unknown, where: string): z.infer<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issues = result.error.issues.map((i) => ({
    field: [where, ...i.path.map(String)].join('.'),
    message: i.message,
  }));
  const first = issues[0];
  throw new ValidationError(first ? `${first.field}: ${first.message}` : `Invalid ${where}`, issues);
}

/**
 * Maps any error to the JSON answer the caller sees. KeygateErrors speak for themselves; AWS SDK and
 * transport errors become 503 (fail closed); anything else is an unexposed 500. Stacks and raw
 * messages of unexpected errors are logged, never answered.
 */
export function errorToResult(error: unknown, requestId: string): HttpResult {
  let known: KeygateError | undefined;
  if (error instanceof KeygateError) known = error;
  else if (isAwsDependencyError(error)) {
    // Everything the Core API calls directly is DynamoDB; KMS calls are wrapped where they are made.
    known = new DependencyUnavailableError('store', error);
  } else if (isExposedHttpError(error)) {
    known = new KeygateError(
      error.statusCode,
      error.statusCode === 404 ? 'route_not_found' : 'bad_request',
      error.message,
    );
  }
  if (known?.statusCode === 503) {
    // One line per failed dependency call: the KmsErrors / StoreErrors metrics count these.
    const dependency = (known.details as { dependency?: string } | undefined)?.dependency ?? 'store';
    logger.error('dependency unavailable', {
      requestId,
      dependency,
      errorName: (known.cause as Error)?.name,
    });
  } else if (!known || known.statusCode >= 500) {
    logger.error('request failed', {
      requestId,
      errorName: (error as Error)?.name,
      errorMessage: (error as Error)?.message,
      statusCode: known?.statusCode ?? 500,
    });
  }
  if (!known) return json(500, { message: 'Internal error', code: 'internal_error', requestId });
  const body: Record<string, unknown> = {
    message: known.expose ? known.message : 'Internal error',
    code: known.code,
    requestId,
  };
  if (known.details !== undefined && known.expose && known.statusCode < 500) body.details = known.details;
  return json(known.statusCode, body);
}

function isExposedHttpError(error: unknown): error is Error & { statusCode: number } {
  const e = error as { statusCode?: unknown; expose?: unknown };
  return (
    error instanceof Error &&
    typeof e.statusCode === 'number' &&
    e.statusCode >= 400 &&
    e.statusCode < 500 &&
    e.expose !== false
  );
}

/** middy middleware: the single place errors turn into HTTP answers. */
export function jsonErrors() {
  return {
    name: 'jsonErrors',
    onError: async (request: { error: unknown; response: unknown; context: { awsRequestId?: string } }) => {
      request.response = errorToResult(request.error, request.context.awsRequestId ?? 'unknown');
    },
  };
}
