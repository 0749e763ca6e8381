import { Duration, Stack } from 'aws-cdk-lib';
import type * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import type { CellKey } from './cell-key.ts';
import { grantSealSecrets } from './cell-key.ts';
import { coreApiRoleName } from './cell-names.ts';
import type { CellTable } from './cell-table.ts';
import { grantCoreApiTableAccess } from './cell-table.ts';
import { type CustomDomain, HttpGateway } from './http-gateway.ts';
import { KeygateFunction } from './keygate-function.ts';

export interface CoreApiProps {
  /** Every served region; the first is the home region, where this construct lives. */
  regions: string[];
  /** The home cell's table and key (constructs in this stack). */
  table: CellTable;
  key: CellKey;
  logRetention: logs.RetentionDays;
  /** Same value the aggregator writes with, so request-log queries agree with the TTL. */
  requestLogRetentionDays: number;
  throttle: { rateLimit: number; burstLimit: number };
  customDomain?: CustomDomain;
}

/**
 * The Core API (control plane), in the home region only: one function behind an HTTP API. It
 * reads and writes every item of the home table (users, tokens, clients) and of every cell's table
 * (credentials, targets, proxies and rules live in the cell of their region), and seals target
 * secrets with the key of the credential's cell. Other cells are reached by their deterministic
 * names; `KEYGATE_CELLS` tells the function every cell.
 */
export class CoreApi extends Construct {
  readonly fn: KeygateFunction;
  readonly gateway: HttpGateway;

  constructor(scope: Construct, id: string, props: CoreApiProps) {
    super(scope, id);
    const homeRegion = Stack.of(this).region;
    this.fn = new KeygateFunction(this, 'Function', {
      entry: 'lambdas/control-plane/handler.ts',
      description: 'Core API (control plane)',
      logKey: props.key.key,
      logRetention: props.logRetention,
      memorySize: 512,
      timeout: Duration.seconds(10),
      // Cells in other regions name this role in their key policies.
      roleName: coreApiRoleName(homeRegion),
      environment: { KEYGATE_REQUEST_LOG_RETENTION_DAYS: String(props.requestLogRetentionDays) },
    });
    this.fn.useHomeTable(props.table.table.tableName);
    for (const region of props.regions) {
      const own = region === homeRegion;
      grantCoreApiTableAccess(this.fn, region, own ? props.key.key : undefined);
      grantSealSecrets(this.fn, region, own ? props.key.key : undefined);
    }
    this.gateway = new HttpGateway(this, 'Http', {
      fn: this.fn,
      throttle: props.throttle,
      logKey: props.key.key,
      logRetention: props.logRetention,
      customDomain: props.customDomain,
      noAuthorizerReason:
        'Every Core API call is authenticated inside the function by a strongly consistent token ' +
        'lookup, so a revoked or rotated token fails on the very next call; an API Gateway ' +
        'authorizer would cache its answer and add a second lookup. GET /openapi.json is public by design.',
    });
  }
}
