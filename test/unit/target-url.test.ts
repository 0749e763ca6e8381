import { describe, expect, it } from '@jest/globals';
import { checkTargetUrl, isInternalName } from '../../lambdas/net/target-url.ts';

describe('checkTargetUrl', () => {
  const unsafe: Array<[string, RegExp]> = [
    ['http://api.example.com', /https/],
    ['ftp://api.example.com', /https/],
    ['api.example.com', /https/],
    ['https://127.0.0.1', /not a public address/],
    ['https://2130706433/', /127\.0\.0\.1 is not a public/],
    ['https://0x7f000001/', /not a public/],
    ['https://0x7f.1/', /not a public/],
    ['https://0177.0.0.1/', /not a public/],
    ['https://017700000001/', /not a public/],
    ['https://127.1/', /not a public/],
    ['https://127.0.0.1./', /not a public/],
    ['https://１２７.０.０.１/', /not a public/],
    ['https://0/', /0\.0\.0\.0/],
    ['https://10.1.2.3/', /not a public/],
    ['https://192.168.0.1:8443/x', /not a public/],
    ['https://172.16.5.4/', /not a public/],
    ['https://100.64.0.1/', /not a public/],
    ['https://169.254.169.254/latest/meta-data', /not a public/],
    ['https://[::1]/', /not a public/],
    ['https://[::ffff:127.0.0.1]/', /not a public/],
    ['https://[0:0:0:0:0:ffff:7f00:1]/', /not a public/],
    ['https://[::ffff:a9fe:a9fe]/', /not a public/],
    ['https://[fe80::1%25eth0]/', /zone/],
    ['https://[fd00::1]/', /not a public/],
    ['https://[64:ff9b::a00:1]/', /not a public/],
    ['https://localhost/', /internal/],
    ['https://LOCALHOST./', /internal/],
    ['https://api.localhost/', /internal/],
    ['https://printer.local/', /internal/],
    ['https://metadata.google.internal/computeMetadata/v1/', /internal/],
    ['https://db.corp/', /internal/],
    ['https://intranet/', /internal/],
    ['https://instance-data/', /internal/],
    ['https://user:pass@api.example.com/', /userinfo/],
    ['https://user@api.example.com/', /userinfo/],
    ['https://api.example.com/#frag', /fragment/],
    ['https://api.exam ple.com/', /whitespace/],
    ['https://api.example.com/\n', /whitespace/],
    [' https://api.example.com/', /whitespace/],
    ['https://1.2.3.4.5/', /not a valid URL/],
    ['', /required/],
  ];
  it.each(unsafe)('refuses %j', (raw, reason) => {
    const out = checkTargetUrl(raw);
    expect(out.ok).toBe(false);
    if (!out.ok) expect(out.reason).toMatch(reason);
  });

  it('accepts public https names offline (no DNS lookup) and normalises them', () => {
    for (const [raw, normalized] of [
      ['https://api.shopify.com', 'https://api.shopify.com'],
      ['HTTPS://Api.Stripe.COM:443/v1/', 'https://api.stripe.com/v1'],
      [
        'https://surely-unresolvable-name-for-keygate-tests.example/v2/',
        'https://surely-unresolvable-name-for-keygate-tests.example/v2',
      ],
      ['https://8.8.8.8/', 'https://8.8.8.8'],
      ['https://[2606:4700:4700::1111]/', 'https://[2606:4700:4700::1111]'],
    ]) {
      const out = checkTargetUrl(raw!);
      expect(out).toMatchObject({ ok: true, normalized });
    }
  });

  it('lets allowlisted hosts be private and plain http', () => {
    expect(checkTargetUrl('http://localhost:8080/api', ['localhost:8080'])).toMatchObject({
      ok: true,
      normalized: 'http://localhost:8080/api',
    });
    expect(checkTargetUrl('http://127.0.0.1:9000', ['127.0.0.1:9000'])).toMatchObject({ ok: true });
    expect(checkTargetUrl('http://localhost:8080/api', ['other.host:8080']).ok).toBe(false);
    expect(checkTargetUrl('http://api.example.com/', ['localhost']).ok).toBe(false);
  });

  it('grants only the named port; a bare host only its default ports (443 https, 80 http)', () => {
    expect(checkTargetUrl('http://127.0.0.1:9001', ['127.0.0.1:9000']).ok).toBe(false);
    expect(checkTargetUrl('http://127.0.0.1:9000', ['127.0.0.1']).ok).toBe(false);
    expect(checkTargetUrl('https://127.0.0.1:9000', ['127.0.0.1']).ok).toBe(false);
    expect(checkTargetUrl('http://127.0.0.1', ['127.0.0.1']).ok).toBe(true);
    expect(checkTargetUrl('http://127.0.0.1:80', ['127.0.0.1']).ok).toBe(true);
    expect(checkTargetUrl('https://127.0.0.1/x', ['127.0.0.1']).ok).toBe(true);
    // http on 443 is not a default port for http.
    expect(checkTargetUrl('http://127.0.0.1:443', ['127.0.0.1']).ok).toBe(false);
    // Entries and URLs meet in one spelling: short, decimal and hex IPv4, IPv6, case, trailing dots.
    expect(checkTargetUrl('http://127.1:9000', ['127.0.0.1:9000']).ok).toBe(true);
    expect(checkTargetUrl('http://2130706433:9000', ['127.1:9000']).ok).toBe(true);
    expect(checkTargetUrl('http://0x7f000001:9000', ['127.0.0.1:9000']).ok).toBe(true);
    expect(checkTargetUrl('http://[::1]:9000', ['[::1]:9000']).ok).toBe(true);
    expect(checkTargetUrl('http://[::1]:9001', ['[::1]:9000']).ok).toBe(false);
    expect(checkTargetUrl('http://LocalHost.:9000', ['localhost:9000']).ok).toBe(true);
    // A different loopback spelling of another host is another host.
    expect(checkTargetUrl('http://localhost:9000', ['127.0.0.1:9000']).ok).toBe(false);
    expect(checkTargetUrl('http://0.0.0.0:9000', ['127.0.0.1:9000']).ok).toBe(false);
  });

  it("refuses keygate's own ports on any host, whatever the allowlist says", () => {
    const own = [4000, 4001, 38123];
    for (const raw of [
      'http://127.0.0.1:38123',
      'http://localhost:4000',
      'https://api.example.com:4001/x',
      'http://[::1]:38123',
      'http://0.0.0.0:38123',
    ]) {
      const out = checkTargetUrl(
        raw,
        ['127.0.0.1:38123', 'localhost:4000', '[::1]:38123', '0.0.0.0:38123'],
        own,
      );
      expect(out).toMatchObject({ ok: false, reason: expect.stringMatching(/keygate's own/) });
    }
    expect(checkTargetUrl('https://api.example.com/x', [], own).ok).toBe(true);
  });

  it('classifies internal-only names', () => {
    expect(isInternalName('a.b.internal.')).toBe(true);
    expect(isInternalName('router.home.arpa')).toBe(true);
    expect(isInternalName('example.com')).toBe(false);
  });
});
