import { fileURLToPath } from 'node:url';
import { Duration, Lazy, RemovalPolicy, Validations } from 'aws-cdk-lib';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction, type NodejsFunctionProps, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import { cellsEnvironment, stageOf } from './cell-names.ts';
import { copyCommands, shippedPackages } from './shipped-packages.ts';

/** The project root (where package-lock.json is): entries are resolved from here, whatever the cwd. */
export const projectRoot = fileURLToPath(new URL('..', import.meta.url));

/**
 * How every keygate function is bundled: one ESM file, minified, with the AWS SDK inside it (the
 * version we test against, not whatever the runtime ships). `bench/bundle-size.ts` bundles with
 * these very options, so the budget it checks is the size that is deployed.
 */
export const bundlingDefaults = {
  format: OutputFormat.ESM,
  target: 'node22',
  minify: true,
  sourceMap: false,
  bundleAwsSDK: true,
  externalModules: [] as string[],
  // Prefer the ESM builds of dependencies: smaller, tree-shakeable bundles.
  mainFields: ['module', 'main'],
  // Some bundled CommonJS dependencies call require() on Node built-ins; ESM output has no require.
  banner:
    "import { createRequire as __kgCreateRequire } from 'node:module'; const require = __kgCreateRequire(import.meta.url);",
} as const;

export interface KeygateFunctionProps {
  /** Entry file, relative to the project root (e.g. `lambdas/data-plane/handler.ts`). */
  entry: string;
  description: string;
  /** The cell key: log groups are encrypted with it. */
  logKey: kms.IKey;
  memorySize?: number;
  timeout?: Duration;
  logRetention?: logs.RetentionDays;
  /** A fixed role name, only where another region must name the role (the Core API). */
  roleName?: string;
  environment?: Record<string, string>;
  /**
   * Concurrency reserved for (and capping) this function; undefined: it draws on the account's
   * unreserved pool.
   */
  reservedConcurrency?: number;
  /**
   * Packages left out of the bundle and shipped beside it in `node_modules/`, for code that imports
   * them dynamically on first use (lib/shipped-packages.ts). Their dependencies come along.
   */
  lazyPackages?: readonly string[];
  /** Runs the function in these subnets of a VPC (the proxy's optional egress mode). */
  vpc?: { vpc: ec2.IVpc; subnets: ec2.SubnetSelection; securityGroups: ec2.ISecurityGroup[] };
}

/**
 * A keygate Lambda function with the defaults built in: Node.js 22 on arm64, ESM bundle with the
 * SDK bundled, active tracing, JSON logs into an explicit, encrypted log group with retention, and an
 * own role that starts with nothing but writing its logs. Rights come from the grant helpers of the
 * cell constructs (`CellTable`, `CellKey`, `TelemetryPipeline`), which also record the cell in
 * `KEYGATE_CELLS` — the setting and the right always arrive together.
 */
export class KeygateFunction extends NodejsFunction {
  private readonly cells = new Set<string>();
  private homeTable?: string;

  constructor(scope: Construct, id: string, props: KeygateFunctionProps) {
    const logGroup = new logs.LogGroup(scope, `${id}Logs`, {
      retention: props.logRetention ?? logs.RetentionDays.ONE_YEAR,
      encryptionKey: props.logKey,
      // Logs are audit evidence: they outlive a stack deletion (but not a rolled-back first create).
      removalPolicy: RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
    });
    // An own role rather than the default one: the default attaches the AWS managed
    // AWSLambdaBasicExecutionRole, which may write to every log group in the account.
    const role = new iam.Role(scope, `${id}Role`, {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      roleName: props.roleName,
      description: `keygate: ${props.description}`,
    });
    super(scope, id, {
      entry: `${projectRoot}${props.entry}`,
      projectRoot,
      depsLockFilePath: `${projectRoot}package-lock.json`,
      handler: 'handler',
      description: props.description,
      runtime: lambda.Runtime.NODEJS_22_X,
      architecture: lambda.Architecture.ARM_64,
      memorySize: props.memorySize ?? 512,
      timeout: props.timeout ?? Duration.seconds(10),
      tracing: lambda.Tracing.ACTIVE,
      role,
      logGroup,
      reservedConcurrentExecutions: props.reservedConcurrency,
      ...(props.vpc
        ? { vpc: props.vpc.vpc, vpcSubnets: props.vpc.subnets, securityGroups: props.vpc.securityGroups }
        : {}),
      loggingFormat: lambda.LoggingFormat.JSON,
      applicationLogLevelV2: lambda.ApplicationLogLevel.INFO,
      // Platform REPORT lines carry max memory used: what sizing the proxy needs.
      systemLogLevelV2: lambda.SystemLogLevel.INFO,
      bundling: bundlingOf(props.lazyPackages ?? []),
      environment: {
        POWERTOOLS_SERVICE_NAME: 'keygate',
        POWERTOOLS_LOG_LEVEL: 'INFO',
        ...props.environment,
      },
    });
    // Resolved at synthesis, after every grant helper has run.
    this.addEnvironment(
      'KEYGATE_CELLS',
      Lazy.string({ produce: () => cellsEnvironment(this.cells, stageOf(this)) }),
    );
    this.addEnvironment('KEYGATE_TABLE_NAME', Lazy.string({ produce: () => this.requireHomeTable() }));
    logGroup.grantWrite(role);
    acknowledgeFunctionFindings(this, role, props);
  }

