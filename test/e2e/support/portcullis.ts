// The whole system on loopback for end-to-end tests: redis-server, the real auth service (CA,
// users, roles, inventory, locks, KRL, HTTP API over pinned TLS), OpenSSH sshd targets enrolled
// through POST /v1/join, and the proxy enrolled the same way and talking to auth only through
// its HTTP client. Users log in with a password and mint certificates as pcsh would; admins act
// through the admin API as pcctl would. Nothing is a stand-in.
import type { ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { AuthClient, AuthService, parseAuthConfig } from '@portcullis/auth';
import type { ApiResponse, RequestOptions } from '@portcullis/auth';
import { HttpAuthority, enrollProxy, startProxy } from '@portcullis/proxy';
import type { ProxyAuditEvent, ProxyConfig, ProxyEnrollment, RunningProxy } from '@portcullis/proxy';
import { joinHostKey, runOk, startRedis, startSshd, tempDir } from '@portcullis/harness';
import type { HostJoinAnswer, HostKeySpec, RedisHandle, RunResult, SshdHandle, TempDir } from '@portcullis/harness';
import { runSsh, spawnSsh, sshOptionArgs } from './ssh-client.js';

export const SFTP_SERVER = '/usr/lib/openssh/sftp-server';
export const PASSWORD = 'correct horse battery staple';

/** Roles as an operator would write them: `dev` may forward, `restricted` may not. */
export const ROLES = [
  {
    kind: 'role',
    name: 'dev',
    spec: {
      allow: { logins: ['root'], host_labels: { '*': '*' } },
      options: { max_cert_ttl: '10m', port_forwarding: true, agent_forwarding: true, x11_forwarding: true },
    },
  },
  { kind: 'role', name: 'restricted', spec: { allow: { logins: ['root'], host_labels: { env: 'test' } }, options: { max_cert_ttl: '10m' } } },
];

export interface Identity {
  readonly identity: string;
  readonly certificate: string;
  readonly serial: string;
}

export interface UserHandle {
  readonly name: string;
  readonly token: string;
  /** A fresh key pair and a certificate from POST /v1/certs/user, written for ssh. */
  mint(o?: { readonly ttl?: number; readonly tag?: string }): Promise<Identity>;
}

export interface SshOptions {
  readonly user: string;
  readonly as: { readonly identity: string; readonly certificate?: string };
  readonly command?: string;
  /** Extra ssh arguments before the destination; -o options here win over the defaults. */
  readonly args?: readonly string[];
  readonly input?: string | Uint8Array;
  readonly timeoutMs?: number;
  /** Another listener than the system's proxy (a worker pool). */
  readonly port?: number;
}

export interface System {
  readonly dir: TempDir;
  readonly auth: AuthService;
  /** Added to the real time auth sees (to mint a certificate that is already expired). */
  readonly authClock: { offset: number };
  readonly authority: HttpAuthority;
  /** The proxy's enrollment (another process may run the same proxy with it). */
  readonly enrollment: ProxyEnrollment;
  /** Where each enrolled target's sshd listens (HttpAuthorityOptions.dialAddress). */
  readonly ports: ReadonlyMap<string, number>;
  readonly proxy: RunningProxy;
  readonly audit: ProxyAuditEvent[];
  /** sshd per enrolled target, by inventory name. */
  readonly targets: ReadonlyMap<string, SshdHandle>;
  /** `@cert-authority *` lines for auth's host CA, as pcsh login writes them. */
  readonly knownHosts: string;
  readonly adminToken: string;
  api<T = Record<string, unknown>>(method: string, path: string, o?: RequestOptions): Promise<ApiResponse<T>>;
  /** An admin API call that must succeed. */
  admin<T = Record<string, unknown>>(method: string, path: string, json?: unknown): Promise<T>;
  user(name: string, roles: readonly string[]): Promise<UserHandle>;
  sshOptions(as: SshOptions['as']): string[];
  ssh(o: SshOptions): Promise<RunResult>;
  spawnSsh(o: SshOptions): ChildProcess & { output(): { stdout: string; stderr: string } };
  waitForAudit(name: ProxyAuditEvent['name'], match?: (e: ProxyAuditEvent) => boolean, timeoutMs?: number): Promise<ProxyAuditEvent>;
  stop(): Promise<void>;
}

export interface SystemOptions {
  /** More targets than web01 (foreign host CA, plain key) for the refusal tests. */
  readonly badTargets?: boolean;
  readonly proxy?: Partial<Omit<ProxyConfig, 'authority' | 'hostKeys'>>;
}

function ok<T>(r: ApiResponse<T>, what: string): T {
  if (r.status !== 200) throw new Error(`${what}: ${r.status} ${r.bytes.toString('utf8').slice(0, 300)}`);
  return r.body;
}

export async function startSystem(o: SystemOptions = {}): Promise<System> {
  const dir = tempDir('portcullis-e2e-');
  const stops: (() => Promise<void> | void)[] = [() => dir.remove()];
  const stopAll = async (): Promise<void> => {
    for (const s of stops.reverse()) await Promise.resolve(s()).catch(() => {});
  };
  try {
    return await build(o, dir, stops, stopAll);
  } catch (e) {
    await stopAll();
    throw e;
  }
}

async function build(o: SystemOptions, dir: TempDir, stops: (() => Promise<void> | void)[], stopAll: () => Promise<void>): Promise<System> {
  const redis: RedisHandle = await startRedis({ dir: dir.path });
  stops.push(() => redis.stop());
  const authClock = { offset: 0 };
  const config = parseAuthConfig(
    { state_dir: dir.file('auth'), listen: '127.0.0.1:0', redis: { url: redis.url }, audit: { sink: 'none' }, roles: ROLES },
    { env: {} },
  );
  const auth = new AuthService({ config, clock: () => Date.now() + authClock.offset, log: () => {}, scrypt: { log2N: 10, r: 8, p: 1 }, defaultMetrics: false });
  const info = await auth.start();
  stops.push(() => auth.stop());
  const client = new AuthClient({ url: info.url, fingerprint: info.fingerprint });
  const api = <T>(method: string, path: string, opts?: RequestOptions): Promise<ApiResponse<T>> => client.request<T>(method, path, opts);

  // The first admin, as the bootstrap invite asks.
  const invite = info.bootstrapInvite;
  if (invite === undefined) throw new Error('auth made no bootstrap invite');
  ok(await api('POST', '/v1/invites/accept', { json: { token: invite.token, password: PASSWORD } }), 'accept the admin invite');
  const adminToken = ok(await api<{ token: string }>('POST', '/v1/login/password', { json: { username: 'admin', password: PASSWORD } }), 'admin login').token;
  const admin = async <T>(method: string, path: string, json?: unknown): Promise<T> =>
    ok(await api<T>(method, path, { token: adminToken, ...(json === undefined ? {} : { json }) }), `${method} ${path}`);

  // Targets: each enrolls with a host join token, as `pcctl tokens add` + the host's join script.
  const ports = new Map<string, number>();
  const targets = new Map<string, SshdHandle>();
  const krl = await api('GET', '/v1/krl');
  const enroll = async (name: string, present: 'auth' | 'foreign' | 'plain'): Promise<void> => {
    const d = dir.file(name);
    const { token } = await admin<{ token: string }>('POST', '/v1/admin/tokens', { type: 'host', hostname: name, labels: { env: 'test' } });
    const joined = await joinHostKey(d, async (publicKey) =>
      ok(await api<HostJoinAnswer>('POST', '/v1/join', { json: { token, hostname: name, host_keys: [publicKey] } }), `join ${name}`),
    );
    let hostKey: HostKeySpec = joined.hostKey;
    if (present !== 'auth') {
      // The machine at that address is not the enrolled one: another key, and for `foreign`
      // a certificate naming the host from a CA auth never heard of (a man in the middle).
      await runOk('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', `${d}/other_key`]);
      hostKey = { privateKeyPath: `${d}/other_key` };
      if (present === 'foreign') {
        await runOk('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', `${d}/foreign_ca`]);
        await runOk('ssh-keygen', ['-q', '-s', `${d}/foreign_ca`, '-h', '-I', `host=${name}`, '-n', name, `${d}/other_key.pub`]);
        hostKey = { privateKeyPath: `${d}/other_key`, certificatePath: `${d}/other_key-cert.pub` };
      }
    }
    const sshd = await startSshd({
      dir: d,
      trustedUserCAKeys: joined.userCA,
      revokedKeys: krl.bytes,
      hostKey,
      authorizedPrincipalsFile: { contents: 'root\n' },
      extraConfig: [`Subsystem sftp ${SFTP_SERVER}`, 'AllowTcpForwarding yes', 'AllowAgentForwarding yes', 'PermitTTY yes'],
    });
    stops.push(() => sshd.stop());
    ports.set(name, sshd.port);
    targets.set(name, sshd);
  };
  await enroll('web01.example.test', 'auth');
  if (o.badTargets === true) {
    await enroll('rogue.example.test', 'foreign');
    await enroll('plain.example.test', 'plain');
  }

  // The proxy enrolls with a proxy join token and keeps the service credential.
  const proxyToken = (await admin<{ token: string }>('POST', '/v1/admin/tokens', { type: 'proxy' })).token;
  const enrolled = await enrollProxy({ url: info.url, fingerprint: info.fingerprint, token: proxyToken, hostname: 'bastion.example.test', names: ['127.0.0.1', 'localhost'] });
  const authority = new HttpAuthority({
    url: info.url,
    fingerprint: info.fingerprint,
    credential: enrolled.credential,
    // sshd listens on free ports; auth's inventory records names only.
    dialAddress: (h) => ({ address: '127.0.0.1', port: ports.get(h.name) ?? 1 }),
  });
  stops.push(() => authority.close());
  const audit: ProxyAuditEvent[] = [];
  const proxy = await startProxy({
    authority,
    hostKeys: enrolled.hostKeys,
    listen: { host: '127.0.0.1', port: 0 },
    audit: (e) => audit.push(e),
    log: () => {},
    name: 'bastion.example.test',
    ...o.proxy,
  });
  stops.push(() => proxy.stop({ graceMs: 0 }));
  const knownHosts = dir.file('known_hosts');
  writeFileSync(knownHosts, enrolled.knownHosts);

  const sshClient = { knownHosts, connectTimeoutSec: 10 };
  let counter = 0;

  return {
    dir,
    auth,
    authClock,
    authority,
    enrollment: enrolled,
    ports,
    proxy,
    audit,
    targets,
    knownHosts,
    adminToken,
    api,
    admin,
    async user(name, roles) {
      const created = await admin<{ invite: { token: string } }>('POST', '/v1/admin/users', { name, roles });
      ok(await api('POST', '/v1/invites/accept', { json: { token: created.invite.token, password: PASSWORD } }), `accept ${name}'s invite`);
      const token = ok(await api<{ token: string }>('POST', '/v1/login/password', { json: { username: name, password: PASSWORD } }), `${name} login`).token;
      return {
        name,
        token,
        async mint(m = {}) {
          const path = dir.file(`${name}-${m.tag ?? ''}${++counter}`);
          await runOk('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', path]);
          const cert = ok(
            await api<{ certificate: string; serial: string }>('POST', '/v1/certs/user', {
              token,
              json: { public_key: readFileSync(`${path}.pub`, 'utf8').trim(), ...(m.ttl === undefined ? {} : { ttl: m.ttl }) },
            }),
            `${name} mints a certificate`,
          );
          writeFileSync(`${path}-cert.pub`, `${cert.certificate}\n`);
          return { identity: path, certificate: `${path}-cert.pub`, serial: cert.serial };
        },
      };
    },
    sshOptions: (as) => sshOptionArgs(sshClient, as),
    ssh: (s) => runSsh(sshClient, s.port ?? proxy.port, s, 20_000),
    spawnSsh: (s) => spawnSsh(sshClient, s.port ?? proxy.port, s),
    async waitForAudit(name, match = () => true, timeoutMs = 5_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const e = audit.find((a) => a.name === name && match(a));
        if (e) return e;
        if (Date.now() > deadline) throw new Error(`no ${name} audit event; got:\n${audit.map((a) => `${a.name} ${JSON.stringify(a.fields)}`).join('\n')}`);
        await sleep(20);
      }
    },
    stop: stopAll,
  };
}

/** Resolves when the process exits, with its code. */
export function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) resolve(child.exitCode);
    else child.once('exit', (code) => resolve(code));
  });
}
