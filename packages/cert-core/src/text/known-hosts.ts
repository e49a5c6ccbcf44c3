import { hmac } from '@noble/hashes/hmac.js';
import { sha1 } from '@noble/hashes/legacy.js';
import { CertError, malformed } from '../errors.js';
import { equalBytes, fromBase64, toBase64, utf8 } from '../wire/bytes.js';
import type { CryptoBackend } from '../crypto/backend.js';
import type { PublicKey } from '../keys/types.js';
import { encodePublicKey, isKeyType } from '../keys/public-key.js';
import { matchPatternList } from './pattern.js';
import { asciiLower, parseKeyAndComment, withLocation } from './authorized-keys.js';

/**
 * known_hosts lines as ssh(1) reads them (hostfile.c, sshd(8) SSH_KNOWN_HOSTS FILE FORMAT):
 * `[@cert-authority|@revoked] hostpatterns keytype base64 [comment]`.
 */

export type KnownHostsMarker = 'cert-authority' | 'revoked';

/**
 * The host field: a comma list of patterns (`*` `?` wildcards, `!` negation, `[host]:port`), or
 * one hashed name `|1|base64(salt)|base64(HMAC-SHA1(salt, name))` as `ssh-keygen -H` writes.
 */
export type KnownHostsNames =
  | { readonly kind: 'patterns'; readonly patterns: readonly string[] }
  | { readonly kind: 'hashed'; readonly salt: Uint8Array; readonly hash: Uint8Array };

export interface KnownHostsEntry {
  readonly marker?: KnownHostsMarker;
  readonly names: KnownHostsNames;
  readonly key: PublicKey;
  readonly comment: string;
  /** 1-based, set when the entry came from parseKnownHosts. */
  readonly lineNumber?: number;
}

/** What formatKnownHostsLine writes: patterns may be given as a plain list. */
export interface KnownHostsLineInput {
  readonly marker?: KnownHostsMarker;
  readonly names: KnownHostsNames | readonly string[];
  readonly key: PublicKey;
  readonly comment?: string;
}

/** The entries that apply to one host, split by what they say. */
export interface KnownHostsMatch {
  /** Plain lines: keys this host may present. */
  readonly hostKeys: readonly KnownHostsEntry[];
  /** `@cert-authority` lines: CAs whose host certificates this host may present. */
  readonly certAuthorities: readonly KnownHostsEntry[];
  /** `@revoked` lines: keys (host keys or CA keys) never to accept for this host. */
  readonly revoked: readonly KnownHostsEntry[];
}

const HASH_MAGIC = '|1|';
const SALT_LENGTH = 20;
/** match_pattern_list treats a longer sub-pattern as matching nothing; we refuse one instead. */
const MAX_PATTERN = 1022;

function isSpace(c: string | undefined): boolean {
  return c === ' ' || c === '\t';
}

function wordEnd(s: string, i: number): number {
  while (i < s.length && !isSpace(s[i])) i++;
  return i;
}

function skipSpace(s: string, i: number): number {
  while (isSpace(s[i])) i++;
  return i;
}

function parseHashed(field: string, where: string): KnownHostsNames {
  // ssh compares the whole field with its own encoding, so only canonical base64 can ever match.
  const parts = field.split('|');
  if (parts.length !== 4 || !field.startsWith(HASH_MAGIC)) malformed(where, `"${field.slice(0, 64)}" is not |1|salt|hash`);
  const salt = fromBase64(parts[2]!);
  const hash = fromBase64(parts[3]!);
  if (salt === undefined || salt.length !== SALT_LENGTH || toBase64(salt) !== parts[2]) {
    malformed(where, `hashed host "${field.slice(0, 64)}": salt is not ${SALT_LENGTH} bytes of base64`);
  }
  if (hash === undefined || hash.length !== 20 || toBase64(hash) !== parts[3]) {
    malformed(where, `hashed host "${field.slice(0, 64)}": hash is not 20 bytes of base64`);
  }
  return { kind: 'hashed', salt, hash };
}

