import { GetCommand } from '@aws-sdk/lib-dynamodb';
import { describe, expect, it } from '@jest/globals';
import { keys, tableLayout } from '../../lambdas/storage/keys.ts';

describe('single-table key builders', () => {
  it('puts tenant resources in the client partition', () => {
    expect(keys.client('c1')).toEqual({ pk: 'CLIENT#c1', sk: 'CLIENT' });
    expect(keys.credential('c1', 'k1')).toEqual({ pk: 'CLIENT#c1', sk: 'CREDENTIAL#k1' });
    expect(keys.target('c1', 't1')).toEqual({ pk: 'CLIENT#c1', sk: 'TARGET#t1' });
    expect(keys.proxy('c1', 'p1')).toEqual({ pk: 'CLIENT#c1', sk: 'PROXY#p1' });
    expect(keys.rule('c1', 'credential', 'k1', 'r1')).toEqual({
      pk: 'CLIENT#c1',
      sk: 'RULE#credential#k1#r1',
    });
    expect(keys.rulesPrefix('c1', 'proxy', 'p1')).toEqual({ pk: 'CLIENT#c1', skPrefix: 'RULE#proxy#p1#' });
  });

  it('keys the hot-path snapshot and limits by proxy id alone', () => {
    expect(keys.proxySnapshot('p1')).toEqual({ pk: 'PROXY#p1', sk: 'SNAPSHOT' });
    expect(keys.rateCounter('p1', 'minute', '2026-01-01T00:00')).toEqual({
      pk: 'LIMIT#p1#minute#2026-01-01T00:00',
      sk: 'COUNTER',
    });
  });

  it('keeps meters beside their parent and their counters under LIMIT#', () => {
    expect(keys.meter('c1', 'credential', 'k1', 'm1')).toEqual({
      pk: 'CLIENT#c1',
      sk: 'METER#credential#k1#m1',
    });
    expect(keys.metersPrefix('c1', 'proxy', 'p1')).toEqual({ pk: 'CLIENT#c1', skPrefix: 'METER#proxy#p1#' });
    expect(keys.meterCounter('m1', 'month', '2026-01')).toEqual({
      pk: 'LIMIT#METER#m1#month#2026-01',
      sk: 'COUNTER',
    });
  });

  it('keys tokens by hash for a single consistent lookup', () => {
    expect(keys.tokenHash('ab')).toEqual({ pk: 'TOKENHASH#ab', sk: 'TOKENHASH' });
    expect(keys.userToken('u', 't')).toEqual({ pk: 'USER#u', sk: 'TOKEN#t' });
    expect(keys.membership('u', 'c')).toEqual({ pk: 'USER#u', sk: 'MEMBER#c' });
  });

  it('partitions the request log by proxy and day, telemetry by scope and interval', () => {
    expect(keys.requestLog('p1', '2026-11-28', 'r1')).toEqual({ pk: 'REQLOG#p1#2026-11-28', sk: 'r1' });
    expect(keys.telemetryBucket('CLIENT', 'c1', 'hour', '2026-11-28T10:00:00Z')).toEqual({
      pk: 'TELEMETRY#CLIENT#c1#hour',
      sk: '2026-11-28T10:00:00Z',
    });
  });

  it('keys the telemetry markers and the local poller checkpoints', () => {
    expect(keys.proxyOwner('p1')).toEqual({ pk: 'PROXYOWNER#p1', sk: 'OWNER' });
    expect(keys.proxyPath('p1', '/v2/items/{id}')).toEqual({ pk: 'PROXYPATH#p1', sk: '/v2/items/{id}' });
    expect(keys.proxyPaths('p1')).toEqual({ pk: 'PROXYPATH#p1' });
    expect(keys.anomalyRaised('p1', 'minute', '2026-11-28T10:15:00.000Z', 'request_spike')).toEqual({
      pk: 'ANOMALY#p1',
      sk: 'minute#2026-11-28T10:15:00.000Z#request_spike',
    });
    expect(keys.streamCheckpoint('s', 'shardId-000000000000')).toEqual({
      pk: 'CHECKPOINT#s',
      sk: 'shardId-000000000000',
    });
  });

  it('builds the GetItem input the hot path sends', () => {
    const cmd = new GetCommand({ TableName: 'kg', Key: keys.proxySnapshot('p9'), ConsistentRead: true });
    expect(cmd.input).toEqual({
      TableName: 'kg',
      Key: { pk: 'PROXY#p9', sk: 'SNAPSHOT' },
      ConsistentRead: true,
    });
    expect(tableLayout).toMatchObject({ partitionKey: 'pk', sortKey: 'sk', ttlAttribute: 'ttl' });
  });
});
