import { isAbsolute, join, posix } from 'node:path';
import { CliError } from '../common/errors.js';
import { readIfExists } from './files.js';

/*
 * Where enrollment puts things. Paths are given as they are on the host (`/etc/ssh`); `root`
 * moves all of them under another directory (tests, image builds), and the moved paths are what
 * gets written into sshd's config, because the sshd that reads it runs in the same world.
 */

export const DROP_IN_NAME = '50-portcullis.conf';
export const STATE_FILE = '/etc/portcullis/host.conf';
export const DEFAULT_SSHD = '/usr/sbin/sshd';

export interface LayoutOptions {
  /** Treat this directory as `/` (default `/`). */
  readonly root?: string;
  /** Where the host keys are (default /etc/ssh). */
  readonly sshDir?: string;
  /** The drop-in directory the main sshd_config Includes (default <sshDir>/sshd_config.d). */
  readonly sshdConfigDir?: string;
  /** The main sshd_config, the one `sshd -t -f` checks (default <sshDir>/sshd_config). */
  readonly sshdConfig?: string;
}

export interface HostLayout {
  readonly root: string;
  /** The same directories as given, before `root` moved them (what host.conf records). */
  readonly logical: { readonly sshDir: string; readonly sshdConfigDir: string; readonly sshdConfig: string };
  readonly sshDir: string;
  readonly sshdConfig: string;
  readonly sshdConfigDir: string;
  readonly dropIn: string;
  /** <sshDir>/portcullis: what sshd reads besides the certificates. */
  readonly dataDir: string;
  /**
   * sshd's TrustedUserCAKeys file. It holds the upstream CA keys (the proxy's certificates), not
   * the user CA's; the name predates that split and stays so enrolled hosts' sshd_config holds.
   */
  readonly userCaFile: string;
  readonly krlFile: string;
  readonly knownHostsFile: string;
  readonly stateFile: string;
  readonly systemdDir: string;
  readonly cronDir: string;
}

