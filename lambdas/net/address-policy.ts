import ipaddr from 'ipaddr.js';

/**
 * Which IP addresses keygate may connect to on a user's behalf. Only globally routable unicast
 * addresses are public; everything else — loopback, private, link-local (cloud metadata at
 * 169.254.169.254), CGNAT, multicast, reserved, documentation, benchmarking, 6to4/Teredo/NAT64
 * wrappers of such addresses, IPv4-mapped IPv6 — is refused. Used when a target is saved (for IP
 * literals) and again at connect time for every resolved address (DNS rebinding).
 */
export function isPublicIp(address: string): boolean {
  let addr: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    // Zone ids (fe80::1%eth0) are never public.
    if (address.includes('%')) return false;
    addr = ipaddr.parse(address);
  } catch {
    return false;
  }
  if (addr.kind() === 'ipv6') {
    const v6 = addr as ipaddr.IPv6;
    if (v6.isIPv4MappedAddress()) return isPublicIp(v6.toIPv4Address().toString());
    const range = v6.range();
    if (range === '6to4' || range === 'teredo' || range === 'rfc6052' || range === 'rfc6145') return false;
    // 64:ff9b:1::/48 (local-use NAT64) is not classified by ipaddr.js.
    if (v6.match(ipaddr.IPv6.parse('64:ff9b:1::'), 48)) return false;
    return range === 'unicast';
  }
  const v4 = addr as ipaddr.IPv4;
  if (v4.range() !== 'unicast') return false;
  // Ranges ipaddr.js leaves in 'unicast' that are still not the public Internet.
  const extra: Array<[string, number]> = [
    ['192.0.0.0', 24], // IETF protocol assignments
    ['198.18.0.0', 15], // benchmarking
    ['192.88.99.0', 24], // 6to4 relay anycast
    ['100.64.0.0', 10], // CGNAT (also 'carrierGradeNat')
    ['0.0.0.0', 8],
    ['240.0.0.0', 4],
  ];
  return !extra.some(([base, bits]) => v4.match(ipaddr.IPv4.parse(base), bits));
}
