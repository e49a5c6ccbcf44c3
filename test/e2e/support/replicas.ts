// A scaled-out install on loopback: one redis-server, two auth replicas and two bastions
// (proxy + web gateway, each in a process of its own, support/bastion.ts), each bastion talking
// to a different replica, and an OpenSSH target enrolled through /v1/join.
//
// What the replicas share is what an operator shares between them (deploy/README.md's
// Kubernetes layout): Redis; the CA keys, copied from the first replica's state directory into
// the second's (a Secret copied into each pod's private state); and the TLS certificate and key,
// given to both as tls.cert_file/key_file, so every client pins one fingerprint. Each replica
// is an AuthService with its own state directory, Redis connection and HTTPS listener; they
// run in the test's process so the first admin's invite is at hand. The bastions share one
// enrollment (one credential, one host key and certificate), as the proxy replicas do.
import { fork } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { AuthClient, AuthService, parseAuthConfig } from '@portcullis/auth';
import type { ApiResponse, RequestOptions } from '@portcullis/auth';
import { formatCertificate, formatPrivateKey } from '@portcullis/cert-core';
import { nodeCrypto } from '@portcullis/cert-core/node';
import { enrollProxy } from '@portcullis/proxy';
import type { ProxyAuditEvent } from '@portcullis/proxy';
import { freePort, joinHostKey, runOk, startRedis, startSshd, stopChild, tempDir } from '@portcullis/harness';
import type { HostJoinAnswer, RedisHandle, RunResult, SshdHandle, TempDir } from '@portcullis/harness';
import type { BastionConfig, BastionMessage } from './bastion.js';
import { ROLES } from './portcullis.js';
import type { Identity, SshOptions } from './portcullis.js';
import { runSsh, spawnSsh } from './ssh-client.js';

export const PASSWORD = 'correct horse battery staple';
export const TARGET = 'web01.example.test';
const BASTION = fileURLToPath(new URL('./bastion.ts', import.meta.url));

export interface Replica {
  readonly service: AuthService;
  readonly url: string;
  readonly fingerprint: string;
  readonly client: AuthClient;
  api<T = Record<string, unknown>>(method: string, path: string, o?: RequestOptions): Promise<ApiResponse<T>>;
  /** An admin API call through this replica that must succeed. */
  admin<T = Record<string, unknown>>(method: string, path: string, json?: unknown): Promise<T>;
}

export interface Bastion {
  readonly pid: number;
  readonly sshPort: number;
  readonly webUrl: string;
  readonly webFingerprint: string;
  readonly audit: ProxyAuditEvent[];
  waitForAudit(name: ProxyAuditEvent['name'], match?: (e: ProxyAuditEvent) => boolean, timeoutMs?: number): Promise<ProxyAuditEvent>;
  /** SIGTERM, then SIGKILL after 15 s. */
  stop(): Promise<void>;
}

export interface ReplicaUser {
  readonly name: string;
  /** The login session's bearer token (valid on every replica: it lives in Redis). */
  readonly token: string;
  /** A fresh key pair and a certificate minted through `via`, written for ssh. */
  mint(via: Replica, o?: { readonly tag?: string }): Promise<Identity>;
}

export interface Cluster {
  readonly dir: TempDir;
  readonly redis: RedisHandle;
  readonly replicas: readonly [Replica, Replica];
  readonly bastions: readonly [Bastion, Bastion];
  readonly target: SshdHandle;
  readonly knownHosts: string;
  user(name: string, roles: readonly string[], via: Replica): Promise<ReplicaUser>;
  ssh(through: Bastion, o: Omit<SshOptions, 'port'>): Promise<RunResult>;
  spawnSsh(through: Bastion, o: Omit<SshOptions, 'port'>): ChildProcessWithoutNullStreams & { output(): { stdout: string; stderr: string } };
  stop(): Promise<void>;
}

function ok<T>(r: ApiResponse<T>, what: string): T {
  if (r.status !== 200) throw new Error(`${what}: ${r.status} ${r.bytes.toString('utf8').slice(0, 300)}`);
  return r.body;
}