function checkPatterns(patterns: readonly string[], where: string): void {
  patterns.forEach((p, i) => {
    const body = p.startsWith('!') ? p.slice(1) : p;
    if (body === '') malformed(where, `empty host pattern at position ${i}${p === '!' ? ' ("!" negates nothing)' : ''}`);
    if (body.length > MAX_PATTERN) malformed(where, `host pattern longer than ${MAX_PATTERN} characters`);
    if (/[\s,\0]/.test(p)) malformed(where, `host pattern "${p}" contains a blank, comma or NUL`);
  });
  const first = patterns[0] ?? '';
  // Such a first pattern would read back as a marker, a comment or a hashed name.
  if (/^[@#|]/.test(first)) malformed(where, `host pattern "${first}" cannot start the host field`);
}

function parseNames(field: string, where: string): KnownHostsNames {
  if (field.startsWith('|')) return parseHashed(field, where);
  const patterns = field.split(',');
  checkPatterns(patterns, where);
  return { kind: 'patterns', patterns };
}

/** Parses one known_hosts line (not a comment or blank line). */
export function parseKnownHostsLine(line: string, where = 'known_hosts'): KnownHostsEntry {
  if (typeof line !== 'string') throw new TypeError('cert-core: known_hosts line must be a string');
  if (/[\0\n]/.test(line)) malformed(where, 'line contains a NUL or newline');
  let i = skipSpace(line, 0);
  if (i >= line.length || line[i] === '#') malformed(where, 'blank or comment line');
  let marker: KnownHostsMarker | undefined;
  if (line[i] === '@') {
    const end = wordEnd(line, i);
    const word = line.slice(i, end);
    if (word === '@cert-authority') marker = 'cert-authority';
    else if (word === '@revoked') marker = 'revoked';
    else malformed(`${where}.marker`, `unknown marker "${word.slice(0, 32)}" (expected @cert-authority or @revoked)`);
    i = skipSpace(line, end);
    if (line[i] === '@') malformed(`${where}.marker`, 'more than one marker');
  }
  const hostsEnd = wordEnd(line, i);
  const names = parseNames(line.slice(i, hostsEnd), `${where}.hosts`);
  const rest = line.slice(skipSpace(line, hostsEnd));
  if (rest === '' || rest.startsWith('#')) malformed(`${where}.key`, 'line ends before the key');
  const { key, comment } = parseKeyAndComment(rest, where, 'known_hosts');
  return { ...(marker !== undefined ? { marker } : {}), names, key, comment };
}

/** Every entry of a known_hosts file; blank and `#` lines are skipped. */
export function parseKnownHosts(text: string): KnownHostsEntry[] {
  if (typeof text !== 'string') throw new TypeError('cert-core: known_hosts text must be a string');
  const out: KnownHostsEntry[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/\r$/, '');
    const t = line.slice(skipSpace(line, 0));
    if (t === '' || t.startsWith('#')) return;
    const where = `known_hosts:${i + 1}`;
    try {
      out.push({ ...parseKnownHostsLine(line, where), lineNumber: i + 1 });
    } catch (e) {
      throw withLocation(e, where);
    }
  });
  return out;
}

function checkPort(port: number): void {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new TypeError(`cert-core: port must be an integer 1-65535, got ${String(port)}`);
}

/** The name ssh looks up: the bare host on port 22, `[host]:port` otherwise (put_host_port). */
export function knownHostsName(host: string, port = 22): string {
  if (typeof host !== 'string' || host === '') throw new TypeError('cert-core: host must be a non-empty string');
  checkPort(port);
  return port === 22 ? host : `[${host}]:${port}`;
}

function hmacSha1(salt: Uint8Array, name: string): Uint8Array {
  return hmac(sha1, salt, utf8(name));
}

/**
 * The hashed form of a known_hosts name (already in `[host]:port` form when the port is not
 * 22). Lowercased first, as ssh and `ssh-keygen -H` do. `salt` is 20 random bytes.
 */
export function hashKnownHostsName(name: string, salt: Uint8Array): KnownHostsNames {
  if (typeof name !== 'string' || name === '') throw new TypeError('cert-core: name must be a non-empty string');
  if (!(salt instanceof Uint8Array) || salt.length !== SALT_LENGTH) {
    throw new TypeError(`cert-core: "salt" expected Uint8Array of length ${SALT_LENGTH}, got length=${(salt as Uint8Array | undefined)?.length}`);
  }
  return { kind: 'hashed', salt: salt.slice(), hash: hmacSha1(salt, asciiLower(name)) };
}

/**
 * One hashed entry per name of a plain line, as `ssh-keygen -H` rewrites a file. Lines with a
 * marker, a wildcard or a negation, and lines already hashed, are returned unchanged.
 */
export function hashKnownHostsEntry(entry: KnownHostsEntry, crypto: CryptoBackend): KnownHostsEntry[] {
  const { names } = entry;
  if (entry.marker !== undefined || names.kind === 'hashed' || names.patterns.some((p) => /[*?!]/.test(p))) return [entry];
  return names.patterns.map((p) => {
    const { lineNumber: _drop, ...rest } = entry;
    return { ...rest, names: hashKnownHostsName(p, crypto.randomBytes(SALT_LENGTH)) };
  });
}

function namesMatch(names: KnownHostsNames, lowerName: string): boolean {
  if (names.kind === 'hashed') return equalBytes(hmacSha1(names.salt, lowerName), names.hash);
  // OpenSSH lowercases the patterns (match_hostname) and ssh lowercases the host it looks up.
  return matchPatternList(lowerName, asciiLower(names.patterns.join(','))) === 'match';
}

