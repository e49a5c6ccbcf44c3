import { SshReader } from '../wire/reader.js';
import { SshWriter } from '../wire/writer.js';
import { compareBytes, utf8 } from '../wire/bytes.js';
import { CertError } from '../errors.js';

/**
 * One critical option or extension: a name and its data. A flag has empty data; a string
 * value is itself an SSH string inside `data` (two length prefixes on the wire).
 */
export interface CertOption {
  readonly name: string;
  readonly data: Uint8Array;
}

export const CRITICAL_FORCE_COMMAND = 'force-command';
export const CRITICAL_SOURCE_ADDRESS = 'source-address';
export const CRITICAL_VERIFY_REQUIRED = 'verify-required';

export const EXT_NO_TOUCH_REQUIRED = 'no-touch-required';
export const EXT_X11 = 'permit-X11-forwarding';
export const EXT_AGENT = 'permit-agent-forwarding';
export const EXT_PORT = 'permit-port-forwarding';
export const EXT_PTY = 'permit-pty';
export const EXT_USER_RC = 'permit-user-rc';

/** What ssh-keygen gives a user certificate by default, in wire order. */
export const DEFAULT_USER_EXTENSIONS: readonly string[] = [EXT_X11, EXT_AGENT, EXT_PORT, EXT_PTY, EXT_USER_RC];

export function flagOption(name: string): CertOption {
  return { name, data: new Uint8Array(0) };
}

export function stringOption(name: string, value: string): CertOption {
  return { name, data: new SshWriter().string(value).finish() };
}

export function forceCommand(command: string): CertOption {
  return stringOption(CRITICAL_FORCE_COMMAND, command);
}

export function sourceAddress(cidrs: readonly string[]): CertOption {
  return stringOption(CRITICAL_SOURCE_ADDRESS, cidrs.join(','));
}

/** The string inside an option's data, or undefined when the data is not exactly one string. */
export function optionString(opt: CertOption): string | undefined {
  try {
    const r = new SshReader(opt.data, opt.name);
    const s = r.text('value');
    r.end();
    return s;
  } catch {
    return undefined;
  }
}

export function readOptions(r: SshReader, field: string): CertOption[] {
  const inner = new SshReader(r.string(field), `${field}`);
  const out: CertOption[] = [];
  while (inner.remaining > 0) {
    const i = out.length;
    const name = inner.text(`[${i}].name`);
    const data = inner.string(`[${i}].data`).slice();
    out.push({ name, data });
  }
  return out;
}

/**
 * Bytewise (strcmp) order of option names. For ASCII names, which is all OpenSSH defines,
 * UTF-16 code unit order is byte order, so only other names pay for an encoding.
 */
function compareNames(a: string, b: string): number {
  if (/^[\x00-\x7f]*$/.test(a) && /^[\x00-\x7f]*$/.test(b)) return a < b ? -1 : a > b ? 1 : 0;
  return compareBytes(utf8(a), utf8(b));
}

/** Bytewise order and uniqueness of names, as the wire requires from an encoder. */
export function optionsCanonical(opts: readonly CertOption[]): boolean {
  for (let i = 1; i < opts.length; i++) {
    if (compareNames(opts[i - 1]!.name, opts[i]!.name) >= 0) return false;
  }
  return true;
}

/** Sorts bytewise and refuses duplicates. */
export function canonicalOptions(opts: readonly CertOption[], what: string): CertOption[] {
  if (optionsCanonical(opts)) return [...opts];
  const sorted = [...opts].sort((a, b) => compareNames(a.name, b.name));
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i - 1]!.name === sorted[i]!.name) {
      throw new CertError('ERR_REFUSED', `cert-core: duplicate ${what} "${sorted[i]!.name}"`, {
        where: what,
        what: sorted[i]!.name,
      });
    }
  }
  return sorted;
}

export function writeOptions(w: SshWriter, opts: readonly CertOption[]): void {
  w.nested((x) => {
    for (const o of opts) x.string(o.name).string(o.data);
  });
}
