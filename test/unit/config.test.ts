import { describe, expect, it } from '@jest/globals';
import { configFromEnv, parseHostList } from '../../lambdas/shared/config.ts';

const good = {
  AWS_REGION: 'us-east-1',
  KEYGATE_TABLE_NAME: 'keygate',
  KEYGATE_CELLS: JSON.stringify({
    'us-east-1': { tableName: 'keygate', kmsKeyId: 'arn:aws:kms:us-east-1:1:key/x' },
  }),
};

describe('config read at init', () => {
  it('parses a valid environment', () => {
    const c = configFromEnv(good);
    expect(c.homeRegion).toBe('us-east-1');
    expect(c.cells['us-east-1']).toMatchObject({ region: 'us-east-1', tableName: 'keygate' });
    expect(c.requestLogRetentionDays).toBe(90);
    expect(c.telemetrySink).toBe('kinesis');
    expect(
      configFromEnv({ ...good, KEYGATE_REQUEST_LOG_RETENTION_DAYS: '30', KEYGATE_TELEMETRY_SINK: 'log' }),
    ).toMatchObject({ requestLogRetentionDays: 30, telemetrySink: 'log' });
  });

  it('fails fast on missing or malformed settings', () => {
    expect(() => configFromEnv({ ...good, KEYGATE_TABLE_NAME: undefined })).toThrow(/KEYGATE_TABLE_NAME/);
    expect(() => configFromEnv({ ...good, KEYGATE_CELLS: '{oops' })).toThrow(/KEYGATE_CELLS/);
    expect(() => configFromEnv({ ...good, KEYGATE_REQUEST_LOG_RETENTION_DAYS: '-3' })).toThrow(
      /KEYGATE_REQUEST_LOG_RETENTION_DAYS: Too small: expected number to be >=1/,
    );
    expect(() => configFromEnv({ ...good, KEYGATE_REQUEST_LOG_RETENTION_DAYS: '1.5' })).toThrow(
      /expected int/,
    );
    expect(() => configFromEnv({ ...good, KEYGATE_TELEMETRY_SINK: 'stdout' })).toThrow(
      /KEYGATE_TELEMETRY_SINK: Invalid option: expected one of "kinesis"\|"log"/,
    );
    expect(() =>
      configFromEnv({ ...good, KEYGATE_CELLS: JSON.stringify({ 'us-east-1': { tableName: 'k' } }) }),
    ).toThrow(
      /KEYGATE_CELLS.us-east-1.tableName: Too small.*KEYGATE_CELLS.us-east-1.kmsKeyId: Invalid input/,
    );
  });

  it('KEYGATE_STS_ENDPOINT overrides the STS endpoint (absent in AWS), and must be a URL', () => {
    expect(configFromEnv(good).stsEndpoint).toBeUndefined();
    expect(configFromEnv({ ...good, KEYGATE_STS_ENDPOINT: 'http://127.0.0.1:4566' }).stsEndpoint).toBe(
      'http://127.0.0.1:4566',
    );
    expect(() => configFromEnv({ ...good, KEYGATE_STS_ENDPOINT: 'sts.local' })).toThrow(
      /KEYGATE_STS_ENDPOINT/,
    );
  });

  it('splits host lists', () => {
    expect(parseHostList(' a.test, B.test ,,')).toEqual(['a.test', 'b.test']);
    expect(parseHostList(undefined)).toEqual([]);
  });
});
