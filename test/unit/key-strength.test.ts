import { randomBytes } from 'node:crypto';
import { describe, expect, it } from '@jest/globals';
import { estimateKeyBits, MIN_KEY_BITS } from '../../lambdas/crypto/key-strength.ts';
import { generateSecret } from '../../lambdas/crypto/secrets.ts';

describe('estimateKeyBits', () => {
  it('counts 32 hex or 22 base64url characters as 128 bits, not counting a readable prefix', () => {
    expect(estimateKeyBits(randomBytes(16).toString('hex'))).toBe(128);
    expect(estimateKeyBits(`rr_live_${randomBytes(16).toString('hex')}`)).toBe(128);
    expect(estimateKeyBits(`sk_${randomBytes(16).toString('base64url')}`)).toBeGreaterThanOrEqual(
      MIN_KEY_BITS,
    );
    expect(estimateKeyBits(generateSecret('kg_live_'))).toBeGreaterThanOrEqual(MIN_KEY_BITS);
  });

  it('does not eat into a base64url body that contains "_"', () => {
    expect(estimateKeyBits('sk_ab_cdefghijklmnopqrstuv')).toBeGreaterThanOrEqual(MIN_KEY_BITS);
    expect(estimateKeyBits('rr_live_0123456789abcdef0123456789abcdef')).toBe(128);
  });

  it('refuses placeholders, short keys and repeated characters', () => {
    expect(estimateKeyBits('rr_live_xxxxxxxxxxxxxx')).toBeLessThan(MIN_KEY_BITS);
    expect(estimateKeyBits(randomBytes(15).toString('hex'))).toBeLessThan(MIN_KEY_BITS);
    expect(estimateKeyBits('x'.repeat(200))).toBe(0);
    expect(estimateKeyBits('abababababababababababababababababababab')).toBe(0);
    expect(estimateKeyBits('1234567890123456789012345678901234')).toBeLessThan(MIN_KEY_BITS);
  });
});
