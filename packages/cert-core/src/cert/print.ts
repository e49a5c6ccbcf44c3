import { CertError } from '../errors.js';
import type { CryptoBackend } from '../crypto/backend.js';
import { bytesToHex } from '../wire/writer.js';
import { fingerprintSha256, keyTypeLabel } from '../keys/public-key.js';
import type { Certificate } from './certificate.js';
import type { CertOption } from './options.js';
import {
  CRITICAL_FORCE_COMMAND,
  CRITICAL_SOURCE_ADDRESS,
  CRITICAL_VERIFY_REQUIRED,
  EXT_AGENT,
  EXT_NO_TOUCH_REQUIRED,
  EXT_PORT,
  EXT_PTY,
  EXT_USER_RC,
  EXT_X11,
  optionString,
} from './options.js';

export interface PrintOptions {
  readonly crypto: CryptoBackend;
  /**
   * The file name `ssh-keygen -L -f` was given; it heads the output as `path:` (or
   * `path:line:` past the first line, and always for `-`, printed `(stdin)`). No header line
   * when absent.
   */
  readonly path?: string;
  /** Line of that file the certificate was read from (default 1). */
  readonly lineNumber?: number;
  /**
   * Minutes east of UTC of the zone times are shown in (default 0, i.e. ssh-keygen run with
   * TZ=UTC). A fixed offset: daylight saving rules are the caller's business.
   */
  readonly timeZoneOffsetMinutes?: number;
}

const UINT64_MAX = 0xffffffffffffffffn;
/** ssh-keygen clamps times to its time_t before formatting (SSH_TIME_T_MAX = LLONG_MAX). */
const TIME_T_MAX = 0x7fffffffffffffffn;
const INDENT = '        ';
const OPTION_INDENT = '                ';

/** Extensions ssh-keygen prints by name alone; anything else is shown as unknown. */
const KNOWN_EXTENSION_FLAGS: ReadonlySet<string> = new Set([EXT_X11, EXT_AGENT, EXT_PORT, EXT_PTY, EXT_USER_RC, EXT_NO_TOUCH_REQUIRED]);
const KNOWN_CRITICAL_STRINGS: ReadonlySet<string> = new Set([CRITICAL_FORCE_COMMAND, CRITICAL_SOURCE_ADDRESS]);
const KNOWN_CRITICAL_FLAGS: ReadonlySet<string> = new Set([CRITICAL_VERIFY_REQUIRED]);

function checkOffset(minutes: number): void {
  if (!Number.isInteger(minutes) || Math.abs(minutes) > 24 * 60) {
    throw new TypeError(`cert-core: timeZoneOffsetMinutes must be an integer within ±1440, got ${String(minutes)}`);
  }
}

function checkTime(t: bigint, what: string): void {
  if (typeof t !== 'bigint' || t < 0n || t > UINT64_MAX) {
    throw new TypeError(`cert-core: ${what} must be a uint64 bigint, got ${String(t)}`);
  }
}

function floorDiv(a: bigint, b: bigint): bigint {
  const q = a / b;
  return a % b !== 0n && a < 0n !== b < 0n ? q - 1n : q;
}

/** Proleptic Gregorian date of a day number counted from 1970-01-01 (exact for any size). */
function civilFromDays(days: bigint): { year: bigint; month: number; day: number } {
  const z = days + 719468n;
  const era = floorDiv(z, 146097n);
  const doe = z - era * 146097n;
  const yoe = (doe - doe / 1460n + doe / 36524n - doe / 146096n) / 365n;
  const doy = doe - (365n * yoe + yoe / 4n - yoe / 100n);
  const mp = (5n * doy + 2n) / 153n;
  const day = Number(doy - (153n * mp + 2n) / 5n + 1n);
  const month = Number(mp < 10n ? mp + 3n : mp - 9n);
  const year = yoe + era * 400n + (month <= 2 ? 1n : 0n);
  return { year, month, day };
}

const two = (n: number): string => String(n).padStart(2, '0');

/**
 * One time as ssh-keygen prints it (`%Y-%m-%dT%H:%M:%S` of localtime_r, misc.c
 * format_absolute_time), to the last quirk: past year 2^31 + 1899 glibc's localtime_r gives
 * up after filling the time of day and a truncated year, and ssh-keygen prints month and day
 * from its zero-initialised struct tm as `01-00`. Times above 2^63-1 print as 2^63-1. The
 * offset models a fixed-offset TZ such as `<+0530>-05:30` (zoneinfo files differ past the
 * overflow, observed on Debian 12's glibc 2.36).
 */
export function formatCertTime(t: bigint, timeZoneOffsetMinutes = 0): string {
  checkTime(t, 'time');
  checkOffset(timeZoneOffsetMinutes);
  const clamped = t > TIME_T_MAX ? TIME_T_MAX : t;
  // glibc first breaks the time down in UTC (to pick the zone's rules), then with the offset.
  const utc = brokenDown(clamped);
  if (utc.overflow) return `${utc.year}-01-00T${utc.clock}`;
  const local = brokenDown(clamped + BigInt(timeZoneOffsetMinutes * 60));
  // When only the local year overflows, month and day stay those of the UTC pass.
  const date = local.overflow ? utc.date : local.date;
  return `${local.year}-${date}T${local.clock}`;
}

/**
 * One pass of glibc's __offtime: the time of day always, then the year; a year whose
 * tm_year (year - 1900) does not fit an int fails, leaving month and day unset. `year` is
 * what strftime's %Y makes of tm_year: tm_year + 1900 in int arithmetic, unpadded.
 */
