// A proxy between stock OpenSSH clients and real sshd targets, for end-to-end tests. Only auth
// is a stand-in (support/authority.ts); every SSH byte goes through real ssh, sshd and the proxy.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { SSHD_PATH, hasTool, run, startSshd, tempDir } from '@portcullis/harness';
import type { RunResult, SshdHandle, TempDir } from '@portcullis/harness';
import { formatPublicKey, publicPart } from '@portcullis/cert-core';
import type { Certificate } from '@portcullis/cert-core';
import { startProxy } from '../../src/index.js';
import type { ProxyAuditEvent, ProxyConfig, RunningProxy, UserAccess } from '../../src/index.js';
import { StandInAuthority, newKey, writeIdentity, writeKeyAndCertificate } from './authority.js';

const missing = [...['ssh', 'scp', 'sftp'].filter((t) => !hasTool(t)), ...(existsSync(SSHD_PATH) ? [] : [SSHD_PATH])];
/** node:test `skip` value: the reason, when a tool these tests drive is missing. */
export const skipWithoutOpenSsh = missing.length > 0 ? `needs ${missing.join(', ')}` : false;

export const SFTP_SERVER = '/usr/lib/openssh/sftp-server';

export function access(user: string, o: Partial<UserAccess> = {}): UserAccess {
  return {
    user,
    roles: ['test'],
    logins: ['root'],
    portForwarding: true,
    agentForwarding: false,
    x11Forwarding: false,
    recordSession: 'best-effort',
    recordInput: false,
    idleTimeout: 0,
    ...o,
  };
}

export interface Identity {
  readonly identity: string;
  readonly certificate: string;
  readonly cert: Certificate;
}

export interface SshOptions {
  /** The SSH user name, e.g. `root%web01`. */
  readonly user: string;
  readonly as: Identity | { readonly identity: string; readonly certificate?: undefined };
  readonly command?: string | readonly string[];
  /** Extra ssh arguments before the destination (`-tt`, `-W host:port`, `-N`, `-L ...`). */
  readonly args?: readonly string[];
  readonly input?: string | Uint8Array;
  readonly timeoutMs?: number;
}

export interface Fixture {
  readonly dir: TempDir;
  readonly authority: StandInAuthority;
  readonly proxy: RunningProxy;
  readonly web01: SshdHandle;
  readonly audit: ProxyAuditEvent[];
  readonly knownHosts: string;
  /** A certificate for `user` with these principals, written for ssh. */
  identity(user: string, o?: Parameters<StandInAuthority['userCertificate']>[1] & { readonly name?: string }): Identity;
  /** The common -o options, -p and the destination's user (for ssh; scp and sftp take -P). */
  sshOptions(identity: SshOptions['as']): string[];
  ssh(o: SshOptions): Promise<RunResult>;
  /** A long-running ssh; the caller kills it. */
  spawnSsh(o: SshOptions): ChildProcess & { output(): { stdout: string; stderr: string } };
  waitForAudit(name: ProxyAuditEvent['name'], match?: (e: ProxyAuditEvent) => boolean, timeoutMs?: number): Promise<ProxyAuditEvent>;
  stop(): Promise<void>;
}

let counter = 0;

export async function startFixture(o: {
  readonly users: readonly UserAccess[];
  readonly proxy?: Partial<Omit<ProxyConfig, 'authority' | 'hostKeys'>>;
  /** Also start targets that must be refused (foreign host CA, plain key, wrong name). */
  readonly badTargets?: boolean;
}): Promise<Fixture> {
  const dir = tempDir('portcullis-proxy-e2e-');
  const sshds: SshdHandle[] = [];
  try {
    return await build(o, dir, sshds);
  } catch (e) {
    await Promise.all(sshds.map((s) => s.stop()));
    dir.remove();
    throw e;
  }
}