export async function startCluster(): Promise<Cluster> {
  const dir = tempDir('portcullis-replicas-');
  const stops: (() => Promise<void> | void)[] = [() => dir.remove()];
  const stopAll = async (): Promise<void> => {
    for (const s of stops.reverse()) await Promise.resolve(s()).catch(() => {});
  };
  try {
    return await build(dir, stops, stopAll);
  } catch (e) {
    await stopAll();
    throw e;
  }
}

async function startReplica(stateDir: string, redisUrl: string, tls: Record<string, string>): Promise<{ service: AuthService; replica: Replica }> {
  const config = parseAuthConfig({ state_dir: stateDir, listen: '127.0.0.1:0', redis: { url: redisUrl }, audit: { sink: 'none' }, roles: ROLES, tls }, { env: {} });
  const service = new AuthService({ config, log: () => {}, scrypt: { log2N: 10, r: 8, p: 1 }, defaultMetrics: false });
  const info = await service.start();
  const client = new AuthClient({ url: info.url, fingerprint: info.fingerprint });
  const api = <T>(method: string, path: string, o?: RequestOptions): Promise<ApiResponse<T>> => client.request<T>(method, path, o);
  let adminToken: string | undefined;
  return {
    service,
    replica: {
      service,
      url: info.url,
      fingerprint: info.fingerprint,
      client,
      api,
      async admin<T>(method: string, path: string, json?: unknown): Promise<T> {
        adminToken ??= ok(await api<{ token: string }>('POST', '/v1/login/password', { json: { username: 'admin', password: PASSWORD } }), 'admin login').token;
        return ok(await api<T>(method, path, { token: adminToken, ...(json === undefined ? {} : { json }) }), `${method} ${path} at ${info.url}`);
      },
    },
  };
}

