import { BadRequestError } from '../shared/errors.ts';

/**
 * Domain-level validation errors, shaped like the schema ones (shared/http.ts `validate`): a 400
 * whose message starts with the field, and `details: [{ field, message }]`.
 */
export function fieldError(field: string, message: string, code = 'validation_failed'): BadRequestError {
  return new BadRequestError(`${field}: ${message}`, code, [{ field, message }]);
}

/** A read-only field sent back with another value is a 400 (it cannot be changed). */
export function checkImmutable(field: string, sent: unknown, stored: unknown) {
  if (sent !== undefined && sent !== stored)
    throw fieldError(`body.${field}`, 'cannot be changed', 'immutable_field');
}
