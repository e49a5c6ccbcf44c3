import { CertError, malformed } from '../errors.js';
import { fromBase64, toBase64 } from '../wire/bytes.js';
import { SshReader } from '../wire/reader.js';
import type { PublicKey } from '../keys/types.js';
import { encodePublicKey, isKeyType, parsePublicKey } from '../keys/public-key.js';

/**
 * authorized_keys lines as sshd(8) reads them (auth2-pubkeyfile.c, auth-options.c):
 * `[options] keytype base64 [comment]`. The rules below follow sshd 9.2 to 10.x, which agree.
 */

/** One option as written: a flag (`no-pty`) or a name with a quoted value (`command="..."`). */
export interface AuthorizedKeyOption {
  /** Lowercase (sshd compares names case-insensitively). */
  readonly name: string;
  /** The value with its quoting removed; absent for a flag. */
  readonly value?: string;
}

/** An `expiry-time` value. */
export interface AuthorizedKeyExpiry {
  readonly text: string;
  /** Whether it ended in `Z` or `UTC`. Without it sshd reads the time in its own time zone. */
  readonly utc: boolean;
  /** Seconds since the epoch, reading the time as UTC. */
  readonly seconds: bigint;
}

/** What the options mean, after sshd's rules (order matters: `restrict,pty` allows a pty). */
export interface AuthorizedKeyOptions {
  readonly certAuthority: boolean;
  readonly restrict: boolean;
  /** `principals="a,b"`: the certificate principals this CA line accepts (exact match). */
  readonly principals?: readonly string[];
  /** `from="pattern-list"`: host name and address patterns, `!` negation kept. */
  readonly from?: readonly string[];
  readonly command?: string;
  /** `environment="NAME=value"`: the first setting of a name wins, later ones are dropped. */
  readonly environment: readonly { readonly name: string; readonly value: string }[];
  /** The earliest of the `expiry-time` options. */
  readonly expiryTime?: AuthorizedKeyExpiry;
  /** `permitopen="host:port"` values as written. */
  readonly permitOpen: readonly string[];
  /** `permitlisten` values; a bare port is read as `*:port`, as sshd does. */
  readonly permitListen: readonly string[];
  readonly tunnel?: number | 'any';
  readonly portForwarding: boolean;
  readonly agentForwarding: boolean;
  readonly x11Forwarding: boolean;
  readonly pty: boolean;
  readonly userRc: boolean;
  /** `no-touch-required`: a FIDO key need not show user presence. */
  readonly noTouchRequired: boolean;
  readonly verifyRequired: boolean;
}

export interface AuthorizedKeyLine {
  readonly options: AuthorizedKeyOptions;
  /** The options in the order written, for writing the line back. */
  readonly rawOptions: readonly AuthorizedKeyOption[];
  readonly key: PublicKey;
  readonly comment: string;
  /** 1-based, set when the line came from parseAuthorizedKeys. */
  readonly lineNumber?: number;
}

/** What formatAuthorizedKeyLine writes; a parsed AuthorizedKeyLine is one. */
export interface AuthorizedKeyLineInput {
  readonly rawOptions?: readonly AuthorizedKeyOption[];
  readonly key: PublicKey;
  readonly comment?: string;
}

const FLAGS = new Set(['restrict', 'cert-authority']);
/** Flags sshd also takes with a `no-` prefix (the bare form re-enables after `restrict`). */
const NEGATABLE = new Set(['port-forwarding', 'agent-forwarding', 'x11-forwarding', 'touch-required', 'verify-required', 'pty', 'user-rc']);
const VALUED = new Set(['command', 'principals', 'from', 'expiry-time', 'environment', 'permitopen', 'permitlisten', 'tunnel']);

/** sshd's limits (SSH_AUTHOPT_ENV_MAX, SSH_AUTHOPT_PERMIT_MAX, NI_MAXHOST, SSH_TUNID_MAX). */
const ENV_MAX = 1024;
const PERMIT_MAX = 4096;
const NI_MAXHOST = 1025;
const TUNID_MAX = 0x7fffffff - 2;