async function build(
  o: Parameters<typeof startFixture>[0],
  dir: TempDir,
  sshds: SshdHandle[],
): Promise<Fixture> {
  const authority = new StandInAuthority(o.users);
  const target = async (name: string, hostKey: 'ca' | 'foreign' | 'plain'): Promise<SshdHandle> => {
    const d = dir.file(name);
    mkdirSync(d);
    let keySpec;
    if (hostKey !== 'plain') {
      const key = newKey();
      const cert = authority.hostCertificate(key, [name], hostKey === 'foreign' ? newKey() : authority.hostCA);
      keySpec = writeKeyAndCertificate(`${d}/host_key`, key, cert);
    }
    const sshd = await startSshd({
      dir: d,
      trustedUserCAKeys: formatPublicKey(publicPart(authority.upstreamCA)),
      revokedKeys: authority.krlBytes(),
      ...(keySpec === undefined ? {} : { hostKey: keySpec }),
      extraConfig: [`Subsystem sftp ${SFTP_SERVER}`, 'AcceptEnv LANG LC_* SSH_ORIGINAL_COMMAND', 'AllowTcpForwarding yes', 'PermitTTY yes'],
    });
    sshds.push(sshd);
    return sshd;
  };
  const web01 = await target('web01.example.test', 'ca');
  authority.hosts.push({ name: 'web01.example.test', address: '127.0.0.1', port: web01.port, labels: { env: 'test' } });
  // Two hosts whose short name is the same, so `db` is ambiguous (never dialled).
  authority.hosts.push({ name: 'db.eu.example.test', address: '127.0.0.1', port: 1, labels: {} });
  authority.hosts.push({ name: 'db.us.example.test', address: '127.0.0.1', port: 1, labels: {} });
  if (o.badTargets === true) {
    const rogue = await target('rogue.example.test', 'foreign');
    authority.hosts.push({ name: 'rogue.example.test', address: '127.0.0.1', port: rogue.port, labels: {} });
    const plain = await target('plain.example.test', 'plain');
    authority.hosts.push({ name: 'plain.example.test', address: '127.0.0.1', port: plain.port, labels: {} });
    // web01's sshd registered under another name: its certificate does not name it.
    authority.hosts.push({ name: 'impostor.example.test', address: '127.0.0.1', port: web01.port, labels: {} });
  }

  const proxyKey = newKey();
  const proxyCert = authority.hostCertificate(proxyKey, ['127.0.0.1', 'localhost']);
  const audit: ProxyAuditEvent[] = [];
  const proxy = await startProxy({
    authority,
    hostKeys: [{ privateKey: proxyKey, certificate: proxyCert }],
    listen: { host: '127.0.0.1', port: 0 },
    audit: (e) => audit.push(e),
    log: () => {},
    ...o.proxy,
  });
  const knownHosts = dir.file('known_hosts');
  writeFileSync(knownHosts, `@cert-authority [127.0.0.1]:${proxy.port} ${formatPublicKey(publicPart(authority.hostCA))}\n`);

  const sshOptions = (as: SshOptions['as']): string[] => {
    const opt = (s: string): string[] => ['-o', s];
    return [
      '-F', '/dev/null',
      ...opt('IdentitiesOnly=yes'),
      ...opt('IdentityAgent=none'),
      ...opt(`IdentityFile=${as.identity}`),
      ...(as.certificate === undefined ? [] : opt(`CertificateFile=${as.certificate}`)),
      ...opt('BatchMode=yes'),
      ...opt('StrictHostKeyChecking=yes'),
      ...opt(`UserKnownHostsFile=${knownHosts}`),
      ...opt('GlobalKnownHostsFile=/dev/null'),
      ...opt('UpdateHostKeys=no'),
      ...opt('ConnectTimeout=10'),
      ...opt('LogLevel=ERROR'),
    ];
  };
  const sshArgs = (o: SshOptions): string[] => [
    ...sshOptions(o.as),
    ...(o.args ?? []),
    '-p', String(proxy.port),
    `${o.user}@127.0.0.1`,
    ...(o.command === undefined ? [] : ['--', ...(typeof o.command === 'string' ? [o.command] : o.command)]),
  ];
  const env = (): NodeJS.ProcessEnv => {
    const e: NodeJS.ProcessEnv = { ...process.env, LANG: 'C.UTF-8', TERM: 'xterm-256color' };
    delete e['SSH_AUTH_SOCK'];
    return e;
  };

  return {
    dir,
    authority,
    proxy,
    web01,
    audit,
    knownHosts,
    identity(user, io = { principals: ['root'] }) {
      const cert = authority.userCertificate(user, io);
      const written = writeIdentity(dir.file(`${io.name ?? user}-${++counter}`), cert);
      return { ...written, cert };
    },
    sshOptions,
    ssh: (s) => run('ssh', sshArgs(s), { env: env(), timeoutMs: s.timeoutMs ?? 20_000, ...(s.input === undefined ? {} : { input: s.input }) }),
    spawnSsh(s) {
      const child = spawn('ssh', sshArgs(s), { env: env(), stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
      child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
      child.stdin.on('error', () => {});
      return Object.assign(child, { output: () => ({ stdout, stderr }) });
    },
    async waitForAudit(name, match = () => true, timeoutMs = 5_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const e = audit.find((a) => a.name === name && match(a));
        if (e) return e;
        if (Date.now() > deadline) throw new Error(`no ${name} audit event; got:\n${audit.map((a) => `${a.name} ${JSON.stringify(a.fields)}`).join('\n')}`);
        await sleep(20);
      }
    },
    async stop() {
      await proxy.stop({ graceMs: 0 });
      await Promise.all(sshds.map((s) => s.stop()));
      dir.remove();
    },
  };
}

/** Resolves when the process exits, with its code. */
export function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) resolve(child.exitCode);
    else child.once('exit', (code) => resolve(code));
  });
}
