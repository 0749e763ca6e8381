import { isPublicIp } from './address-policy.ts';
import { allowlistHint, effectivePort, isAllowlisted, isOwnPort } from './target-allowlist.ts';

/**
 * Save-time checks of a URL keygate will call on a user's behalf (a target's base URL, an OAuth2
 * token URL, a JWKS URL). Only `https://` to a public address or a public-looking name is accepted:
 *
 *  - no whitespace or control characters anywhere, no userinfo (`user:pass@`), no fragment;
 *  - IP literals in every spelling — decimal `2130706433`, hex `0x7f.1`, octal `0177.0.0.1`, short
 *    `127.1`, full-width digits, trailing dots, IPv4-mapped IPv6 `[::ffff:127.0.0.1]`, zone ids —
 *    are reduced to one address (the WHATWG URL parser does the IPv4 forms, the same parser every
 *    HTTP client here uses) and must be public (`isPublicIp`);
 *  - names that can only ever mean this machine or a private network (`localhost`, `*.localhost`,
 *    `*.local`, `*.internal` incl. `metadata.google.internal`, `*.localdomain`, `*.home.arpa`,
 *    `*.arpa`, `*.test`, `*.invalid`, `*.lan`, `*.intranet`, `*.corp`, `*.private`, single-label
 *    names) are refused.
 *
 * Names are not resolved here: a name that does not resolve today is accepted, and the data plane
 * checks every resolved address at connect time (DNS rebinding). Host and port pairs in the
 * deployment's allowlist (`KEYGATE_TARGET_ALLOWLIST`, local use; `host:port`, a bare host meaning its
 * default ports only, see ./target-allowlist.ts) may be private and may use plain http. keygate's own
 * ports (`ownPorts`, local mode) are refused on any host, whatever the allowlist says.
 */
export type UrlCheck = { ok: true; url: URL; normalized: string } | { ok: false; reason: string };

const INTERNAL_SUFFIXES = [
  'localhost',
  'local',
  'internal',
  'localdomain',
  'home.arpa',
  'arpa',
  'test',
  'invalid',
  'lan',
  'intranet',
  'corp',
  'private',
];

// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what we refuse
const UNSAFE_CHARS = /[\s\u0000-\u001f\u007f-\u009f\u200b-\u200f\u2028\u2029\ufeff]/;

/** True for names that can only mean this machine or a private network. */
export function isInternalName(hostname: string): boolean {
  const name = hostname.toLowerCase().replace(/\.+$/, '');
  if (name === '' || !name.includes('.')) return true;
  return INTERNAL_SUFFIXES.some((s) => name === s || name.endsWith(`.${s}`));
}

function authorityOf(raw: string): string {
  const rest = raw.replace(/^[A-Za-z][A-Za-z0-9+.-]*:\/\//, '');
  const end = rest.search(/[/?#\\]/);
  return end < 0 ? rest : rest.slice(0, end);
}

/**
 * Checks a URL for use as an upstream. `allowlist`: `host:port` / `host` entries (config's
 * `targetAllowlist`); `ownPorts`: the ports keygate itself listens on (config's `ownPorts`).
 */
export function checkTargetUrl(
  raw: string,
  allowlist: readonly string[] = [],
  ownPorts?: readonly number[],
): UrlCheck {
  if (typeof raw !== 'string' || raw.length === 0) return { ok: false, reason: 'a URL is required' };
  if (raw.length > 2048) return { ok: false, reason: 'URL longer than 2048 characters' };
  if (UNSAFE_CHARS.test(raw)) return { ok: false, reason: 'URL contains whitespace or control characters' };
  if (!/^https?:\/\//i.test(raw)) return { ok: false, reason: 'URL must start with https://' };
  const authority = authorityOf(raw);
  if (authority.includes('@')) return { ok: false, reason: 'URL must not contain credentials (userinfo)' };
  if (authority.includes('%')) return { ok: false, reason: 'URL host must not contain zone ids or escapes' };
  if (raw.includes('#')) return { ok: false, reason: 'URL must not contain a fragment' };
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { ok: false, reason: 'not a valid URL' };
  }
  if (url.username || url.password)
    return { ok: false, reason: 'URL must not contain credentials (userinfo)' };
  const bracketed = url.hostname.startsWith('[');
  const host = (bracketed ? url.hostname.slice(1, -1) : url.hostname).replace(/\.+$/, '');
  if (isOwnPort(url, ownPorts))
    return { ok: false, reason: `port ${effectivePort(url)} is one of keygate's own services` };
  const allowlisted = isAllowlisted(url, allowlist);
  // Local mode (ownPorts known): a refusal the allowlist would lift says exactly what to set.
  const refuse = (reason: string): UrlCheck => ({
    ok: false,
    reason: ownPorts ? `${reason}; ${allowlistHint(url)}` : reason,
  });
  if (url.protocol !== 'https:' && !(allowlisted && url.protocol === 'http:'))
    return refuse('URL must use https://');
  const normalized = `${url.origin}${url.pathname.replace(/\/+$/, '')}${url.search}`;
  if (allowlisted) return { ok: true, url, normalized };
  // After WHATWG parsing an IPv4 literal in any spelling is dotted-quad; IPv6 stays in brackets.
  const isIp = bracketed || /^\d{1,3}(?:\.\d{1,3}){3}$/.test(host);
  if (isIp) {
    return isPublicIp(host)
      ? { ok: true, url, normalized }
      : refuse(`address ${host} is not a public address`);
  }
  if (isInternalName(host)) return refuse(`host ${host} is a local or internal-only name`);
  return { ok: true, url, normalized };
}