/** Key type names OpenSSH knows that cert-core does not handle: a line starting with one has no options. */
const OTHER_OPENSSH_KEY_TYPES = new Set(['ssh-dss', 'ssh-xmss@openssh.com']);
const CERT_TYPE = /-cert-v0[01]@openssh\.com$/;

/** ASCII-only, as C's tolower: `toLowerCase` would map U+212A KELVIN SIGN to `k`. */
export function asciiLower(s: string): string {
  return s.replace(/[A-Z]/g, (c) => String.fromCharCode(c.charCodeAt(0) + 32));
}

function isSpace(c: string | undefined): boolean {
  return c === ' ' || c === '\t';
}

function skipSpace(s: string, i: number): number {
  while (isSpace(s[i])) i++;
  return i;
}

function nextSpace(s: string, i: number): number {
  while (i < s.length && !isSpace(s[i])) i++;
  return i;
}

function looksLikeKeyType(word: string): boolean {
  return isKeyType(word) || OTHER_OPENSSH_KEY_TYPES.has(word) || CERT_TYPE.test(word);
}

/**
 * `keytype base64 [comment]` at the start of `text`, as sshkey_read reads it (fields split on
 * spaces and tabs). `file` names the file kind for the certificate refusal. Used by the
 * known_hosts parser too.
 */
export function parseKeyAndComment(text: string, where: string, file: string): { key: PublicKey; comment: string } {
  const typeEnd = nextSpace(text, 0);
  const type = text.slice(0, typeEnd);
  if (type === '') malformed(`${where}.key`, 'missing key type');
  if (CERT_TYPE.test(type)) {
    malformed(`${where}.key`, `${file} takes plain keys; "${type}" is a certificate`);
  }
  if (/^[0-9]+$/.test(type)) malformed(`${where}.key`, `"${type}" looks like an SSH-1 RSA key, which OpenSSH no longer reads`);
  const b64Start = skipSpace(text, typeEnd);
  const b64End = nextSpace(text, b64Start);
  if (b64Start === b64End) malformed(`${where}.key`, `no key data after "${type}"`);
  const blob = fromBase64(text.slice(b64Start, b64End));
  if (blob === undefined) malformed(`${where}.key`, `invalid base64 after "${type}"`);
  const blobType = new SshReader(blob, `${where}.key`).text('type');
  if (CERT_TYPE.test(blobType)) {
    malformed(`${where}.key`, `${file} takes plain keys; the key data is a certificate (${blobType})`);
  }
  if (blobType !== type) malformed(`${where}.key`, `line says "${type}" but the key data is "${blobType}"`);
  const key = parsePublicKey(blob, `${where}.key`);
  const comment = text.slice(skipSpace(text, b64End)).replace(/[ \t\r]+$/, '');
  return { key, comment };
}

/**
 * Where the options field ends: the first space or tab outside double quotes, `\"` being an
 * escaped quote (sshkey_advance_past_options).
 */
function optionsEnd(line: string, where: string): number {
  let quoted = false;
  let i = 0;
  for (; i < line.length && (quoted || !isSpace(line[i])); i++) {
    if (line[i] === '\\' && line[i + 1] === '"') i++;
    else if (line[i] === '"') quoted = !quoted;
  }
  if (quoted) malformed(`${where}.options`, 'unterminated quote');
  return i;
}

/** Splits an options field into options. Empty entries (`a,,b`, a trailing comma) are skipped, as sshd does. */
function splitOptions(field: string, where: string): AuthorizedKeyOption[] {
  const out: AuthorizedKeyOption[] = [];
  let i = 0;
  while (i < field.length) {
    if (field[i] === ',') {
      i++;
      continue;
    }
    let j = i;
    while (j < field.length && field[j] !== ',' && field[j] !== '=') j++;
    const written = field.slice(i, j);
    const name = asciiLower(written);
    const w = `${where}.options.${name}`;
    if (field[j] === '=') {
      if (!VALUED.has(name)) malformed(w, `unknown option "${written}=" (or a flag given a value)`);
      j++;
      if (field[j] !== '"') malformed(w, 'missing start quote');
      j++;
      let value = '';
      while (j < field.length && field[j] !== '"') {
        if (field[j] === '\\' && field[j + 1] === '"') j++;
        value += field[j++];
      }
      if (j >= field.length) malformed(w, 'missing end quote');
      j++;
      out.push({ name, value });
    } else {
      const base = name.startsWith('no-') ? name.slice(3) : name;
      if (!FLAGS.has(name) && !NEGATABLE.has(name) && !NEGATABLE.has(base)) {
        malformed(w, VALUED.has(name) ? `option "${written}" needs a quoted value` : `unknown option "${written}"`);
      }
      out.push({ name });
    }
    if (j < field.length && field[j] !== ',') malformed(w, `unexpected "${field[j]}" after the option`);
    i = j;
  }
  return out;
}

