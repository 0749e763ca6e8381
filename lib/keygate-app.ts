import type { App } from 'aws-cdk-lib';
import * as logs from 'aws-cdk-lib/aws-logs';
import { AWS_ROLE_ARN } from '../lambdas/shared/aws-names.ts';
import { installPrefix, parseRegions, stageOf } from './cell-names.ts';
import { type CellSettings, CellStack } from './cell-stack.ts';
import { addCompliancePacks } from './compliance.ts';
import type { CustomDomain } from './http-gateway.ts';
import { DEFAULT_THRESHOLDS } from './observability.ts';

/**
 * Builds keygate into `app` from context values (`-c name=value` or cdk.json):
 *
 * | context | default | meaning |
 * |---|---|---|
 * | `regions` | `us-east-1` | served regions, comma-separated; the first is home (Core API) |
 * | `alarmEmails` | — | comma-separated e-mail addresses for the alarm topics |
 * | `requestLogRetentionDays` | `90` | request-log TTL |
 * | `logRetentionDays` | `365` | CloudWatch Logs retention of functions and access logs |
 * | `proxyRateLimit` / `proxyBurstLimit` | `1000` / `2000` | proxy stage throttling (per cell) |
 * | `proxyTimeoutSeconds` | `900` | proxy function timeout, the longest stream (30–900) |
 * | `apiRateLimit` / `apiBurstLimit` | `50` / `100` | Core API stage throttling |
 * | `alarm5xxPercent`, `alarmDeniedPer5Minutes`, `alarmIteratorAgeSeconds` | 5, 100, 300 | alarm thresholds |
 * | `apiDomain`, `apiCertificateArn` | — | custom domain of the Core API |
 * | `proxyDomain.<region>`, `proxyCertificateArn.<region>` | — | custom domain of a cell's proxy |
 * | `hostedZoneId`, `hostedZoneName` | — | Route 53 zone: alias records for the custom domains |
 * | `stage` | — | installation name, in every resource name (several installs per account) |
 * | `breakGlassRole` | CDK's CloudFormation execution role | the one role that may replace the key policy |
 * | `coreApiReservedConcurrency` / `aggregatorReservedConcurrency` | 10 / 5 | reserved; `none` to skip |
 * | `proxyReservedConcurrency` | — (uncapped) | cap of each cell's proxy |
 * | `edgePerCredential` / `edgePerSourceIp` / `edgeUnauthenticatedPerSourceIp` | 3000 / 6000 / 300 | WAF limits per 5 min |
 * | `egress` | — | `vpc`: the proxy in a VPC behind NAT gateways (static egress IPs) |
 * | `egressZones` | 2 | AZs (= NAT gateways = egress IPs) of the egress VPC |
 * | `assumableTargetRoleArns` | — (none) | IAM role ARNs `awsSigV4` target credentials may name: the proxy gets sts:AssumeRole on exactly these |
 *
 * Every setting is described in docs/deploy-and-operate.md. One stack per region,
 * `keygate[-<stage>]-<region>`, each a self-contained cell. The compliance packs are
 * always on; only a test that proves they catch a finding switches them off.
 */
