// How the end-to-end systems run the OpenSSH client: no user config, no agent, only the
// identity given, and the system's known_hosts as the only trust.
import { spawn } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { run } from '@portcullis/harness';
import type { RunResult } from '@portcullis/harness';
import type { SshOptions } from './portcullis.js';

export interface SshClient {
  readonly knownHosts: string;
  /** ssh's ConnectTimeout, in seconds. */
  readonly connectTimeoutSec: number;
}

export function sshOptionArgs(c: SshClient, as: SshOptions['as']): string[] {
  return [
    'IdentitiesOnly=yes',
    'IdentityAgent=none',
    `IdentityFile=${as.identity}`,
    ...(as.certificate === undefined ? [] : [`CertificateFile=${as.certificate}`]),
    'BatchMode=yes',
    'StrictHostKeyChecking=yes',
    `UserKnownHostsFile=${c.knownHosts}`,
    'GlobalKnownHostsFile=/dev/null',
    'UpdateHostKeys=no',
    `ConnectTimeout=${c.connectTimeoutSec}`,
    'LogLevel=ERROR',
  ].flatMap((opt) => ['-o', opt]);
}

// The caller's args first: ssh keeps the first value of an option.
export function sshArgs(c: SshClient, port: number, s: Omit<SshOptions, 'port'>): string[] {
  return [
    '-F', '/dev/null',
    ...(s.args ?? []),
    ...sshOptionArgs(c, s.as),
    '-p', String(port),
    `${s.user}@127.0.0.1`,
    ...(s.command === undefined ? [] : ['--', s.command]),
  ];
}

function sshEnv(): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = { ...process.env, LANG: 'C.UTF-8', TERM: 'xterm-256color' };
  delete e['SSH_AUTH_SOCK'];
  return e;
}

export function runSsh(c: SshClient, port: number, s: Omit<SshOptions, 'port'>, defaultTimeoutMs: number): Promise<RunResult> {
  return run('ssh', sshArgs(c, port, s), { env: sshEnv(), timeoutMs: s.timeoutMs ?? defaultTimeoutMs, ...(s.input === undefined ? {} : { input: s.input }) });
}

export function spawnSsh(c: SshClient, port: number, s: Omit<SshOptions, 'port'>): ChildProcessWithoutNullStreams & { output(): { stdout: string; stderr: string } } {
  const child = spawn('ssh', sshArgs(c, port, s), { env: sshEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdin.on('error', () => {});
  return Object.assign(child, { output: () => ({ stdout, stderr }) });
}