/** YYYYMMDD[HHMM[SS]] with optional Z or UTC (parse_absolute_time). */
function parseExpiry(text: string, where: string): AuthorizedKeyExpiry {
  let body = text;
  let utc = false;
  if (body.length > 1 && /z$/i.test(body)) {
    utc = true;
    body = body.slice(0, -1);
  } else if (body.length > 3 && /utc$/i.test(body)) {
    utc = true;
    body = body.slice(0, -3);
  }
  if (!/^([0-9]{8}|[0-9]{12}|[0-9]{14})$/.test(body)) malformed(where, `"${text}" is not YYYYMMDD[HHMM[SS]][Z]`);
  const n = (a: number, b: number) => Number(body.slice(a, b) || '0');
  const [y, mo, d, h, mi, s] = [n(0, 4), n(4, 6), n(6, 8), n(8, 10), n(10, 12), n(12, 14)];
  // strptime's ranges; timegm then normalises overflow (Feb 31 is Mar 3), as Date.UTC does.
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 61) malformed(where, `"${text}" is not a valid time`);
  const date = new Date(0);
  date.setUTCFullYear(y, mo - 1, d);
  date.setUTCHours(h, mi, s, 0);
  const seconds = BigInt(Math.floor(date.getTime() / 1000));
  // sshd refuses times before 1970 and also 0, which it uses to mean "no expiry".
  if (seconds <= 0n) malformed(where, `"${text}" is not after 1970-01-01T00:00:00Z`);
  return { text, utc, seconds };
}

/** host:port or host/port, host possibly `[bracketed]` (hpdelim2); port 1-65535 or `*`. */
function checkPermit(value: string, where: string): void {
  let hostEnd: number;
  if (value.startsWith('[')) {
    const close = value.indexOf(']');
    if (close < 0) malformed(where, `"${value}": unterminated "["`);
    hostEnd = close + 1;
    if (hostEnd < value.length && value[hostEnd] !== ':' && value[hostEnd] !== '/') {
      malformed(where, `"${value}": expected ":" after "]"`);
    }
  } else {
    const m = /[:/]/.exec(value);
    hostEnd = m ? m.index : value.length;
  }
  if (hostEnd >= NI_MAXHOST) malformed(where, `"${value.slice(0, 64)}...": host name too long`);
  if (hostEnd >= value.length) malformed(where, `"${value}": missing port`);
  const port = value.slice(hostEnd + 1);
  // sshd also looks service names up in /etc/services; we take numbers only, which it also takes.
  if (port !== '*' && !(/^[0-9]{1,5}$/.test(port) && Number(port) >= 1 && Number(port) <= 65535)) {
    malformed(where, `"${value}": port must be 1-65535 or "*"`);
  }
}

type MutableOptions = { -readonly [K in keyof AuthorizedKeyOptions]: AuthorizedKeyOptions[K] };