function brokenDown(s: bigint): { clock: string; date: string; year: string; overflow: boolean } {
  const days = floorDiv(s, 86400n);
  const rem = Number(s - days * 86400n);
  const clock = `${two(Math.floor(rem / 3600))}:${two(Math.floor(rem / 60) % 60)}:${two(rem % 60)}`;
  const { year, month, day } = civilFromDays(days);
  const tmYear = BigInt.asIntN(32, year - 1900n);
  return {
    clock,
    date: `${two(month)}-${two(day)}`,
    year: BigInt.asIntN(32, tmYear + 1900n).toString(),
    overflow: tmYear !== year - 1900n,
  };
}

/**
 * The `Valid:` text of ssh-keygen -L (sshkey_format_cert_validity): `forever` for 0..2^64-1,
 * `before X` from 0, `after X` to 2^64-1, otherwise `from X to Y`.
 */
export function formatValidity(validAfter: bigint, validBefore: bigint, timeZoneOffsetMinutes = 0): string {
  checkTime(validAfter, 'validAfter');
  checkTime(validBefore, 'validBefore');
  checkOffset(timeZoneOffsetMinutes);
  if (validAfter === 0n && validBefore === UINT64_MAX) return 'forever';
  if (validAfter === 0n) return `before ${formatCertTime(validBefore, timeZoneOffsetMinutes)}`;
  if (validBefore === UINT64_MAX) return `after ${formatCertTime(validAfter, timeZoneOffsetMinutes)}`;
  return `from ${formatCertTime(validAfter, timeZoneOffsetMinutes)} to ${formatCertTime(validBefore, timeZoneOffsetMinutes)}`;
}

/** Where ssh-keygen would stop with "Option corrupt" (or fail to parse a value) we throw. */
function corruptOption(section: string, opt: CertOption, what: string): never {
  throw new CertError('ERR_MALFORMED', `cert-core: ${section} "${opt.name}" ${what} (data ${bytesToHex(opt.data)})`, {
    where: `certificate.${section}`,
    what: opt.name,
  });
}

/** One option line as ssh-keygen's show_options prints it. */
function optionLine(opt: CertOption, critical: boolean): string {
  const section = critical ? 'criticalOptions' : 'extensions';
  const head = OPTION_INDENT + opt.name;
  const knownFlag = critical ? KNOWN_CRITICAL_FLAGS.has(opt.name) : KNOWN_EXTENSION_FLAGS.has(opt.name);
  if (knownFlag) {
    if (opt.data.length !== 0) corruptOption(section, opt, 'is a flag but carries data');
    return head;
  }
  if (critical && KNOWN_CRITICAL_STRINGS.has(opt.name)) {
    const value = optionString(opt);
    if (value === undefined) corruptOption(section, opt, 'does not hold exactly one string');
    return `${head} ${value}`;
  }
  if (opt.data.length > 0) return `${head} UNKNOWN OPTION: ${bytesToHex(opt.data)} (len ${opt.data.length})`;
  return `${head} UNKNOWN FLAG OPTION`;
}

function optionLines(label: string, opts: readonly CertOption[], critical: boolean): string[] {
  // ssh-keygen prints the label with a trailing space, then either "(none)" or a newline.
  if (opts.length === 0) return [`${INDENT}${label}: (none)`];
  return [`${INDENT}${label}: `, ...opts.map((o) => optionLine(o, critical))];
}

function headerLine(path: string, lineNumber: number): string {
  if (path === '-') return `(stdin):${lineNumber}:`;
  return lineNumber === 1 ? `${path}:` : `${path}:${lineNumber}:`;
}

/**
 * The text `ssh-keygen -L -f path` prints for one certificate (OpenSSH 9.2, ssh-keygen.c
 * print_cert), line for line, ending in a newline. Fingerprints are SHA256, as ssh-keygen's
 * default. Throws CertError where ssh-keygen itself would stop on a corrupt option.
 */
export function printCertificate(cert: Certificate, options: PrintOptions): string {
  const { crypto, path, lineNumber = 1, timeZoneOffsetMinutes = 0 } = options;
  if (typeof crypto?.hash !== 'function') throw new TypeError('cert-core: printCertificate needs options.crypto');
  if (!Number.isSafeInteger(lineNumber) || lineNumber < 1) {
    throw new TypeError(`cert-core: lineNumber must be a positive integer, got ${String(lineNumber)}`);
  }
  checkOffset(timeZoneOffsetMinutes);
  const lines: string[] = [];
  if (path !== undefined) lines.push(headerLine(path, lineNumber));
  lines.push(
    `${INDENT}Type: ${cert.certType} ${cert.kind} certificate`,
    `${INDENT}Public key: ${keyTypeLabel(cert.key)}-CERT ${fingerprintSha256(crypto, cert.key)}`,
    `${INDENT}Signing CA: ${keyTypeLabel(cert.signatureKey)} ${fingerprintSha256(crypto, cert.signatureKey)} (using ${cert.signature.algorithm})`,
    `${INDENT}Key ID: "${cert.keyId}"`,
    `${INDENT}Serial: ${cert.serial}`,
    `${INDENT}Valid: ${formatValidity(cert.validAfter, cert.validBefore, timeZoneOffsetMinutes)}`,
  );
  if (cert.principals.length === 0) lines.push(`${INDENT}Principals: (none)`);
  else lines.push(`${INDENT}Principals: `, ...cert.principals.map((p) => OPTION_INDENT + p));
  lines.push(...optionLines('Critical Options', cert.criticalOptions, true));
  lines.push(...optionLines('Extensions', cert.extensions, false));
  return lines.join('\n') + '\n';
}
