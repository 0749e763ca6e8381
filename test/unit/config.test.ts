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
  });

  it('fails fast on missing or malformed settings', () => {
    expect(() => configFromEnv({ ...good, KEYGATE_TABLE_NAME: undefined })).toThrow(/KEYGATE_TABLE_NAME/);
    expect(() => configFromEnv({ ...good, KEYGATE_CELLS: '{oops' })).toThrow(/KEYGATE_CELLS/);
    expect(() => configFromEnv({ ...good, KEYGATE_REQUEST_LOG_RETENTION_DAYS: '-3' })).toThrow(/RETENTION/);
  });

  it('splits host lists', () => {
    expect(parseHostList(' a.test, B.test ,,')).toEqual(['a.test', 'b.test']);
    expect(parseHostList(undefined)).toEqual([]);
  });
});
