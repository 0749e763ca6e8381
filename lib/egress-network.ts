import { CfnOutput, Fn, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';

export interface EgressNetworkProps {
  /** Availability zones, one NAT gateway (and so one static egress address) in each. */
  zones: number;
  logKey: kms.IKey;
  logRetention: logs.RetentionDays;
}

/**
 * The proxy's optional egress mode (context `egress=vpc`): a VPC whose private subnets reach the
 * internet only through NAT gateways with Elastic IPs, so every vendor call leaves from a small,
 * fixed set of addresses that vendors can allowlist (output `EgressIps`). The function's security
 * group allows outbound TCP 443 only (HTTPS to vendors, AWS APIs); DynamoDB is reached through a
 * gateway endpoint (no NAT charge); VPC flow logs go to an encrypted log group.
 */
export class EgressNetwork extends Construct {
  readonly vpc: ec2.Vpc;
  readonly securityGroup: ec2.SecurityGroup;
  /** The public addresses vendors see. */
  readonly egressIps: string[];

  constructor(scope: Construct, id: string, props: EgressNetworkProps) {
    super(scope, id);
    this.vpc = new ec2.Vpc(this, 'Vpc', {
      maxAzs: props.zones,
      natGateways: props.zones,
      subnetConfiguration: [
        // Only the NAT gateways live here, on their Elastic IPs: nothing gets a public IP on launch.
        { name: 'nat', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24, mapPublicIpOnLaunch: false },
        { name: 'proxy', subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS, cidrMask: 20 },
      ],
      gatewayEndpoints: { DynamoDb: { service: ec2.GatewayVpcEndpointAwsService.DYNAMODB } },
      restrictDefaultSecurityGroup: true,
    });
    const flowLogs = new logs.LogGroup(this, 'FlowLogs', {
      retention: props.logRetention,
      encryptionKey: props.logKey,
      removalPolicy: RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
    });
    const flowLog = this.vpc.addFlowLog('FlowLog', {
      destination: ec2.FlowLogDestination.toCloudWatchLogs(flowLogs),
    });
    for (const pack of ['HIPAA.Security', 'NIST.800.53.R5']) {
      Validations.of(flowLog).acknowledge({
        id: `${pack}-IAMNoInlinePolicy`,
        reason:
          "CDK's own role for VPC flow logs, whose one generated policy writes to this VPC's flow-log " +
          'group only; inline keeps it on the lifecycle of the flow log it serves.',
      });
      Validations.of(this.vpc).acknowledge({
        id: `${pack}-VPCNoUnrestrictedRouteToIGW`,
        reason:
          'The public subnets hold only the NAT gateways, which need their default route to the ' +
          'internet gateway: that route is how the static egress addresses reach vendors. Functions ' +
          'run in the private subnets, which route through NAT and accept no inbound connection.',
      });
    }
    // The provider of restrictDefaultSecurityGroup: a CDK-managed Lambda that only revokes the
    // default security group's rules, once, at deploy time.
    const provider = Stack.of(this).node.tryFindChild('Custom::VpcRestrictDefaultSGCustomResourceProvider');
    if (provider)
      Validations.of(provider).acknowledge({
        id: 'cdk-validator-cfnguard::lambda_inside_vpc_check',
        reason:
          "CDK's provider function for restrictDefaultSecurityGroup: it calls the EC2 API once per deploy " +
          'to remove the default security group rules; it handles no keygate data and serves no traffic.',
      });
    this.securityGroup = new ec2.SecurityGroup(this, 'ProxySecurityGroup', {
      vpc: this.vpc,
      description: 'keygate proxy: outbound HTTPS only',
      allowAllOutbound: false,
    });
    this.securityGroup.addEgressRule(ec2.Peer.anyIpv4(), ec2.Port.tcp(443), 'HTTPS to vendors and AWS APIs');
    this.egressIps = this.vpc.publicSubnets.map(
      (subnet) => (subnet.node.findChild('EIP') as ec2.CfnEIP).attrPublicIp,
    );
    new CfnOutput(scope, 'EgressIps', {
      value: Fn.join(',', this.egressIps),
      description: "The proxy's static egress addresses, for vendors' allowlists",
    });
  }

  /** Where a function of this network runs. */
  placement() {
    return {
      vpc: this.vpc,
      subnets: { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS },
      securityGroups: [this.securityGroup],
    };
  }
}
