import { hostname as osHostname } from 'node:os';
import { nodeCrypto } from '@portcullis/cert-core/node';
import { CliError } from '../common/errors.js';
import { activate } from './activate.js';
import { checkEnrollmentAnswer, type CheckedEnrollment, type EnrollmentAnswer } from './answer.js';
import { call, connectAuth, fetchKrl, okBody } from './auth-api.js';
import type { FileChanges } from './files.js';
import { readHostKeys, type HostKeyFile } from './host-keys.js';
import { DEFAULT_SSHD, formatHostState, hostLayout, HOSTNAME_PATTERN, type HostLayout, type LayoutOptions } from './layout.js';
import { checkExtraLine, preflightDropIn, renderDropIn, sshdTest, type DropIn, type ReloadResult } from './sshd.js';
import { enableTimers, writeTimers, type TimerMode } from './timers.js';

export interface HostJoinOptions extends LayoutOptions {
  /** The join token an admin made (`pcctl tokens add host`). */
  readonly token: string;
  /** https://host:port of auth. */
  readonly auth: string;
  /** auth's certificate fingerprint (`AB:CD:…`) or key pin (`sha256//…`). */
  readonly fingerprint?: string;
  /** Trust whatever certificate auth presents now (printed, and pinned from then on). */
  readonly insecureFirstContact?: boolean;
  /** The host's name (default: the machine's hostname). */
  readonly name?: string;
  /** More names and addresses clients use for it. */
  readonly names?: readonly string[];
  /** AuthorizedKeysFile none: keys in authorized_keys stop working. */
  readonly exclusive?: boolean;
  /** Extra drop-in lines (`Keyword value`). */
  readonly sshdOptions?: readonly string[];
  /** The sshd binary (default /usr/sbin/sshd). */
  readonly sshd?: string;
  readonly timers?: TimerMode;
  /** Check everything, change nothing, do not spend the token. */
  readonly dryRun?: boolean;
  /**
   * The command line that runs this tool's `renew` and `krl-refresh` (e.g. `["/usr/local/bin/portcullis", "host"]`):
   * what the timers will run.
   */
  readonly selfCommand: readonly string[];
  readonly out?: (line: string) => void;
  /** Milliseconds since the epoch (default Date.now). */
  readonly clock?: () => number;
}

export interface HostJoinResult {
  readonly hostName: string;
  readonly dryRun: boolean;
  readonly certificates: readonly { readonly path: string; readonly serial: string; readonly validBefore: number }[];
  readonly changed: readonly string[];
  readonly reload: ReloadResult | undefined;
  readonly timers: TimerMode;
}

const TOKEN_PATTERN = /^[A-Za-z0-9_-]{16,128}$/;

function requireRoot(layout: HostLayout, dryRun: boolean): void {
  if (layout.root !== '/' || dryRun) return;
  if (typeof process.geteuid === 'function' && process.geteuid() !== 0) {
    throw new CliError('ERR_USAGE', 'host join writes under /etc/ssh and reloads sshd: run it as root');
  }
}

function checkName(n: string, what: string): string {
  if (!HOSTNAME_PATTERN.test(n)) throw new CliError('ERR_USAGE', `${what} ${JSON.stringify(n)} is not a host name or address`);
  return n.toLowerCase();
}

export function dropInFor(layout: HostLayout, keys: readonly HostKeyFile[], exclusive: boolean, extraLines: readonly string[]): DropIn {
  return { userCaFile: layout.userCaFile, krlFile: layout.krlFile, hostCertificates: keys.map((k) => k.certificatePath), exclusive, extraLines };
}

/** Writes certificates, the CA files and the KRL: what join and renew both produce. */
export function writeEnrollmentFiles(changes: FileChanges, layout: HostLayout, e: CheckedEnrollment, krl?: Uint8Array): void {
  changes.write(layout.userCaFile, e.userCa, 0o644);
  changes.write(layout.knownHostsFile, e.knownHosts, 0o644);
  if (krl !== undefined) changes.write(layout.krlFile, krl, 0o644);
  for (const c of e.certificates) changes.write(c.hostKey.certificatePath, `${c.text}\n`, 0o644);
}

/**
 * Enrolls this machine as a target host: its host keys certified by auth, sshd trusting the
 * user CA and the KRL through a drop-in that passed `sshd -t`, sshd reloaded, renewal and KRL
 * refresh scheduled. Running it again (with a token made for this host name) rewrites the same
 * files; an unchanged file is left alone.
 */