function checkPath(p: string, what: string): string {
  if (!isAbsolute(p)) throw new CliError('ERR_USAGE', `${what} must be an absolute path, got ${JSON.stringify(p)}`);
  // sshd_config splits on whitespace and the state file on lines; neither can carry these.
  if (/[\s"'\\#]/.test(p)) throw new CliError('ERR_USAGE', `${what} ${JSON.stringify(p)}: spaces, quotes, backslashes and # are not supported`);
  return posix.normalize(p);
}

export function hostLayout(o: LayoutOptions): HostLayout {
  const root = checkPath(o.root ?? '/', '--root');
  const under = (p: string): string => (root === '/' ? p : join(root, p));
  const sshDir = checkPath(o.sshDir ?? '/etc/ssh', '--ssh-dir');
  const sshdConfigDir = checkPath(o.sshdConfigDir ?? posix.join(sshDir, 'sshd_config.d'), '--sshd-config-dir');
  const sshdConfig = checkPath(o.sshdConfig ?? posix.join(sshDir, 'sshd_config'), '--sshd-config');
  const dataDir = under(posix.join(sshDir, 'portcullis'));
  return {
    root,
    logical: { sshDir, sshdConfigDir, sshdConfig },
    sshDir: under(sshDir),
    sshdConfig: under(sshdConfig),
    sshdConfigDir: under(sshdConfigDir),
    dropIn: join(under(sshdConfigDir), DROP_IN_NAME),
    dataDir,
    userCaFile: join(dataDir, 'user_ca.pub'),
    krlFile: join(dataDir, 'revoked_keys.krl'),
    knownHostsFile: join(dataDir, 'known_hosts'),
    stateFile: under(STATE_FILE),
    systemdDir: under('/etc/systemd/system'),
    cronDir: under('/etc/cron.d'),
  };
}

/**
 * /etc/portcullis/host.conf: how this host was enrolled, for the timers. `KEY=value` lines so
 * that portcullis-host.sh reads the same file with `read` (never `source`): a host enrolled by
 * one tool renews with the other.
 */
export interface HostState {
  readonly authUrl: string;
  /** curl's `sha256//<base64>` public key pin; survives auth re-making its certificate. */
  readonly authPin: string | undefined;
  readonly hostName: string;
  readonly sshDir: string;
  readonly sshdConfigDir: string;
  readonly sshdConfig: string;
  readonly sshd: string;
}

const STATE_KEYS: Readonly<Record<string, keyof HostState>> = {
  AUTH_URL: 'authUrl',
  AUTH_PIN: 'authPin',
  HOST_NAME: 'hostName',
  SSH_DIR: 'sshDir',
  SSHD_CONFIG_DIR: 'sshdConfigDir',
  SSHD_CONFIG: 'sshdConfig',
  SSHD: 'sshd',
};

export const PIN_PATTERN = /^sha256\/\/[A-Za-z0-9+/]{43}=$/;
export const HOSTNAME_PATTERN = /^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$|^[0-9A-Fa-f:.]{2,45}$/;

export function formatHostState(s: HostState): string {
  const lines = [
    '# How this host enrolled with Portcullis. Read by `portcullis host renew|krl-refresh`',
    '# and portcullis-host.sh; written by `host join`. No secrets: the host proves itself',
    '# with its host key.',
  ];
  for (const [k, field] of Object.entries(STATE_KEYS)) lines.push(`${k}=${s[field] ?? ''}`);
  return lines.join('\n') + '\n';
}

export function parseHostState(text: string, where: string): HostState {
  const v: Partial<Record<keyof HostState, string>> = {};
  for (const [i, line] of text.split('\n').entries()) {
    if (line.trim() === '' || line.startsWith('#')) continue;
    const m = /^([A-Z_]+)=(.*)$/.exec(line);
    const field = m === null ? undefined : STATE_KEYS[m[1]!];
    if (m === null || field === undefined) throw new CliError('ERR_CONFIG', `${where}:${i + 1}: expected KEY=value with a known KEY`);
    v[field] = m[2]!;
  }
  const need = (k: keyof HostState): string => {
    const x = v[k];
    if (x === undefined || x === '') throw new CliError('ERR_CONFIG', `${where}: ${Object.keys(STATE_KEYS).find((n) => STATE_KEYS[n] === k)} is missing`);
    return x;
  };
  const authUrl = need('authUrl');
  if (!/^https:\/\/[^\s]+$/.test(authUrl)) throw new CliError('ERR_CONFIG', `${where}: AUTH_URL must be https://…`);
  const authPin = v.authPin === undefined || v.authPin === '' ? undefined : v.authPin;
  if (authPin !== undefined && !PIN_PATTERN.test(authPin)) throw new CliError('ERR_CONFIG', `${where}: AUTH_PIN must be sha256//<base64>`);
  const hostName = need('hostName');
  if (!HOSTNAME_PATTERN.test(hostName)) throw new CliError('ERR_CONFIG', `${where}: HOST_NAME is not a host name`);
  return {
    authUrl,
    authPin,
    hostName,
    sshDir: checkPath(need('sshDir'), 'SSH_DIR'),
    sshdConfigDir: checkPath(need('sshdConfigDir'), 'SSHD_CONFIG_DIR'),
    sshdConfig: checkPath(need('sshdConfig'), 'SSHD_CONFIG'),
    sshd: checkPath(v.sshd || DEFAULT_SSHD, 'SSHD'),
  };
}

/** The enrollment recorded under `root`, or an error saying to join first. */
export function readHostState(root: string | undefined): HostState {
  const path = hostLayout(root === undefined ? {} : { root }).stateFile;
  const bytes = readIfExists(path);
  if (bytes === undefined) throw new CliError('ERR_CONFIG', `${path} does not exist: this host has not joined (run \`portcullis host join\` first)`);
  return parseHostState(bytes.toString('utf8'), path);
}