export function buildKeygateApp(app: App, options: { compliance?: boolean } = {}): CellStack[] {
  const context = (name: string): string | undefined => {
    const value = app.node.tryGetContext(name);
    return value === undefined || value === null || value === '' ? undefined : String(value);
  };
  const number = (name: string, fallback: number, min = 1): number => {
    const raw = context(name);
    if (raw === undefined) return fallback;
    const value = Number(raw);
    if (!Number.isInteger(value) || value < min)
      throw new Error(`Context ${name} must be an integer of at least ${min}`);
    return value;
  };
  const domain = (name: string, certificate: string): CustomDomain | undefined => {
    const domainName = context(name);
    const certificateArn = context(certificate);
    if (!domainName && !certificateArn) return undefined;
    if (!domainName || !certificateArn) throw new Error(`Context ${name} and ${certificate} go together`);
    return { domainName, certificateArn };
  };

  const regions = parseRegions(context('regions') ?? 'us-east-1');
  if (number('proxyTimeoutSeconds', 900, 30) > 900)
    throw new Error('Context proxyTimeoutSeconds must be at most 900 (Lambda’s limit)');
  const prefix = installPrefix(stageOf(app));
  const reserved = (name: string, fallback: number | undefined): number | undefined =>
    context(name) === 'none' ? undefined : context(name) === undefined ? fallback : number(name, 1);
  const egress = context('egress');
  if (egress !== undefined && egress !== 'vpc')
    throw new Error('Context egress must be "vpc" (or absent for the default, no VPC)');
  const hostedZoneId = context('hostedZoneId');
  const hostedZoneName = context('hostedZoneName');
  if ((hostedZoneId === undefined) !== (hostedZoneName === undefined))
    throw new Error('Context hostedZoneId and hostedZoneName go together');
  const breakGlassRole = context('breakGlassRole');
  const assumableTargetRoleArns = roleArns(app.node.tryGetContext('assumableTargetRoleArns'));
  const logRetention = number('logRetentionDays', 365) as logs.RetentionDays;
  if (!Object.values(logs.RetentionDays).includes(logRetention)) {
    throw new Error('Context logRetentionDays must be a CloudWatch Logs retention (e.g. 90, 365, 731)');
  }
  const common: Omit<CellSettings, 'proxyDomain'> = {
    logRetention,
    requestLogRetentionDays: number('requestLogRetentionDays', 90),
    proxyThrottle: { rateLimit: number('proxyRateLimit', 1000), burstLimit: number('proxyBurstLimit', 2000) },
    apiThrottle: { rateLimit: number('apiRateLimit', 50), burstLimit: number('apiBurstLimit', 100) },
    thresholds: {
      serverErrorPercent: number('alarm5xxPercent', DEFAULT_THRESHOLDS.serverErrorPercent),
      deniedPer5Minutes: number('alarmDeniedPer5Minutes', DEFAULT_THRESHOLDS.deniedPer5Minutes),
      iteratorAgeSeconds: number('alarmIteratorAgeSeconds', DEFAULT_THRESHOLDS.iteratorAgeSeconds),
      anomalyFlagsPer5Minutes: number(
        'alarmAnomalyFlagsPer5Minutes',
        DEFAULT_THRESHOLDS.anomalyFlagsPer5Minutes,
        0,
      ),
      clientErrorPercent: number('alarm4xxPercent', DEFAULT_THRESHOLDS.clientErrorPercent),
      rateLimitedPer5Minutes: number('alarm429Per5Minutes', DEFAULT_THRESHOLDS.rateLimitedPer5Minutes),
      proxyP99LatencyMs: number('alarmProxyP99Ms', DEFAULT_THRESHOLDS.proxyP99LatencyMs),
      coreApiP99LatencyMs: number('alarmCoreApiP99Ms', DEFAULT_THRESHOLDS.coreApiP99LatencyMs),
      concurrencyPercent: number('alarmConcurrencyPercent', DEFAULT_THRESHOLDS.concurrencyPercent),
      accountConcurrency: number('alarmAccountConcurrency', DEFAULT_THRESHOLDS.accountConcurrency),
    },
    alarmEmails: (context('alarmEmails') ?? '')
      .split(',')
      .map((e) => e.trim())
      .filter((e) => e.length > 0),
    apiDomain: domain('apiDomain', 'apiCertificateArn'),
    proxyTimeoutSeconds: number('proxyTimeoutSeconds', 900, 30),
    breakGlassRole,
    concurrency: {
      coreApi: reserved('coreApiReservedConcurrency', 10),
      aggregator: reserved('aggregatorReservedConcurrency', 5),
      proxy: reserved('proxyReservedConcurrency', undefined),
    },
    edgeLimits: {
      perCredential: number('edgePerCredential', 3000, 10),
      perSourceIp: number('edgePerSourceIp', 6000, 10),
      unauthenticatedPerSourceIp: number('edgeUnauthenticatedPerSourceIp', 300, 10),
    },
    egress: egress === 'vpc' ? { zones: number('egressZones', 2) } : undefined,
    assumableTargetRoleArns,
    hostedZone:
      hostedZoneId && hostedZoneName ? { zoneId: hostedZoneId, zoneName: hostedZoneName } : undefined,
  };
  const stacks = regions.map(
    (region) =>
      new CellStack(app, `${prefix}-${region}`, {
        env: { account: process.env.CDK_DEFAULT_ACCOUNT, region },
        description: `keygate cell ${region}${region === regions[0] ? ' (home: Core API)' : ''}`,
        regions,
        settings: {
          ...common,
          proxyDomain: domain(`proxyDomain.${region}`, `proxyCertificateArn.${region}`),
        },
        terminationProtection: true,
      }),
  );
  // Other cells' key policies name the Core API's role: deploy the home cell first.
  for (const stack of stacks.slice(1)) stack.addStackDependency(stacks[0]!);
  if (options.compliance !== false) addCompliancePacks(app);
  return stacks;
}

/**
 * Context `assumableTargetRoleArns`: a JSON list (cdk.json) or a comma-separated string (`-c`).
 * Each must be a full IAM role ARN, no wildcard: the proxy may assume exactly the roles named.
 */
function roleArns(raw: unknown): string[] {
  if (raw === undefined || raw === null || raw === '') return [];
  const list = Array.isArray(raw) ? raw.map(String) : String(raw).split(',');
  const arns = [...new Set(list.map((a) => a.trim()).filter((a) => a.length > 0))];
  for (const arn of arns)
    if (!AWS_ROLE_ARN.test(arn))
      throw new Error(
        `Context assumableTargetRoleArns: ${arn} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>, no wildcard)`,
      );
  return arns;
}