export async function runHostJoin(o: HostJoinOptions): Promise<HostJoinResult> {
  const out = o.out ?? ((l: string) => process.stdout.write(`${l}\n`));
  const clock = o.clock ?? Date.now;
  const layout = hostLayout(o);
  const dryRun = o.dryRun === true;
  requireRoot(layout, dryRun);
  if (!TOKEN_PATTERN.test(o.token)) throw new CliError('ERR_USAGE', '--token expected the token an admin made (16-128 characters of A-Z a-z 0-9 _ -)');
  if (o.fingerprint !== undefined && o.insecureFirstContact === true) throw new CliError('ERR_USAGE', '--fingerprint and --insecure-first-contact exclude each other');
  const hostName = checkName(o.name ?? osHostname(), o.name === undefined ? 'this machine\'s hostname' : '--name');
  const names = (o.names ?? []).map((n) => checkName(n, '--names entry'));
  const sshd = o.sshd ?? DEFAULT_SSHD;
  const extraLines = (o.sshdOptions ?? []).map(checkExtraLine);
  const keys = readHostKeys(layout.sshDir);
  const spec = dropInFor(layout, keys, o.exclusive === true, extraLines);
  const dropInText = renderDropIn(spec);

  // Everything that can fail without auth fails before the token is spent.
  const before = await sshdTest(sshd, layout.sshdConfig);
  if (before !== undefined) throw new CliError('ERR_CONFIG', `sshd -t -f ${layout.sshdConfig} already fails before any change: ${before}; fix that first`);
  const preflight = await preflightDropIn(layout, sshd, dropInText);
  if (preflight !== undefined) throw new CliError('ERR_CONFIG', `sshd -t refused the drop-in: ${preflight}; nothing was changed and the token was not used`);
  const conn = await connectAuth({ url: o.auth, ...(o.fingerprint === undefined ? {} : { fingerprint: o.fingerprint }), ...(o.insecureFirstContact === true ? { insecureFirstContact: true } : {}), log: out });
  const krl = await fetchKrl(conn);
  if (krl === 'unchanged') throw new CliError('ERR_REFUSED', 'auth answered 304 to a KRL request without If-None-Match');

  if (dryRun) {
    out(`dry run: would enroll ${hostName} with ${keys.map((k) => k.publicKeyPath).join(', ')}`);
    out(`dry run: would write ${layout.dropIn} (sshd -t passed):`);
    for (const l of dropInText.trimEnd().split('\n')) out(`  ${l}`);
    out(`dry run: auth at ${conn.url} reachable${conn.pin === undefined ? '' : ` (key pin ${conn.pin})`}; the token was not used`);
    return { hostName, dryRun, certificates: [], changed: [], reload: undefined, timers: o.timers ?? 'auto' };
  }

  const res = await call<EnrollmentAnswer>(conn, 'POST', '/v1/join', {
    json: { token: o.token, hostname: hostName, ...(names.length === 0 ? {} : { names }), host_keys: keys.map((k) => k.line) },
  });
  const joined = checkEnrollmentAnswer(okBody(res, 'auth refused the join'), keys, hostName, clock() / 1000, nodeCrypto);
  let timerMode: Exclude<TimerMode, 'auto'> = 'none';
  let timerNotes: string[] = [];
  let activated;
  try {
    activated = await activate({
      layout,
      sshd,
      dropIn: { text: dropInText, spec },
      write: (changes) => {
        writeEnrollmentFiles(changes, layout, joined, krl);
        const state = { authUrl: conn.url, authPin: conn.pin, hostName: joined.hostName, ...layout.logical, sshd };
        changes.write(layout.stateFile, formatHostState(state), 0o644);
        ({ mode: timerMode, notes: timerNotes } = writeTimers(layout, changes, o.timers ?? 'auto', o.selfCommand, joined.hostName));
      },
    });
  } catch (e) {
    if (!(e instanceof CliError)) throw e;
    throw new CliError(e.code, `${e.message}. ${joined.hostName} is enrolled at auth, but this machine is unchanged: after fixing this, join again with a token made for this host name`);
  }
  const validBefore = Math.min(...joined.certificates.map((c) => Number(c.cert.validBefore)));
  const labels = Object.entries(joined.labels).map(([k, v]) => `${k}=${v}`).join(',');
  out(`enrolled ${joined.hostName}${labels === '' ? '' : ` (${labels})`}: ${joined.certificates.length} host certificate(s) valid until ${new Date(validBefore * 1000).toISOString()}`);
  out(`sshd: ${layout.dropIn} passed sshd -t; ${activated.reload?.detail ?? 'nothing new for sshd'}`);
  for (const n of [...timerNotes, ...(await enableTimers(layout, timerMode))]) out(n);
  out(`clients trust this host with the known_hosts line in ${layout.knownHostsFile}`);
  return {
    hostName: joined.hostName,
    dryRun,
    certificates: joined.certificates.map((c) => ({ path: c.hostKey.certificatePath, serial: c.cert.serial.toString(), validBefore: Number(c.cert.validBefore) })),
    changed: activated.changed,
    reload: activated.reload,
    timers: timerMode,
  };
}
