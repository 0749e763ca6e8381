import { RemovalPolicy, Stack } from 'aws-cdk-lib';
import type * as apigw from 'aws-cdk-lib/aws-apigateway';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as wafv2 from 'aws-cdk-lib/aws-wafv2';
import { Construct } from 'constructs';

/** Rate limits of one web ACL, in requests per source (or per credential) per evaluation window. */
export interface EdgeRateLimits {
  /** Requests carrying one `Authorization` value: one credential (token or proxy key) cannot starve the others. */
  perCredential: number;
  /** Requests from one source IP, whatever they carry. */
  perSourceIp: number;
  /**
   * Requests from one source IP that carry no `Authorization: Bearer …` header: what a scanner
   * or a key guesser sends. WAF cannot see the 401 the function answers (rules judge requests,
   * never responses), so "401-heavy" is approximated by "no credential at all"; a guesser that
   * sends random bearer values is held by `perSourceIp` and by the function's own answers.
   */
  unauthenticatedPerSourceIp: number;
}

/** WAF's rate-based rules count over 1, 2, 5 or 10 minutes; keygate uses 5. */
export const EDGE_WINDOW_SECONDS = 300;

export interface EdgeProtectionProps {
  /** Name of the web ACL (also in its metrics and log group), e.g. `keygate-prod-us-east-1-core-api`. */
  name: string;
  limits: EdgeRateLimits;
  /** The cell key: the WAF log group is encrypted with it. */
  logKey: kms.IKey;
  logRetention: logs.RetentionDays;
}

/**
 * AWS WAF in front of an API Gateway REST API stage (HTTP APIs cannot take a web ACL): the
 * protection one tenant needs from another at the edge, before any function runs.
 *
 * Rules, in order (all answer 429 when they block):
 *  1. `AmazonIpReputation`: AWS's managed list of addresses known for bots and abuse (it reads
 *     only the source address, never a body, so it cannot break a proxied vendor call).
 *  2. `UnauthenticatedPerIp`: per source IP, requests without a bearer credential.
 *  3. `PerCredential`: per `Authorization` value. WAF keeps the value only as its counting key;
 *     the WAF log redacts the header.
 *  4. `PerSourceIp`: per source IP, everything.
 *
 * The web ACL's log goes to an encrypted log group with the `Authorization` header, the query
 * string and the URI path redacted (a path can hold the vendor's identifiers).
 *
 * `attachTo(stage)` is the one call that puts it in front of a REST API stage.
 */
export class EdgeProtection extends Construct {
  readonly webAcl: wafv2.CfnWebACL;
  readonly logGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: EdgeProtectionProps) {
    super(scope, id);
    const { limits } = props;
    const visibility = (metricName: string) => ({
      cloudWatchMetricsEnabled: true,
      sampledRequestsEnabled: false,
      metricName: `${props.name}-${metricName}`,
    });
    const tooMany = { block: { customResponse: { responseCode: 429 } } };
    const rateRule = (
      name: string,
      priority: number,
      limit: number,
      aggregate: Partial<wafv2.CfnWebACL.RateBasedStatementProperty>,
    ): wafv2.CfnWebACL.RuleProperty => ({
      name,
      priority,
      action: tooMany,
      visibilityConfig: visibility(name),
      statement: {
        rateBasedStatement: { limit, evaluationWindowSec: EDGE_WINDOW_SECONDS, ...aggregate } as never,
      },
    });
    const bearer: wafv2.CfnWebACL.StatementProperty = {
      byteMatchStatement: {
        fieldToMatch: { singleHeader: { Name: 'authorization' } },
        positionalConstraint: 'STARTS_WITH',
        searchString: 'bearer ',
        textTransformations: [{ priority: 0, type: 'LOWERCASE' }],
      },
    };
    this.webAcl = new wafv2.CfnWebACL(this, 'WebAcl', {
      name: props.name,
      description: `keygate edge protection: ${props.name}`,
      scope: 'REGIONAL',
      defaultAction: { allow: {} },
      visibilityConfig: visibility('all'),
      rules: [
        {
          name: 'AmazonIpReputation',
          priority: 0,
          overrideAction: { none: {} },
          visibilityConfig: visibility('AmazonIpReputation'),
          statement: {
            managedRuleGroupStatement: { vendorName: 'AWS', name: 'AWSManagedRulesAmazonIpReputationList' },
          },
        },
        rateRule('UnauthenticatedPerIp', 1, limits.unauthenticatedPerSourceIp, {
          aggregateKeyType: 'IP',
          scopeDownStatement: { notStatement: { statement: bearer } },
        }),
        rateRule('PerCredential', 2, limits.perCredential, {
          aggregateKeyType: 'CUSTOM_KEYS',
          customKeys: [
            { header: { name: 'authorization', textTransformations: [{ priority: 0, type: 'NONE' }] } },
          ],
          scopeDownStatement: bearer,
        }),
        rateRule('PerSourceIp', 3, limits.perSourceIp, { aggregateKeyType: 'IP' }),
      ],
    });

    // WAF insists on this prefix for a log group destination.
    this.logGroup = new logs.LogGroup(this, 'Logs', {
      logGroupName: `aws-waf-logs-${props.name}`,
      retention: props.logRetention,
      encryptionKey: props.logKey,
      removalPolicy: RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
    });
    const logging = new wafv2.CfnLoggingConfiguration(this, 'Logging', {
      resourceArn: this.webAcl.attrArn,
      logDestinationConfigs: [
        Stack.of(this).formatArn({
          service: 'logs',
          resource: 'log-group',
          resourceName: this.logGroup.logGroupName,
          arnFormat: 'colon-resource-name' as never,
        }),
      ],
      redactedFields: [{ singleHeader: { Name: 'authorization' } }, { queryString: {} }, { uriPath: {} }],
    });
    logging.node.addDependency(this.logGroup);
  }

  /** Puts this web ACL in front of a REST API stage (one association per stage). */
  attachTo(stage: apigw.Stage): wafv2.CfnWebACLAssociation {
    const association = new wafv2.CfnWebACLAssociation(this, `Association${stage.node.id}`, {
      resourceArn: stage.stageArn,
      webAclArn: this.webAcl.attrArn,
    });
    association.node.addDependency(stage);
    return association;
  }
}
