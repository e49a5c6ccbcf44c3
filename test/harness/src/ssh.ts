import { run } from './process.js';
import type { RunResult } from './process.js';

export interface SshRunOptions {
  readonly port: number;
  readonly user: string;
  /** Private key file (the client insists on mode 0600). */
  readonly identity: string;
  /** Certificate file to offer with the identity. */
  readonly certificate?: string;
  /**
   * A known_hosts file: the host is then verified strictly (StrictHostKeyChecking=yes).
   * Without one, the host key is not checked at all.
   */
  readonly knownHosts?: string;
  /** The remote command (ssh joins an array with spaces, as it does with its own argv). */
  readonly command: string | readonly string[];
  /** BatchMode (default true): never prompt, fail instead. */
  readonly batch?: boolean;
  /** More `-o` options, e.g. `HostKeyAlgorithms=...`; they come first, so they win. */
  readonly options?: readonly string[];
  readonly timeoutMs?: number;
}

/**
 * Runs the stock OpenSSH client against 127.0.0.1 with nothing from the environment: no
 * config file, no agent, no default identities, no user or global known_hosts.
 */
export function sshRun(o: SshRunOptions): Promise<RunResult> {
  const opt = (s: string): string[] => ['-o', s];
  const args = [
    '-F', '/dev/null',
    ...(o.options ?? []).flatMap(opt),
    ...opt('IdentitiesOnly=yes'),
    ...opt('IdentityAgent=none'),
    ...opt(`IdentityFile=${o.identity}`),
    ...(o.certificate === undefined ? [] : opt(`CertificateFile=${o.certificate}`)),
    ...opt(`BatchMode=${o.batch === false ? 'no' : 'yes'}`),
    ...opt(`StrictHostKeyChecking=${o.knownHosts === undefined ? 'no' : 'yes'}`),
    ...opt(`UserKnownHostsFile=${o.knownHosts ?? '/dev/null'}`),
    ...opt('GlobalKnownHostsFile=/dev/null'),
    // Keeps the known_hosts file as the test wrote it.
    ...opt('UpdateHostKeys=no'),
    ...opt('ConnectTimeout=10'),
    '-p', String(o.port),
    `${o.user}@127.0.0.1`,
    '--',
    ...(typeof o.command === 'string' ? [o.command] : o.command),
  ];
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env['SSH_AUTH_SOCK'];
  return run('ssh', args, { env, timeoutMs: o.timeoutMs ?? 20_000 });
}