/**
 * The entries that apply to `host` on `port`, with OpenSSH's semantics: port 22 is looked up as
 * the bare name and any other port as `[host]:port`; names compare case-insensitively; a line
 * whose negated pattern matches does not apply (other lines still may); a hashed line applies
 * when the HMAC of the name matches. The caller decides: a key in `revoked` is refused even if
 * it also appears in `hostKeys`, and a certificate is checked against `certAuthorities`.
 *
 * To decide as ssh does on a port other than 22: when nothing under `[host]:port` decides (for
 * a plain key, no plain host key line at all; for a certificate, no `@cert-authority` line with
 * its CA), ssh looks again under the bare name (sshconnect.c, "checking without port
 * identifier"), i.e. `knownHostsMatch(entries, host, 22)`. Any plain key line under
 * `[host]:port` other than the presented key, whatever its type, is a changed host key, and
 * there is no second look (hostfile.c check_hostkeys_by_key_or_type).
 */
export function knownHostsMatch(entries: readonly KnownHostsEntry[], host: string, port = 22): KnownHostsMatch {
  if (!Array.isArray(entries)) throw new TypeError('cert-core: entries must be an array');
  const name = asciiLower(knownHostsName(host, port));
  const hostKeys: KnownHostsEntry[] = [];
  const certAuthorities: KnownHostsEntry[] = [];
  const revoked: KnownHostsEntry[] = [];
  for (const e of entries) {
    if (!namesMatch(e.names, name)) continue;
    (e.marker === 'cert-authority' ? certAuthorities : e.marker === 'revoked' ? revoked : hostKeys).push(e);
  }
  return { hostKeys, certAuthorities, revoked };
}

function namesText(names: KnownHostsNames | readonly string[]): string {
  if (Array.isArray(names)) return (names as readonly string[]).join(',');
  const n = names as KnownHostsNames;
  if (n.kind === 'patterns') return n.patterns.join(',');
  return `${HASH_MAGIC}${toBase64(n.salt)}|${toBase64(n.hash)}`;
}

function refuse(what: string, value: string): never {
  throw new CertError('ERR_REFUSED', `cert-core: refusing to write known_hosts line: ${what}`, { where: 'known_hosts', what: value });
}

/**
 * Writes `[@marker] hosts keytype base64 [comment]`. The line is read back and must give the
 * same marker, names and comment (ERR_REFUSED otherwise: an empty pattern, a blank or comma in a
 * pattern, a first pattern starting with `@`, `#` or `|`, a comment with leading or trailing
 * blanks or a newline).
 */
export function formatKnownHostsLine(entry: KnownHostsLineInput): string {
  if (entry === null || typeof entry !== 'object' || entry.key === undefined || entry.names === undefined) {
    throw new TypeError('cert-core: formatKnownHostsLine needs { names, key }');
  }
  if (!isKeyType(entry.key.type)) throw new TypeError(`cert-core: not a plain public key: ${String(entry.key.type)}`);
  const comment = entry.comment ?? '';
  if (typeof comment !== 'string') throw new TypeError('cert-core: comment must be a string');
  const names = entry.names;
  const patterns = Array.isArray(names) ? (names as readonly string[]) : (names as KnownHostsNames).kind === 'patterns' ? (names as { patterns: readonly string[] }).patterns : undefined;
  if (patterns !== undefined) {
    if (patterns.some((p) => typeof p !== 'string')) throw new TypeError('cert-core: host patterns must be strings');
    try {
      checkPatterns(patterns, 'known_hosts.hosts');
    } catch (e) {
      if (!(e instanceof CertError)) throw e;
      refuse(e.message.replace(/^cert-core: /, ''), e.what ?? patterns.join(','));
    }
  }
  const hosts = namesText(names);
  const marker = entry.marker === undefined ? '' : `@${entry.marker}`;
  if (entry.marker !== undefined && entry.marker !== 'cert-authority' && entry.marker !== 'revoked') {
    throw new TypeError(`cert-core: unknown known_hosts marker ${String(entry.marker)}`);
  }
  const text = [marker, hosts, `${entry.key.type} ${toBase64(encodePublicKey(entry.key))}`, comment].filter((s) => s !== '').join(' ');
  let back: KnownHostsEntry;
  try {
    back = parseKnownHostsLine(text);
  } catch (e) {
    if (!(e instanceof CertError)) throw e;
    refuse(e.message.replace(/^cert-core: /, ''), e.what ?? hosts);
  }
  if (namesText(back.names) !== hosts) refuse('the host field would not read back the same', hosts);
  if (back.comment !== comment) refuse('the comment would not read back the same (leading/trailing blanks or control characters)', comment);
  return text;
}

/**
 * The `@cert-authority` line that makes ssh trust host certificates signed by `caKey` for the
 * hosts matching `hostPatterns` (e.g. `['*.example.com', '[bastion.example.com]:3022']`).
 */
export function formatCertAuthorityLine(hostPatterns: readonly string[], caKey: PublicKey, comment = ''): string {
  if (!Array.isArray(hostPatterns) || hostPatterns.some((p) => typeof p !== 'string')) {
    throw new TypeError('cert-core: hostPatterns must be an array of strings');
  }
  if (hostPatterns.length === 0) refuse('no host patterns', '');
  return formatKnownHostsLine({ marker: 'cert-authority', names: hostPatterns, key: caKey, comment });
}
