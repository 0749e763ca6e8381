/**
 * Shapes of AWS names keygate checks (awsSigV4 target credentials, the CDK context that lists the
 * roles the proxy may assume). Dependency-free: the CDK app imports it too.
 */
export const AWS_ROLE_ARN =
  /^arn:aws(?:-cn|-us-gov|-iso|-iso-b|-iso-e|-iso-f|-eusc)?:iam::\d{12}:role\/[\w+=,.@/-]{1,512}$/;
export const AWS_REGION = /^[a-z]{2}(?:-[a-z]+)+-\d{1,2}$/;
/** A SigV4 signing name (`bedrock`, `execute-api`, `s3`, …): lower-case letters, digits, hyphens. */
export const AWS_SIGNING_NAME = /^[a-z][a-z0-9-]{0,62}$/;
