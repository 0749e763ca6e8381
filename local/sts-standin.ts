import { randomBytes, randomUUID } from 'node:crypto';

/**
 * An STS stand-in for local mode and tests: `AssumeRole` in STS's own wire protocol (AWS Query:
 * a form-encoded POST with `Action=AssumeRole&Version=2011-06-15`, answered in XML), so the real
 * `@aws-sdk/client-sts` the proxy uses for `awsSigV4` targets runs unchanged against it. It is
 * served by the KMS stand-in's server (./kms-server.ts), behind the same caller check: only the
 * local gateway's own signed calls reach it, as only the proxy's role may call STS in AWS.
 *
 * What it keeps of STS: the role ARN must be an IAM role ARN, the session name follows STS's
 * pattern, DurationSeconds is 900–43200 (default 3600), and the answer holds a fresh temporary key
 * pair (`ASIA…`), a session token and the expiry. Roles listed in `refusedRoles` answer
 * AccessDenied, as a role whose trust policy does not name the caller would. Every call is recorded
 * (`calls`) and every issued key pair is kept (`issued`), so a test can verify a signature made
 * with it — the way AWS itself checks a signature by a temporary key.
 */
export interface AssumeRoleCall {
  roleArn: string;
  roleSessionName: string;
  externalId?: string;
  durationSeconds: number;
}

export interface IssuedCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken: string;
  expiration: Date;
  roleArn: string;
  externalId?: string;
}

export interface StsStandIn {
  calls: AssumeRoleCall[];
  issued: Map<string, IssuedCredentials>;
  /** Role ARNs that answer AccessDenied. */
  refusedRoles: Set<string>;
  /** Lifetime of issued credentials when the caller names none, in seconds (STS: 3600). */
  defaultDurationSeconds: number;
  /** Answers one form-encoded STS request: status and XML body. */
  answer(form: string): { status: number; body: string };
}

const ROLE_ARN = /^arn:aws[a-z-]*:iam::\d{12}:role\/[\w+=,.@/-]{1,512}$/;
const SESSION_NAME = /^[\w+=,.@-]{2,64}$/;
const EXTERNAL_ID = /^[\w+=,.@:/-]{2,1224}$/;
const XMLNS = 'https://sts.amazonaws.com/doc/2011-06-15/';

class StsFault extends Error {
  readonly code: string;
  readonly status: number;
  constructor(code: string, message: string, status = 400) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

function xmlEscape(s: string): string {
  return s.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Is this form body an STS request (rather than a KMS JSON one)? */
export function isStsRequest(contentType: string | undefined): boolean {
  return (contentType ?? '').toLowerCase().startsWith('application/x-www-form-urlencoded');
}

export function createStsStandIn(): StsStandIn {
  const standIn: StsStandIn = {
    calls: [],
    issued: new Map(),
    refusedRoles: new Set(),
    defaultDurationSeconds: 3600,
    answer(form) {
      const requestId = randomUUID();
      try {
        const params = new URLSearchParams(form);
        if (params.get('Version') !== '2011-06-15')
          throw new StsFault('InvalidAction', 'Unsupported STS API version');
        if (params.get('Action') !== 'AssumeRole')
          throw new StsFault('InvalidAction', `Could not find operation ${params.get('Action') ?? ''}`);
        return { status: 200, body: assumeRole(standIn, params, requestId) };
      } catch (error) {
        const fault =
          error instanceof StsFault ? error : new StsFault('MalformedQueryString', 'Malformed request');
        return {
          status: fault.status,
          body:
            `<ErrorResponse xmlns="${XMLNS}"><Error><Type>Sender</Type><Code>${fault.code}</Code>` +
            `<Message>${xmlEscape(fault.message)}</Message></Error><RequestId>${requestId}</RequestId></ErrorResponse>`,
        };
      }
    },
  };
  return standIn;
}

function assumeRole(standIn: StsStandIn, params: URLSearchParams, requestId: string): string {
  const roleArn = params.get('RoleArn') ?? '';
  const roleSessionName = params.get('RoleSessionName') ?? '';
  const externalId = params.get('ExternalId') ?? undefined;
  const durationRaw = params.get('DurationSeconds');
  const durationSeconds = durationRaw === null ? standIn.defaultDurationSeconds : Number(durationRaw);
  if (!ROLE_ARN.test(roleArn)) throw new StsFault('ValidationError', 'RoleArn is not a valid IAM role ARN');
  if (!SESSION_NAME.test(roleSessionName))
    throw new StsFault('ValidationError', 'RoleSessionName does not match [\\w+=,.@-]{2,64}');
  if (externalId !== undefined && !EXTERNAL_ID.test(externalId))
    throw new StsFault('ValidationError', 'ExternalId is malformed');
  if (!Number.isInteger(durationSeconds) || durationSeconds < 900 || durationSeconds > 43_200)
    throw new StsFault('ValidationError', 'DurationSeconds must be 900–43200');
  standIn.calls.push({ roleArn, roleSessionName, externalId, durationSeconds });
  if (standIn.refusedRoles.has(roleArn))
    throw new StsFault('AccessDenied', `Not authorized to perform sts:AssumeRole on ${roleArn}`, 403);
  const issued: IssuedCredentials = {
    accessKeyId: `ASIA${randomBytes(8).toString('hex').toUpperCase()}`,
    secretAccessKey: randomBytes(30).toString('base64'),
    sessionToken: randomBytes(48).toString('base64'),
    expiration: new Date(Math.floor(Date.now() / 1000) * 1000 + durationSeconds * 1000),
    roleArn,
    externalId,
  };
  standIn.issued.set(issued.accessKeyId, issued);
  const account = roleArn.split(':')[4];
  const roleName = roleArn.slice(roleArn.lastIndexOf('/') + 1);
  return (
    `<AssumeRoleResponse xmlns="${XMLNS}"><AssumeRoleResult>` +
    `<AssumedRoleUser><Arn>arn:aws:sts::${account}:assumed-role/${xmlEscape(roleName)}/${xmlEscape(roleSessionName)}</Arn>` +
    `<AssumedRoleId>AROA${randomBytes(8).toString('hex').toUpperCase()}:${xmlEscape(roleSessionName)}</AssumedRoleId></AssumedRoleUser>` +
    `<Credentials><AccessKeyId>${issued.accessKeyId}</AccessKeyId>` +
    `<SecretAccessKey>${xmlEscape(issued.secretAccessKey)}</SecretAccessKey>` +
    `<SessionToken>${xmlEscape(issued.sessionToken)}</SessionToken>` +
    `<Expiration>${issued.expiration.toISOString().replace('.000Z', 'Z')}</Expiration></Credentials>` +
    `</AssumeRoleResult><ResponseMetadata><RequestId>${requestId}</RequestId></ResponseMetadata></AssumeRoleResponse>`
  );
}
