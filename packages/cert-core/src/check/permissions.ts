import { CertError, malformed } from '../errors.js';
import type { CertOption } from '../cert/options.js';
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
  canonicalOptions,
  flagOption,
  optionString,
  stringOption,
} from '../cert/options.js';
import { parseSourceAddressList } from './source-address.js';

/**
 * What a user certificate allows, as typed data. This file is the one mapping between these
 * fields and certificate extensions / critical options, in both directions: the checker reads
 * certificates with `permissionsFromOptions`, auth issues them with `optionsFromPermissions`.
 */
export interface Permissions {
  readonly pty: boolean;
  readonly portForwarding: boolean;
  readonly agentForwarding: boolean;
  readonly x11Forwarding: boolean;
  readonly userRc: boolean;
  /** A security key may sign without a touch (extension no-touch-required). */
  readonly noTouchRequired: boolean;
  /** A security key must verify the user, e.g. by PIN (critical option verify-required). */
  readonly verifyRequired: boolean;
  readonly forceCommand?: string;
  /** The comma-separated CIDR list exactly as in the certificate. */
  readonly sourceAddress?: string;
  /** Extensions this package does not know, by name (sshd ignores them too). */
  readonly unknownExtensions: readonly string[];
}

type ExtensionField = 'pty' | 'portForwarding' | 'agentForwarding' | 'x11Forwarding' | 'userRc' | 'noTouchRequired';

// A Record over the field union: adding a flag field without an extension name is a type error.
const EXTENSION_OF: Readonly<Record<ExtensionField, string>> = {
  pty: EXT_PTY,
  portForwarding: EXT_PORT,
  agentForwarding: EXT_AGENT,
  x11Forwarding: EXT_X11,
  userRc: EXT_USER_RC,
  noTouchRequired: EXT_NO_TOUCH_REQUIRED,
};
const EXTENSION_FIELDS = Object.keys(EXTENSION_OF) as ExtensionField[];
const FIELD_OF_EXTENSION: ReadonlyMap<string, ExtensionField> = new Map(
  EXTENSION_FIELDS.map((f) => [EXTENSION_OF[f], f]),
);

/** The critical options OpenSSH (and this package) understands. */
export const KNOWN_CRITICAL_OPTIONS: readonly string[] = [
  CRITICAL_FORCE_COMMAND,
  CRITICAL_SOURCE_ADDRESS,
  CRITICAL_VERIFY_REQUIRED,
];

/** Nothing allowed: the starting point for issuance policies that grant explicitly. */
export const NO_PERMISSIONS: Permissions = {
  pty: false,
  portForwarding: false,
  agentForwarding: false,
  x11Forwarding: false,
  userRc: false,
  noTouchRequired: false,
  verifyRequired: false,
  unknownExtensions: [],
};

/** What `ssh-keygen -s` grants a user certificate by default (the five permit-* extensions). */
export const DEFAULT_USER_PERMISSIONS: Permissions = {
  ...NO_PERMISSIONS,
  pty: true,
  portForwarding: true,
  agentForwarding: true,
  x11Forwarding: true,
  userRc: true,
};

export interface PermissionsOptions {
  /**
   * Critical options the caller enforces (default: all of KNOWN_CRITICAL_OPTIONS). Leaving a
   * known one out makes certificates carrying it fail, as they must if the server cannot
   * honour it. Extra names are accepted uninterpreted: the caller reads them from the
   * certificate itself.
   */
  readonly supportedCriticalOptions?: readonly string[];
}

function unknownCritical(name: string, supported: readonly string[]): never {
  throw new CertError(
    'ERR_UNKNOWN_CRITICAL_OPTION',
    `cert-core: unsupported critical option "${name}" (supported: ${supported.join(', ') || 'none'})`,
    { where: 'certificate.criticalOptions', what: name },
  );
}

function stringValue(opt: CertOption, list: string): string {
  const value = optionString(opt);
  if (value === undefined) {
    malformed(`certificate.${list}.${opt.name}`, `expected one string, got ${opt.data.length} bytes that are not one`);
  }
  return value;
}

function flagValue(opt: CertOption, list: string): void {
  // sshd: 'Certificate option "x" corrupt (extra data)' and refuses the certificate.
  if (opt.data.length !== 0) malformed(`certificate.${list}.${opt.name}`, `flag carries ${opt.data.length} bytes of data`);
}

/**
 * Reads critical options and extensions as sshd's cert_option_list does: an unsupported
 * critical option, a repeated force-command or source-address, a known option whose data is
 * not what its kind requires, or a malformed source-address list are all refused; unknown
 * extensions are listed and otherwise ignored; a repeated known extension is harmless.
 */