/** The meaning of a list of options, applying sshd's rules in order. */
export function interpretAuthorizedKeyOptions(raw: readonly AuthorizedKeyOption[], where = 'authorized_keys'): AuthorizedKeyOptions {
  const o: MutableOptions = {
    certAuthority: false,
    restrict: false,
    environment: [],
    permitOpen: [],
    permitListen: [],
    portForwarding: true,
    agentForwarding: true,
    x11Forwarding: true,
    pty: true,
    userRc: true,
    noTouchRequired: false,
    verifyRequired: false,
  };
  const env: { name: string; value: string }[] = [];
  const permitOpen: string[] = [];
  const permitListen: string[] = [];
  for (const { name, value } of raw) {
    const w = `${where}.options.${name}`;
    const negated = name.startsWith('no-') && NEGATABLE.has(name.slice(3));
    const base = negated ? name.slice(3) : name;
    const on = !negated;
    if (FLAGS.has(base) || NEGATABLE.has(base)) {
      if (value !== undefined) malformed(w, `flag "${name}" takes no value`);
      switch (base) {
        case 'restrict':
          o.restrict = true;
          o.portForwarding = o.agentForwarding = o.x11Forwarding = o.pty = o.userRc = false;
          break;
        case 'cert-authority':
          o.certAuthority = true;
          break;
        case 'port-forwarding':
          o.portForwarding = on;
          break;
        case 'agent-forwarding':
          o.agentForwarding = on;
          break;
        case 'x11-forwarding':
          o.x11Forwarding = on;
          break;
        case 'pty':
          o.pty = on;
          break;
        case 'user-rc':
          o.userRc = on;
          break;
        case 'touch-required':
          o.noTouchRequired = negated;
          break;
        case 'verify-required':
          o.verifyRequired = on;
          break;
      }
      continue;
    }
    if (!VALUED.has(name)) malformed(w, `unknown option "${name}"`);
    if (value === undefined) malformed(w, `option "${name}" needs a quoted value`);
    switch (name) {
      case 'command':
        if (o.command !== undefined) malformed(w, 'more than one "command" option');
        o.command = value;
        break;
      case 'principals':
        if (o.principals !== undefined) malformed(w, 'more than one "principals" option');
        o.principals = value.split(',');
        break;
      case 'from':
        if (o.from !== undefined) malformed(w, 'more than one "from" option');
        o.from = value.split(',');
        break;
      case 'expiry-time': {
        const e = parseExpiry(value, w);
        if (o.expiryTime === undefined || e.seconds < o.expiryTime.seconds) o.expiryTime = e;
        break;
      }
      case 'environment': {
        if (env.length > ENV_MAX) malformed(w, `more than ${ENV_MAX} environment options`);
        const eq = value.indexOf('=');
        const envName = eq < 0 ? '' : value.slice(0, eq);
        if (!/^[A-Za-z0-9_]+$/.test(envName)) malformed(w, `"${value}" is not NAME=value with NAME made of letters, digits and "_"`);
        if (!env.some((e) => e.name === envName)) env.push({ name: envName, value: value.slice(eq + 1) });
        break;
      }
      case 'permitopen':
      case 'permitlisten': {
        const list = name === 'permitopen' ? permitOpen : permitListen;
        if (list.length > PERMIT_MAX) malformed(w, `more than ${PERMIT_MAX} ${name} options`);
        const v = name === 'permitlisten' && !value.includes(':') ? `*:${value}` : value;
        checkPermit(v, w);
        list.push(v);
        break;
      }
      case 'tunnel':
        if (value.toLowerCase() === 'any') o.tunnel = 'any';
        else if (/^[0-9]{1,10}$/.test(value) && Number(value) <= TUNID_MAX) o.tunnel = Number(value);
        else malformed(w, `"${value}" is not a tunnel device number or "any"`);
        break;
      default:
        malformed(w, `unknown option "${name}"`);
    }
  }
  // sshd parses this but then refuses every login through the line ("principals on non-CA key").
  if (o.principals !== undefined && !o.certAuthority) malformed(`${where}.options.principals`, 'principals= without cert-authority never allows a login');
  return { ...o, environment: env, permitOpen, permitListen };
}

function lineText(line: string, where: string): string {
  if (typeof line !== 'string') throw new TypeError('cert-core: authorized_keys line must be a string');
  if (/[\0\n]/.test(line)) malformed(where, 'line contains a NUL or newline');
  return line.slice(skipSpace(line, 0)).replace(/[ \t\r]+$/, '');
}

/** Parses one authorized_keys line (not a comment or blank line). */
export function parseAuthorizedKeyLine(line: string, where = 'authorized_keys'): AuthorizedKeyLine {
  const text = lineText(line, where);
  if (text === '' || text.startsWith('#')) malformed(where, 'blank or comment line');
  const firstWord = text.slice(0, nextSpace(text, 0));
  let rawOptions: AuthorizedKeyOption[] = [];
  let rest = text;
  // sshd reads a key first and only then tries options, so a line that starts with a key type has none.
  if (!looksLikeKeyType(firstWord)) {
    const end = optionsEnd(text, where);
    rawOptions = splitOptions(text.slice(0, end), where);
    rest = text.slice(skipSpace(text, end));
    if (rest === '') malformed(where, 'options but no key');
  }
  const options = interpretAuthorizedKeyOptions(rawOptions, where);
  const { key, comment } = parseKeyAndComment(rest, where, 'authorized_keys');
  return { options, rawOptions, key, comment };
}

