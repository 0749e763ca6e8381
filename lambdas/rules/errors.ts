import { KeygateError } from '../shared/errors.ts';

/**
 * A request the rules cannot judge safely: a body that cannot be read strictly, a value over the
 * length cap, a request over the work budget. Refused (fail closed), never guessed; the data plane
 * answers with `statusCode` and `code` (docs/rules.md "Refusals"), the simulate endpoint likewise.
 */
export class RuleInputError extends KeygateError {
  constructor(statusCode: 400 | 413, code: string, message: string) {
    super(statusCode, code, message);
    this.name = 'RuleInputError';
  }
}

export const unreadableBody = (why: string) =>
  new RuleInputError(
    400,
    'proxy-body-unreadable',
    `Body checks apply and the body cannot be read strictly: ${why}`,
  );