  /**
   * Records that this function reaches the cell in `region` (its names go into `KEYGATE_CELLS`).
   * Called by the grant helpers, next to the IAM right they add.
   */
  useCell(region: string): void {
    this.cells.add(region);
  }

  /** Sets the table `KEYGATE_TABLE_NAME` points at (users, tokens and clients for the Core API). */
  useHomeTable(tableName: string): void {
    this.homeTable = tableName;
  }

  private requireHomeTable(): string {
    if (!this.homeTable) throw new Error(`${this.node.path}: no table was granted (KEYGATE_TABLE_NAME)`);
    return this.homeTable;
  }
}

/** The construct's bundling options: the defaults, plus any lazily loaded packages shipped beside. */
function bundlingOf(lazyPackages: readonly string[]): NodejsFunctionProps['bundling'] {
  const base = { ...bundlingDefaults, mainFields: [...bundlingDefaults.mainFields] };
  if (lazyPackages.length === 0) return base;
  const shipped = shippedPackages(projectRoot, lazyPackages);
  return {
    ...base,
    externalModules: [...bundlingDefaults.externalModules, ...lazyPackages],
    commandHooks: {
      beforeBundling: () => [],
      beforeInstall: () => [],
      afterBundling: (inputDir, outputDir) => copyCommands(shipped, inputDir, outputDir),
    },
  };
}

/**
 * Findings every keygate function raises by design, each with the reason it is accepted. Anything
 * else a function raises fails synthesis.
 */
function acknowledgeFunctionFindings(fn: KeygateFunction, role: iam.Role, props: KeygateFunctionProps): void {
  const both = (rule: string, reason: string, scope: Construct) => {
    for (const pack of ['HIPAA.Security', 'NIST.800.53.R5']) {
      Validations.of(scope).acknowledge({ id: `${pack}-${rule}`, reason });
    }
  };
  Validations.of(role).acknowledge({
    id: 'AwsSolutions-IAM5[Resource::*]',
    reason:
      'Only the X-Ray statement CDK adds for active tracing (xray:PutTraceSegments, ' +
      'xray:PutTelemetryRecords), actions that support no resource-level scoping. Every keygate ' +
      'statement names its table, key, stream or log group (asserted by test/infra).',
  });
  both(
    'IAMNoInlinePolicy',
    'Each function has its own role, and its one policy is generated by the grant helpers for that ' +
      'role alone. Inline keeps role and rights on one lifecycle and makes the rights impossible to ' +
      'attach to another principal, which a managed policy would allow.',
    role,
  );
  Validations.of(fn).acknowledge({
    id: 'AwsSolutions-L1',
    reason:
      'Pinned to Node.js 22, the version the test suite, the benchmarks and `npm start` run on (the npm ' +
      'package `node@22`): what is tested is what runs. Runtime and local Node move together.',
  });
  if (props.reservedConcurrency === undefined)
    both(
      'LambdaConcurrency',
      'Not reserved on purpose: the Core API and the aggregator have reserved concurrency, so this ' +
        "function cannot starve them; its load is bounded by the endpoint's throttling and per-proxy " +
        'rate limits. Set context proxyReservedConcurrency to cap it (docs/deploy-and-operate.md).',
      fn,
    );
  both(
    'LambdaDLQ',
    'keygate never invokes a function asynchronously, the only case a Lambda DLQ applies to: the API ' +
      'and the proxy are synchronous (errors go back to the caller), and the aggregator runs from an ' +
      'event source mapping whose failures go to its own encrypted SQS on-failure destination.',
    fn,
  );
  if (!props.vpc)
    Validations.of(fn).acknowledge({
      id: 'cdk-validator-cfnguard::lambda_inside_vpc_check',
      reason:
        'Control Tower CT.LAMBDA.PR.3, the same choice as LambdaInsideVPC below: only the proxy ' +
        'calls the internet, every AWS dependency is an IAM-authenticated TLS endpoint, and context ' +
        'egress=vpc puts the proxy in a VPC with static egress addresses when vendors need them.',
    });
  if (props.vpc) {
    Validations.of(role).acknowledge({
      id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole]',
      reason:
        'Lambda needs to create and delete the network interfaces of a function in a VPC; AWS keeps ' +
        'this managed policy to exactly those EC2 actions (which support no resource-level scoping).',
    });
  } else {
    both(
      'LambdaInsideVPC',
      "The default egress mode: the proxy reaches vendors' public HTTPS APIs and every dependency " +
        '(DynamoDB, KMS, CloudWatch Logs) is an IAM-authenticated TLS endpoint, so a VPC adds NAT ' +
        'gateways (about 32 USD a month per AZ per cell) and no data isolation. Outbound targets are ' +
        'restricted in code to public addresses, checked again at connect time. Context egress=vpc ' +
        'puts the proxy in a VPC with static egress addresses.',
      fn,
    );
  }
}