export function permissionsFromOptions(
  criticalOptions: readonly CertOption[],
  extensions: readonly CertOption[],
  options: PermissionsOptions = {},
): Permissions {
  const supported = options.supportedCriticalOptions ?? KNOWN_CRITICAL_OPTIONS;
  if (!Array.isArray(supported) || supported.some((s) => typeof s !== 'string')) {
    throw new TypeError('cert-core: supportedCriticalOptions must be an array of strings');
  }
  let forceCommand: string | undefined;
  let sourceAddress: string | undefined;
  let verifyRequired = false;
  for (const opt of criticalOptions) {
    if (!supported.includes(opt.name)) unknownCritical(opt.name, supported);
    switch (opt.name) {
      case CRITICAL_FORCE_COMMAND:
      case CRITICAL_SOURCE_ADDRESS: {
        const value = stringValue(opt, 'criticalOptions');
        if ((opt.name === CRITICAL_FORCE_COMMAND ? forceCommand : sourceAddress) !== undefined) {
          throw new CertError('ERR_UNKNOWN_CRITICAL_OPTION', `cert-core: certificate has more than one "${opt.name}" critical option`, {
            where: 'certificate.criticalOptions',
            what: opt.name,
          });
        }
        if (opt.name === CRITICAL_FORCE_COMMAND) {
          forceCommand = value;
        } else {
          try {
            parseSourceAddressList(value);
          } catch (e) {
            if (!(e instanceof CertError)) throw e;
            // sshd: "Certificate source-address contents invalid", and the login fails.
            throw new CertError('ERR_SOURCE_ADDRESS', `cert-core: certificate source-address "${value}" is malformed: ${e.message}`, {
              where: 'certificate.criticalOptions.source-address',
              what: value,
            });
          }
          sourceAddress = value;
        }
        break;
      }
      case CRITICAL_VERIFY_REQUIRED:
        flagValue(opt, 'criticalOptions');
        verifyRequired = true;
        break;
      default:
      // Supported by the caller, interpreted by the caller.
    }
  }
  const flags: Record<ExtensionField, boolean> = {
    pty: false,
    portForwarding: false,
    agentForwarding: false,
    x11Forwarding: false,
    userRc: false,
    noTouchRequired: false,
  };
  const unknown: string[] = [];
  for (const ext of extensions) {
    const field = FIELD_OF_EXTENSION.get(ext.name);
    if (field === undefined) {
      if (!unknown.includes(ext.name)) unknown.push(ext.name);
      continue;
    }
    flagValue(ext, 'extensions');
    flags[field] = true;
  }
  return {
    ...flags,
    verifyRequired,
    ...(forceCommand !== undefined ? { forceCommand } : {}),
    ...(sourceAddress !== undefined ? { sourceAddress } : {}),
    unknownExtensions: unknown,
  };
}

function refuse(where: string, what: string, message: string): never {
  throw new CertError('ERR_REFUSED', `cert-core: ${message}`, { where, what });
}

/**
 * The critical options and extensions that grant exactly `p`, sorted bytewise for a
 * certificate template. Unknown extensions become flags. Refuses what sshd would refuse to
 * read back: a NUL in force-command, a malformed source-address, an unknown extension that
 * repeats or shadows a known name.
 */
export function optionsFromPermissions(p: Permissions): { criticalOptions: CertOption[]; extensions: CertOption[] } {
  if (typeof p !== 'object' || p === null) throw new TypeError('cert-core: permissions must be an object');
  const critical: CertOption[] = [];
  if (p.forceCommand !== undefined) {
    if (typeof p.forceCommand !== 'string') throw new TypeError('cert-core: forceCommand must be a string');
    if (p.forceCommand.includes('\0')) refuse('forceCommand', p.forceCommand, 'force-command contains a NUL byte');
    critical.push(stringOption(CRITICAL_FORCE_COMMAND, p.forceCommand));
  }
  if (p.sourceAddress !== undefined) {
    if (typeof p.sourceAddress !== 'string') throw new TypeError('cert-core: sourceAddress must be a string');
    try {
      parseSourceAddressList(p.sourceAddress);
    } catch (e) {
      if (!(e instanceof CertError)) throw e;
      refuse('sourceAddress', p.sourceAddress, `refusing to issue source-address "${p.sourceAddress}": ${e.message}`);
    }
    critical.push(stringOption(CRITICAL_SOURCE_ADDRESS, p.sourceAddress));
  }
  if (p.verifyRequired) critical.push(flagOption(CRITICAL_VERIFY_REQUIRED));

  const extensions: CertOption[] = [];
  for (const field of EXTENSION_FIELDS) {
    if (p[field]) extensions.push(flagOption(EXTENSION_OF[field]));
  }
  for (const name of p.unknownExtensions) {
    if (typeof name !== 'string' || name === '' || name.includes('\0')) {
      refuse('unknownExtensions', String(name), `invalid extension name ${JSON.stringify(name)}`);
    }
    if (FIELD_OF_EXTENSION.has(name)) {
      refuse('unknownExtensions', name, `"${name}" is a known extension; set its field instead`);
    }
    extensions.push(flagOption(name));
  }
  return {
    criticalOptions: canonicalOptions(critical, 'critical option'),
    extensions: canonicalOptions(extensions, 'extension'),
  };
}
