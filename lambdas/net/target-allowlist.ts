/**
 * The deployment's target allowlist (`KEYGATE_TARGET_ALLOWLIST`, local use): `host:port` entries
 * naming private upstreams that may be targets, over plain http too. The port is part of the
 * grant — allowing a host never allows every service on it:
 *
 *  - `host:port` allows exactly that port (`127.0.0.1:9000`, `[::1]:8080`, `api.lan:8443`);
 *  - a bare `host` allows only the scheme's default port: 443 for `https://`, 80 for `http://`.
 *
 * Hosts are normalised the way the WHATWG URL parser normalises a target's host (lower case,
 * trailing dots dropped, IPv4 in any spelling reduced to dotted quad, IPv6 compressed in brackets),
 * so `127.1:9000` and `127.0.0.1:9000` are one entry. Used when a target URL is saved and again
 * before every connection.
 *
 * Separately, keygate's own ports (local mode: the Core API, the proxy and the embedded stand-ins)
 * are never targets, whatever the allowlist says.
 */
export interface AllowlistEntry {
  /** Normalised host: a name, a dotted-quad IPv4, or a bracketed IPv6. */
  host: string;
  /** The one port allowed; absent: the scheme's default port only. */
  port?: number;
}

const ENTRY = /^(\[[0-9a-f:.]+\]|[^\s:/?#@[\]\\]+)(?::(\d{1,5}))?$/i;

/** The host of a URL as allowlist entries spell it (WHATWG-normalised, no trailing dot). */
export function normalizedHost(url: URL): string {
  return url.hostname.toLowerCase().replace(/\.+$/, '');
}

/** Parses one entry, or explains why it is not one. */
export function parseAllowlistEntry(raw: string): AllowlistEntry | { error: string } {
  const text = raw.trim();
  const match = ENTRY.exec(text);
  if (!match) return { error: `'${raw}' is not host or host:port` };
  let host: string;
  try {
    const url = new URL(`http://${match[1]}/`);
    host = normalizedHost(url);
  } catch {
    return { error: `'${raw}' does not name a valid host` };
  }
  if (host === '') return { error: `'${raw}' does not name a valid host` };
  if (match[2] === undefined) return { host };
  const port = Number(match[2]);
  if (port < 1 || port > 65535) return { error: `'${raw}' has a port outside 1-65535` };
  return { host, port };
}

/**
 * Parses a comma-separated allowlist, throwing a readable error naming every bad entry (config is
 * checked at init). Returns canonical entry strings (`host` or `host:port`).
 */
export function parseTargetAllowlist(raw: string | readonly string[] | undefined): string[] {
  const items = (typeof raw === 'string' ? raw.split(',') : (raw ?? [])).map((s) => s.trim()).filter(Boolean);
  const out: string[] = [];
  const errors: string[] = [];
  for (const item of items) {
    const entry = parseAllowlistEntry(item);
    if ('error' in entry) errors.push(entry.error);
    else out.push(entry.port === undefined ? entry.host : `${entry.host}:${entry.port}`);
  }
  if (errors.length > 0) throw new Error(`${errors.join('; ')} (entries are host:port or host)`);
  return [...new Set(out)];
}

const parsedLists = new WeakMap<readonly string[], AllowlistEntry[]>();

function entriesOf(allowlist: readonly string[]): AllowlistEntry[] {
  let entries = parsedLists.get(allowlist);
  if (!entries) {
    // Entries that do not parse never match (configFromEnv refuses them before this point).
    entries = allowlist.map(parseAllowlistEntry).filter((e): e is AllowlistEntry => !('error' in e));
    parsedLists.set(allowlist, entries);
  }
  return entries;
}

/** The port a URL connects to: its explicit port, or the scheme's default. */
export function effectivePort(url: URL): number {
  if (url.port !== '') return Number(url.port);
  return url.protocol === 'https:' ? 443 : 80;
}

/** True when `url`'s host and port are granted by an allowlist entry. */
export function isAllowlisted(url: URL, allowlist: readonly string[]): boolean {
  if (allowlist.length === 0) return false;
  const host = normalizedHost(url);
  const port = effectivePort(url);
  // WHATWG drops an explicit default port, so `url.port === ''` means the scheme's default.
  return entriesOf(allowlist).some(
    (e) => e.host === host && (e.port === undefined ? url.port === '' : e.port === port),
  );
}

/** True when `url` would connect to one of keygate's own ports (local mode), on any host. */
export function isOwnPort(url: URL, ownPorts: readonly number[] | undefined): boolean {
  return ownPorts?.includes(effectivePort(url)) === true;
}

/**
 * What to set so that `url` may be a target (local mode, where the operator is the user at the
 * keyboard): the exact KEYGATE_TARGET_ALLOWLIST entry, and that a restart keeps the data.
 */
export function allowlistHint(url: URL): string {
  const entry = `${normalizedHost(url)}:${effectivePort(url)}`;
  return (
    `to allow it, restart keygate with KEYGATE_TARGET_ALLOWLIST=${entry} ` +
    '(comma-separated host:port entries; the data is kept)'
  );
}
