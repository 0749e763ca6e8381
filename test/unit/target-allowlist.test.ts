import { describe, expect, it } from '@jest/globals';
import { parseAllowlistEntry, parseTargetAllowlist } from '../../lambdas/net/target-allowlist.ts';
import { configFromEnv } from '../../lambdas/shared/config.ts';

describe('target allowlist entries', () => {
  it('parses host and host:port, normalised like a URL host', () => {
    expect(parseTargetAllowlist(' 127.0.0.1:9000, api.LAN, [::1]:8080 ,127.1:9000,')).toEqual([
      '127.0.0.1:9000',
      'api.lan',
      '[::1]:8080',
    ]);
    expect(parseAllowlistEntry('0x7f.1:80')).toEqual({ host: '127.0.0.1', port: 80 });
    expect(parseAllowlistEntry('[0:0::1]')).toEqual({ host: '[::1]' });
    expect(parseTargetAllowlist(undefined)).toEqual([]);
  });

  it('refuses anything that is not host or host:port, naming every bad entry', () => {
    for (const bad of [
      'http://a.lan',
      'a.lan:0',
      'a.lan:70000',
      'a.lan/x',
      'user@a.lan',
      '::1',
      'a.lan:',
      'a b',
    ]) {
      expect(() => parseTargetAllowlist(bad)).toThrow(/host:port/);
    }
    expect(() => parseTargetAllowlist('ok.lan:1,a.lan:0,b.lan/x')).toThrow(/'a\.lan:0'.*'b\.lan\/x'/);
  });

  it('fails the cold start on a malformed KEYGATE_TARGET_ALLOWLIST', () => {
    const env = {
      AWS_REGION: 'us-east-1',
      KEYGATE_TABLE_NAME: 'keygate',
      KEYGATE_CELLS: JSON.stringify({ 'us-east-1': { tableName: 'keygate', kmsKeyId: 'k' } }),
    };
    expect(
      configFromEnv({ ...env, KEYGATE_TARGET_ALLOWLIST: '10.0.0.5:8080,Vendor.LAN' }).targetAllowlist,
    ).toEqual(['10.0.0.5:8080', 'vendor.lan']);
    expect(() => configFromEnv({ ...env, KEYGATE_TARGET_ALLOWLIST: '10.0.0.5:99999' })).toThrow(
      /KEYGATE_TARGET_ALLOWLIST: '10\.0\.0\.5:99999' has a port outside 1-65535/,
    );
  });
});