/**
 * Makes sure an error from a line names where it came from (`authorized_keys:3`): errors raised
 * deeper down (an unsupported key type) carry the location in `where` but not in the message.
 */
export function withLocation(e: unknown, where: string): unknown {
  if (!(e instanceof CertError) || e.message.includes(where)) return e;
  return new CertError(e.code, `cert-core: ${where}: ${e.message.replace(/^cert-core: /, '')}`, {
    where: e.where ?? where,
    ...(e.what !== undefined ? { what: e.what } : {}),
  });
}

/** Every key line of an authorized_keys file; blank and `#` lines are skipped. */
export function parseAuthorizedKeys(text: string): AuthorizedKeyLine[] {
  if (typeof text !== 'string') throw new TypeError('cert-core: authorized_keys text must be a string');
  const out: AuthorizedKeyLine[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/\r$/, '');
    const t = line.slice(skipSpace(line, 0));
    if (t === '' || t.startsWith('#')) return;
    const where = `authorized_keys:${i + 1}`;
    try {
      out.push({ ...parseAuthorizedKeyLine(line, where), lineNumber: i + 1 });
    } catch (e) {
      throw withLocation(e, where);
    }
  });
  return out;
}

function quote(value: string): string {
  return `"${value.replace(/"/g, '\\"')}"`;
}

function refuse(what: string, value: string): never {
  throw new CertError('ERR_REFUSED', `cert-core: refusing to write authorized_keys line: ${what}`, { where: 'authorized_keys', what: value });
}

/**
 * Writes `[options] keytype base64 [comment]`. The result is read back with the parser and must
 * give the same options and comment, so nothing sshd would reject or read differently is
 * written (ERR_REFUSED otherwise: an unknown option, a value ending in a backslash, which the
 * quoting cannot carry, a newline, a comment with leading or trailing blanks).
 */
export function formatAuthorizedKeyLine(line: AuthorizedKeyLineInput): string {
  if (line === null || typeof line !== 'object' || line.key === undefined) throw new TypeError('cert-core: formatAuthorizedKeyLine needs { key }');
  const options = line.rawOptions ?? [];
  if (!Array.isArray(options)) throw new TypeError('cert-core: rawOptions must be an array');
  const comment = line.comment ?? '';
  if (typeof comment !== 'string') throw new TypeError('cert-core: comment must be a string');
  const parts: string[] = [];
  for (const opt of options) {
    if (typeof opt?.name !== 'string') throw new TypeError('cert-core: option name must be a string');
    const name = asciiLower(opt.name);
    if (opt.value === undefined) {
      parts.push(name);
      continue;
    }
    if (typeof opt.value !== 'string') throw new TypeError('cert-core: option value must be a string');
    if (opt.value.endsWith('\\')) refuse(`value of ${name} ends with a backslash`, opt.value);
    parts.push(`${name}=${quote(opt.value)}`);
  }
  const keyText = `${line.key.type} ${toBase64(encodePublicKey(line.key))}`;
  const text = [parts.join(','), keyText, comment].filter((s) => s !== '').join(' ');
  let back: AuthorizedKeyLine;
  try {
    back = parseAuthorizedKeyLine(text);
  } catch (e) {
    if (!(e instanceof CertError)) throw e;
    refuse(e.message.replace(/^cert-core: /, ''), e.what ?? text);
  }
  if (back.comment !== comment) refuse('the comment would not read back the same (leading/trailing blanks or control characters)', comment);
  const same =
    back.rawOptions.length === options.length &&
    back.rawOptions.every((o, i) => o.name === asciiLower(options[i]!.name) && o.value === options[i]!.value);
  if (!same) refuse('the options would not read back the same (empty name, space or comma in a flag?)', parts.join(','));
  return text;
}
