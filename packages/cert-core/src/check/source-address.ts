import { CertError, malformed } from '../errors.js';

/**
 * The `source-address` critical option: a comma list of IPv4/IPv6 addresses and CIDR blocks,
 * judged as OpenSSH's addr_match_cidr_list does. Any bad entry makes the whole list invalid
 * (sshd then refuses the certificate), so parsing is all-or-nothing.
 *
 * Our address parser is deliberately stricter than glibc's getaddrinfo, which sshd uses: glibc
 * also takes inet_aton shorthands (`10.1` = 10.0.0.1, `010.0.0.1` = 8.0.0.1 in octal). We refuse
 * those rather than guess, so a list we accept always means to us what it means to sshd.
 */

export type IpFamily = 4 | 6;

export interface IpAddress {
  readonly family: IpFamily;
  /** 4 bytes for IPv4, 16 for IPv6, network order. */
  readonly bytes: Uint8Array;
}

/** One entry of a source-address list. A plain address is a /32 or /128. */
export interface SourceCidr extends IpAddress {
  readonly prefix: number;
  /** The entry as written. */
  readonly text: string;
}

/** INET6_ADDRSTRLEN + 3: OpenSSH rejects longer entries before parsing them. */
const MAX_ENTRY_LENGTH = 49;
const VALID_CHARS = /^[0-9a-fA-F.:/]*$/;

/** Strict dotted quad: four decimal octets, no leading zeros (they would be octal to glibc). */
function parseIpv4(s: string): Uint8Array | undefined {
  const parts = s.split('.');
  if (parts.length !== 4) return undefined;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return undefined;
    const v = Number(p);
    if (v > 255) return undefined;
    out[i] = v;
  }
  return out;
}

function parseGroups(side: string, allowV4Tail: boolean): number[] | undefined {
  if (side === '') return [];
  const parts = side.split(':');
  const out: number[] = [];
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i]!;
    if (allowV4Tail && i === parts.length - 1 && p.includes('.')) {
      const v4 = parseIpv4(p);
      if (v4 === undefined) return undefined;
      out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
    } else {
      if (!/^[0-9a-fA-F]{1,4}$/.test(p)) return undefined;
      out.push(parseInt(p, 16));
    }
  }
  return out;
}

/** RFC 4291 text form: `::` at most once and standing for at least one group, IPv4 tail allowed. */
function parseIpv6(s: string): Uint8Array | undefined {
  if (s.length > 45 || !s.includes(':')) return undefined;
  const halves = s.split('::');
  if (halves.length > 2) return undefined;
  let groups: number[];
  if (halves.length === 2) {
    const left = parseGroups(halves[0]!, false);
    const right = parseGroups(halves[1]!, true);
    if (left === undefined || right === undefined) return undefined;
    const missing = 8 - left.length - right.length;
    if (missing < 1) return undefined;
    groups = [...left, ...new Array<number>(missing).fill(0), ...right];
  } else {
    const all = parseGroups(s, true);
    if (all === undefined || all.length !== 8) return undefined;
    groups = all;
  }
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 0xff;
  });
  return out;
}

/**
 * Parses one IPv4 or IPv6 address; undefined when `s` is not one. Zone ids (`fe80::1%eth0`)
 * and IPv4 shorthands are not addresses here.
 */
export function parseIpAddress(s: string): IpAddress | undefined {
  if (typeof s !== 'string') throw new TypeError('cert-core: address must be a string');
  if (s.includes(':')) {
    const bytes = parseIpv6(s);
    return bytes && { family: 6, bytes };
  }
  const bytes = parseIpv4(s);
  return bytes && { family: 4, bytes };
}

function isV4Mapped(a: IpAddress): boolean {
  if (a.family !== 6) return false;
  for (let i = 0; i < 10; i++) if (a.bytes[i] !== 0) return false;
  return a.bytes[10] === 0xff && a.bytes[11] === 0xff;
}

/** sshd turns a v4-mapped peer (`::ffff:10.0.0.1`, as Node reports it) into plain IPv4. */
function normalisePeer(a: IpAddress): IpAddress {
  return isV4Mapped(a) ? { family: 4, bytes: a.bytes.slice(12) } : a;
}

function prefixMatches(addr: Uint8Array, net: Uint8Array, prefix: number): boolean {
  const whole = prefix >> 3;
  for (let i = 0; i < whole; i++) if (addr[i] !== net[i]) return false;
  const rest = prefix & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (addr[whole]! & mask) === (net[whole]! & mask);
}

function hostBitsZero(bytes: Uint8Array, prefix: number): boolean {
  for (let bit = prefix; bit < bytes.length * 8; bit++) {
    if ((bytes[bit >> 3]! >> (7 - (bit & 7))) & 1) return false;
  }
  return true;
}

