import { describe, expect, it } from '@jest/globals';
import {
  digestsEqual,
  generateSecret,
  hashSecret,
  hasValidChecksum,
  SECRET_PATTERN,
  secretHint,
} from '../../lambdas/crypto/secrets.ts';

describe('secrets', () => {
  it('generates prefixed keys with a verifiable checksum', () => {
    const key = generateSecret('kg_live_');
    expect(key).toMatch(SECRET_PATTERN);
    expect(key.startsWith('kg_live_')).toBe(true);
    expect(hasValidChecksum(key)).toBe(true);
  });

  it('detects a typo through the checksum', () => {
    const key = generateSecret('kg_user_');
    const pos = 12;
    const swapped = key.slice(0, pos) + (key[pos] === 'a' ? 'b' : 'a') + key.slice(pos + 1);
    expect(hasValidChecksum(swapped)).toBe(false);
    expect(hasValidChecksum(`${key}x`)).toBe(false);
    expect(hasValidChecksum('kg_user_short')).toBe(false);
  });

  it('never repeats and spreads over the alphabet', () => {
    const seen = new Set<string>();
    const chars = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const k = generateSecret('kg_test_');
      seen.add(k);
      for (const c of k.slice(8, 38)) chars.add(c);
    }
    expect(seen.size).toBe(2000);
    expect(chars.size).toBe(62);
  });

  it('hashes and compares digests in constant time', () => {
    const k = generateSecret('kg_user_');
    expect(hashSecret(k)).toMatch(/^[0-9a-f]{64}$/);
    expect(digestsEqual(hashSecret(k), hashSecret(k))).toBe(true);
    expect(digestsEqual(hashSecret(k), hashSecret(`${k}1`))).toBe(false);
    expect(digestsEqual('', '')).toBe(false);
  });

  it('hints show the prefix and the last four only', () => {
    const k = generateSecret('kg_live_');
    expect(secretHint(k)).toBe(`kg_live_…${k.slice(-4)}`);
  });
});