async function build(dir: TempDir, stops: (() => Promise<void> | void)[], stopAll: () => Promise<void>): Promise<Cluster> {
  const redis = await startRedis({ dir: dir.path });
  stops.push(() => redis.stop());

  // Replica 1 makes the CAs and the TLS certificate on its first start; replica 2 gets copies.
  const first = await startReplica(dir.file('auth1'), redis.url, {});
  stops.push(() => first.service.stop());
  const invite = first.service.info.bootstrapInvite;
  if (invite === undefined) throw new Error('auth made no bootstrap invite');
  ok(await first.replica.api('POST', '/v1/invites/accept', { json: { token: invite.token, password: PASSWORD } }), 'accept the admin invite');
  mkdirSync(dir.file('auth2'), { mode: 0o700 });
  cpSync(dir.file('auth1/ca'), dir.file('auth2/ca'), { recursive: true });
  const second = await startReplica(dir.file('auth2'), redis.url, { cert_file: dir.file('auth1/tls/auth-cert.pem'), key_file: dir.file('auth1/tls/auth-key.pem') });
  stops.push(() => second.service.stop());
  const [r1, r2] = [first.replica, second.replica];
  if (r1.fingerprint !== r2.fingerprint) throw new Error(`the replicas serve different TLS certificates: ${r1.fingerprint} / ${r2.fingerprint}`);

  // The target joins through replica 2 with a token made through replica 1.
  const { token: hostToken } = await r1.admin<{ token: string }>('POST', '/v1/admin/tokens', { type: 'host', hostname: TARGET, labels: { env: 'test' } });
  const joined = await joinHostKey(dir.file(TARGET), async (hostKey) =>
    ok(await r2.api<HostJoinAnswer>('POST', '/v1/join', { json: { token: hostToken, hostname: TARGET, host_keys: [hostKey] } }), `join ${TARGET}`),
  );
  const target = await startSshd({
    dir: dir.file(TARGET),
    trustedUserCAKeys: joined.userCA,
    hostKey: joined.hostKey,
    authorizedPrincipalsFile: { contents: 'root\n' },
    extraConfig: ['PermitTTY yes', 'MaxStartups 100:30:200'],
  });
  stops.push(() => target.stop());

  // One proxy enrollment (token from replica 1, enrolled at replica 2), shared by both bastions.
  const { token: proxyToken } = await r1.admin<{ token: string }>('POST', '/v1/admin/tokens', { type: 'proxy' });
  const enrolled = await enrollProxy({ url: r2.url, fingerprint: r2.fingerprint, token: proxyToken, hostname: 'bastion.example.test', names: ['127.0.0.1', 'localhost'] });
  const knownHosts = dir.file('known_hosts');
  writeFileSync(knownHosts, enrolled.knownHosts);
  const bastions = await Promise.all(
    [r1, r2].map(async (replica, i) => {
      const stateDir = dir.file(`bastion${i + 1}`);
      mkdirSync(stateDir, { mode: 0o700 });
      const key = enrolled.hostKeys[0]!;
      writeFileSync(`${stateDir}/host_key`, formatPrivateKey(key.privateKey, { crypto: nodeCrypto }), { mode: 0o600 });
      writeFileSync(`${stateDir}/host_key-cert.pub`, `${formatCertificate(key.certificate)}\n`);
      writeFileSync(`${stateDir}/credential`, `${enrolled.credential}\n`, { mode: 0o600 });
      const config: BastionConfig = {
        stateDir,
        name: 'bastion.example.test',
        sshPort: await freePort(),
        webPort: await freePort(),
        redisUrl: redis.url,
        auth: { url: replica.url, fingerprint: replica.fingerprint },
        ports: { [TARGET]: target.port },
      };
      writeFileSync(`${stateDir}/bastion.json`, JSON.stringify(config));
      const b = await startBastion(`${stateDir}/bastion.json`);
      stops.push(() => b.stop());
      return b;
    }),
  );

  const sshClient = { knownHosts, connectTimeoutSec: 20 };
  let counter = 0;

  return {
    dir,
    redis,
    replicas: [r1, r2],
    bastions: [bastions[0]!, bastions[1]!],
    target,
    knownHosts,
    async user(name, roles, via) {
      const created = await via.admin<{ invite: { token: string } }>('POST', '/v1/admin/users', { name, roles });
      ok(await via.api('POST', '/v1/invites/accept', { json: { token: created.invite.token, password: PASSWORD } }), `accept ${name}'s invite`);
      const token = ok(await via.api<{ token: string }>('POST', '/v1/login/password', { json: { username: name, password: PASSWORD } }), `${name} login`).token;
      return {
        name,
        token,
        async mint(at, m = {}) {
          const path = dir.file(`${name}-${m.tag ?? ''}${++counter}`);
          await runOk('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', path]);
          const cert = ok(
            await at.api<{ certificate: string; serial: string }>('POST', '/v1/certs/user', { token, json: { public_key: readFileSync(`${path}.pub`, 'utf8').trim() } }),
            `${name} mints a certificate at ${at.url}`,
          );
          writeFileSync(`${path}-cert.pub`, `${cert.certificate}\n`);
          return { identity: path, certificate: `${path}-cert.pub`, serial: cert.serial };
        },
      };
    },
    ssh: (b, s) => runSsh(sshClient, b.sshPort, s, 30_000),
    spawnSsh: (b, s) => spawnSsh(sshClient, b.sshPort, s),
    stop: stopAll,
  };
}

async function startBastion(configPath: string): Promise<Bastion> {
  const child = fork(BASTION, [configPath], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const audit: ProxyAuditEvent[] = [];
  const ready = await new Promise<Extract<BastionMessage, { type: 'ready' }>>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`bastion ${configPath} did not start within 60 s:\n${stderr}`)), 60_000);
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`bastion ${configPath} exited (${code}) before it was ready:\n${stderr}`));
    });
    child.on('message', (m: BastionMessage) => {
      if (m.type === 'audit') audit.push(m.event);
      if (m.type === 'ready') {
        clearTimeout(t);
        resolve(m);
      }
    });
  });
  return {
    pid: child.pid!,
    sshPort: ready.sshPort,
    webUrl: ready.webUrl,
    webFingerprint: ready.webFingerprint,
    audit,
    async waitForAudit(name, match = () => true, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const e = audit.find((a) => a.name === name && match(a));
        if (e) return e;
        if (Date.now() > deadline) throw new Error(`no ${name} audit event from bastion ${ready.sshPort}; got:\n${audit.map((a) => `${a.name} ${JSON.stringify(a.fields)}`).join('\n')}\n${stderr}`);
        await sleep(20);
      }
    },
    stop: () => stopChild(child),
  };
}