function parseEntry(entry: string, where: string): SourceCidr {
  if (entry === '') malformed(where, 'empty entry');
  if (entry.length > MAX_ENTRY_LENGTH) malformed(where, `entry "${entry.slice(0, 64)}" is longer than ${MAX_ENTRY_LENGTH} characters`);
  if (!VALID_CHARS.test(entry)) malformed(where, `entry "${entry}" has characters other than hex digits, "." ":" and "/" (no host names, spaces or zone ids)`);
  const slash = entry.indexOf('/');
  const addrText = slash < 0 ? entry : entry.slice(0, slash);
  const maskText = slash < 0 ? undefined : entry.slice(slash + 1);
  if (maskText !== undefined && !/^[0-9]+$/.test(maskText)) malformed(where, `entry "${entry}" has a bad prefix length`);
  const addr = parseIpAddress(addrText);
  if (addr === undefined) malformed(where, `entry "${entry}" is not an IPv4 or IPv6 address`);
  const max = addr.family === 4 ? 32 : 128;
  const prefix = maskText === undefined ? max : Number(maskText);
  if (prefix > max) malformed(where, `entry "${entry}" has prefix length ${prefix}, more than ${max} for IPv${addr.family}`);
  if (!hostBitsZero(addr.bytes, prefix)) malformed(where, `entry "${entry}" has bits set beyond its /${prefix} prefix`);
  return { family: addr.family, bytes: addr.bytes, prefix, text: entry };
}

/**
 * Parses a source-address value (`10.0.0.0/8,2001:db8::/32,192.0.2.7`). Throws ERR_MALFORMED
 * for an empty list, an empty entry, a host name, a prefix too long for its family, or bits set
 * beyond the prefix: the cases where sshd calls the whole list invalid.
 */
export function parseSourceAddressList(value: string, context = 'source-address'): SourceCidr[] {
  if (typeof value !== 'string') throw new TypeError('cert-core: source-address must be a string');
  return value.split(',').map((e, i) => parseEntry(e, `${context}[${i}]`));
}

/**
 * Whether a peer may use a certificate carrying this source-address. A malformed list throws
 * ERR_MALFORMED (sshd refuses such a certificate outright); a peer outside every entry, or a
 * peer address that is not an address at all, gives false.
 */
export function sourceAddressAllows(list: string | readonly SourceCidr[], peerAddress: string): boolean {
  const entries = typeof list === 'string' ? parseSourceAddressList(list) : list;
  if (!Array.isArray(entries)) throw new TypeError('cert-core: source-address list must be a string or parsed list');
  if (typeof peerAddress !== 'string') throw new TypeError('cert-core: peerAddress must be a string');
  const parsed = parseIpAddress(peerAddress);
  if (parsed === undefined) return false;
  const peer = normalisePeer(parsed);
  return entries.some((e) => e.family === peer.family && prefixMatches(peer.bytes, e.bytes, e.prefix));
}

/** Canonical text: dotted quad, or RFC 5952 IPv6 (lowercase, longest zero run as `::`). */
export function formatIpAddress(a: IpAddress): string {
  if (a.family === 4) return Array.from(a.bytes).join('.');
  if (isV4Mapped(a)) return `::ffff:${Array.from(a.bytes.slice(12)).join('.')}`;
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push((a.bytes[2 * i]! << 8) | a.bytes[2 * i + 1]!);
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (xs: number[]) => xs.map((x) => x.toString(16)).join(':');
  if (best < 0) return hex(g);
  return `${hex(g.slice(0, best))}::${hex(g.slice(best + bestLen))}`;
}

/**
 * The source-address value to put in a certificate being issued: every entry validated as
 * sshd will judge it, written canonically (`2001:DB8:0::/32` becomes `2001:db8::/32`). Throws
 * ERR_MALFORMED for anything sshd would call invalid, including an empty list.
 */
export function formatSourceAddress(entries: string | readonly string[]): string {
  const list = typeof entries === 'string' ? entries.split(',') : entries;
  if (!Array.isArray(list) || list.some((e) => typeof e !== 'string')) {
    throw new TypeError('cert-core: source-address entries must be strings');
  }
  if (list.length === 0) {
    throw new CertError('ERR_MALFORMED', 'cert-core: malformed source-address: empty list', { where: 'source-address', what: 'empty list' });
  }
  return list
    .map((e, i) => {
      const c = parseEntry(e, `source-address[${i}]`);
      const addr = formatIpAddress(c);
      return e.includes('/') ? `${addr}/${c.prefix}` : addr;
    })
    .join(',');
}
