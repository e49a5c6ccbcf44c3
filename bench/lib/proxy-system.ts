// The benchmark's world: redis-server, the real auth service, an sshd target and an sshd used
// as an OpenSSH bastion (both enrolled through /v1/join, so every hop presents a host
// certificate), the proxy enrolled the same way and run as a child process (so its CPU and
// memory are its own), and one user with a key and certificate from auth.
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { appendFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AuthClient, AuthService, parseAuthConfig } from '@portcullis/auth';
import type { ApiResponse, RequestOptions } from '@portcullis/auth';
import { formatCertificate, formatPrivateKey, formatPublicKey, generateKey, parseCertificateText, publicPart } from '@portcullis/cert-core';
import type { Certificate, SigningPrivateKey } from '@portcullis/cert-core';
import { nodeCrypto } from '@portcullis/cert-core/node';
import { enrollProxy } from '@portcullis/proxy';
import type { ProxyEnrollment } from '@portcullis/proxy';
import { freePort, joinHostKey, startRedis, startSshd, stopChild, tempDir } from '@portcullis/harness';
import type { HostJoinAnswer, SshdHandle, TempDir } from '@portcullis/harness';
import { spawnAuthProcess, type AuthProcess } from './auth-process.js';
import type { ProxyChildConfig, ProxyChildMessage } from './proxy-child.js';

const PASSWORD = 'correct horse battery staple';
/** Every hop speaks AES-128-GCM, as the issue asks. */
export const CIPHER = 'aes128-gcm@openssh.com';

export interface BenchSystem {
  readonly dir: TempDir;
  readonly target: SshdHandle;
  readonly bastion: SshdHandle;
  /** The user's key (for ssh2 load clients) and certificate, also written to `identity`. */
  readonly userKey: SigningPrivateKey;
  readonly userCert: Certificate;
  /** ssh_config naming `target`, `bastion` and `proxy`, with identity, CA trust and cipher. */
  readonly sshConfig: string;
  /** auth in a child process of its own, when startBenchSystem was asked for one (the soak samples it). */
  readonly authProcess: AuthProcess | undefined;
  /**
   * A proxy child on the port `sshConfig` names, or on `listenPort` (0: any free one) for a
   * second proxy; with `recording`, every session is recorded to the system's Redis.
   */
  startProxy(o?: { readonly listenPort?: number; readonly recording?: boolean }): Promise<ProxyProcess>;
  stop(): Promise<void>;
}

export interface ProxyProcess {
  readonly pid: number;
  readonly port: number;
  /** process.memoryUsage() in the proxy, after a full GC when `gc` is set. */
  memory(gc?: boolean): Promise<NodeJS.MemoryUsage>;
  /** Starts the V8 CPU profiler in the proxy (the same sampling as node --cpu-prof). */
  profileStart(): Promise<void>;
  /** Stops it and writes the .cpuprofile to `path`. */
  profileStop(path: string): Promise<void>;
  /** SIGTERM: the proxy drains and exits. */
  stop(): Promise<void>;
}

function ok<T>(r: ApiResponse<T>, what: string): T {
  if (r.status !== 200) throw new Error(`${what}: ${r.status} ${r.bytes.toString('utf8').slice(0, 300)}`);
  return r.body;
}

export interface BenchSystemOptions {
  /** Run auth in a child process (its memory and descriptors its own) instead of in this one. */
  readonly authProcess?: boolean;
}

export async function startBenchSystem(opts: BenchSystemOptions = {}): Promise<BenchSystem> {
  const dir = tempDir('portcullis-bench-proxy-');
  const stops: (() => Promise<void> | void)[] = [() => dir.remove()];
  const stop = async (): Promise<void> => {
    for (const s of stops.reverse()) await Promise.resolve(s()).catch(() => {});
  };
  try {
    const redis = await startRedis({ dir: dir.path });
    stops.push(() => redis.stop());
    const authDoc = {
        state_dir: dir.file('auth'),
        listen: '127.0.0.1:0',
        redis: { url: redis.url },
        audit: { sink: 'none' },
        roles: [
          {
            kind: 'role',
            name: 'bench',
            // Port forwarding: the OpenSSH bastion refuses -J to a certificate without it.
            spec: { allow: { logins: ['root'], host_labels: { '*': '*' } }, options: { max_cert_ttl: '4h', port_forwarding: true, idle_timeout: '4h' } },
          },
        ],
      };
    let info: { url: string; fingerprint: string; invite: string | undefined };
    let authProcess: AuthProcess | undefined;
    if (opts.authProcess === true) {
      const path = dir.file('auth.json');
      writeFileSync(path, JSON.stringify(authDoc));
      const p = await spawnAuthProcess(path);
      authProcess = p;
      stops.push(() => p.stop());
      info = p.info;
    } else {
      const auth = new AuthService({ config: parseAuthConfig(authDoc, { env: {} }), log: () => {}, scrypt: { log2N: 10, r: 8, p: 1 }, defaultMetrics: false });
      const started = await auth.start();
      stops.push(() => auth.stop());
      info = { url: started.url, fingerprint: started.fingerprint, invite: started.bootstrapInvite?.token };
    }
    const client = new AuthClient({ url: info.url, fingerprint: info.fingerprint });
    const api = <T>(method: string, path: string, o?: RequestOptions): Promise<ApiResponse<T>> => client.request<T>(method, path, o);
    ok(await api('POST', '/v1/invites/accept', { json: { token: info.invite!, password: PASSWORD } }), 'admin invite');
    const admin = ok(await api<{ token: string }>('POST', '/v1/login/password', { json: { username: 'admin', password: PASSWORD } }), 'admin login').token;
    const asAdmin = async <T>(method: string, path: string, json: unknown): Promise<T> => ok(await api<T>(method, path, { token: admin, json }), path);

    const ports = new Map<string, number>();
    const sshd = async (name: string, extra: readonly string[]): Promise<SshdHandle> => {
      const d = dir.file(name);
      const { token } = await asAdmin<{ token: string }>('POST', '/v1/admin/tokens', { type: 'host', hostname: name, labels: { env: 'bench' } });
      const joined = await joinHostKey(d, async (hostKey) =>
        ok(await api<HostJoinAnswer>('POST', '/v1/join', { json: { token, hostname: name, host_keys: [hostKey] } }), `join ${name}`),
      );
      const h = await startSshd({
        dir: d,
        trustedUserCAKeys: joined.userCA,
        hostKey: joined.hostKey,
        extraConfig: [
          `Ciphers ${CIPHER}`,
          'Compression no',
          // 550 sessions arrive in batches; the default 10:30:100 would drop some.
          'MaxStartups 200:30:400',
          'LogLevel ERROR',
          ...extra,
        ],
      });
      stops.push(() => h.stop());
      ports.set(name, h.port);
      return h;
    };
    const target = await sshd('web01.bench.test', []);
    const bastion = await sshd('jump.bench.test', ['AllowTcpForwarding yes']);

    const proxyToken = (await asAdmin<{ token: string }>('POST', '/v1/admin/tokens', { type: 'proxy' })).token;
    const enrollment: ProxyEnrollment = await enrollProxy({ url: info.url, fingerprint: info.fingerprint, token: proxyToken, hostname: 'proxy.bench.test' });

    await asAdmin('POST', '/v1/admin/users', { name: 'bench', roles: ['bench'] }).then(async (u) => {
      const invite = (u as { invite: { token: string } }).invite.token;
      ok(await api('POST', '/v1/invites/accept', { json: { token: invite, password: PASSWORD } }), 'bench invite');
    });
    const session = ok(await api<{ token: string }>('POST', '/v1/login/password', { json: { username: 'bench', password: PASSWORD } }), 'bench login').token;
    const userKey = generateKey(nodeCrypto, 'ssh-ed25519');
    const minted = ok(
      await api<{ certificate: string }>('POST', '/v1/certs/user', { token: session, json: { public_key: formatPublicKey(publicPart(userKey)), ttl: 4 * 3600 } }),
      'mint',
    );
    const userCert = parseCertificateText(minted.certificate).cert;
    // The anchors (ssh straight to the target, ssh -J through the OpenSSH bastion) log in with the
    // user's own certificate, so those two sshd trust the user CA too: /v1/join gives a target the
    // upstream CA (the proxy's certificates) only. sshd reads the file at each login.
    for (const name of ['web01.bench.test', 'jump.bench.test']) {
      appendFileSync(join(dir.file(name), 'trusted_user_ca_keys'), `${formatPublicKey(userCert.signatureKey)} bench-user-ca\n`);
    }
    const identity = dir.file('id_bench');
    writeFileSync(identity, formatPrivateKey(userKey, { crypto: nodeCrypto }), { mode: 0o600 });
    writeFileSync(`${identity}-cert.pub`, `${formatCertificate(userCert)}\n`);
    const knownHosts = dir.file('known_hosts');
    writeFileSync(knownHosts, enrollment.knownHosts);

    const proxyPort = await freePort();
    const sshConfig = dir.file('ssh_config');
    const hostBlock = (alias: string, port: number, name: string): string[] => [`Host ${alias}`, '  HostName 127.0.0.1', `  Port ${port}`, `  HostKeyAlias ${name}`];
    writeFileSync(
      sshConfig,
      [
        ...hostBlock('target', target.port, 'web01.bench.test'),
        ...hostBlock('bastion', bastion.port, 'jump.bench.test'),
        ...hostBlock('proxy', proxyPort, 'proxy.bench.test'),
        'Host *',
        '  User root',
        `  IdentityFile ${identity}`,
        `  CertificateFile ${identity}-cert.pub`,
        '  IdentitiesOnly yes',
        '  IdentityAgent none',
        '  BatchMode yes',
        '  StrictHostKeyChecking yes',
        `  UserKnownHostsFile ${knownHosts}`,
        '  GlobalKnownHostsFile /dev/null',
        '  UpdateHostKeys no',
        `  Ciphers ${CIPHER}`,
        '  Compression no',
        '  LogLevel ERROR',
        '',
      ].join('\n'),
    );

    const childConfig: ProxyChildConfig = {
      url: info.url,
      fingerprint: info.fingerprint,
      credential: enrollment.credential,
      hostKeys: enrollment.hostKeys.map((k) => ({ privateKey: formatPrivateKey(k.privateKey, { crypto: nodeCrypto }), certificate: formatCertificate(k.certificate) })),
      ports: Object.fromEntries(ports),
      listenPort: proxyPort,
    };
    const childConfigPath = dir.file('proxy-child.json');
    writeFileSync(childConfigPath, JSON.stringify(childConfig), { mode: 0o600 });

    return {
      dir,
      target,
      bastion,
      userKey,
      userCert,
      sshConfig,
      authProcess,
      startProxy: async (o = {}) => {
        let path = childConfigPath;
        if (o.listenPort !== undefined || o.recording === true) {
          path = dir.file(`proxy-child-${o.listenPort ?? 'default'}-${Date.now()}.json`);
          const recording = o.recording === true ? { redisUrl: redis.url, spoolDir: dir.file(`spool-${Date.now()}`) } : undefined;
          writeFileSync(path, JSON.stringify({ ...childConfig, ...(o.listenPort === undefined ? {} : { listenPort: o.listenPort }), ...(recording === undefined ? {} : { recording }) }), { mode: 0o600 });
        }
        const p = await spawnProxy(path);
        // Whatever happens to the benchmark, no proxy outlives it.
        stops.push(() => p.stop());
        return p;
      },
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

async function spawnProxy(configPath: string): Promise<ProxyProcess> {
  const child: ChildProcess = fork(fileURLToPath(new URL('./proxy-child.ts', import.meta.url)), [configPath], {
    execArgv: ['--import', 'tsx', '--expose-gc'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const pending = new Map<number, (m: NodeJS.MemoryUsage) => void>();
  const profiling = new Map<number, () => void>();
  let nextId = 0;
  const port = await new Promise<number>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`the proxy child exited (${code}) before listening`)));
    child.on('message', (m: ProxyChildMessage) => {
      if (m.type === 'listening') resolve(m.port);
      if (m.type === 'memory') pending.get(m.id)?.(m.usage);
      if (m.type === 'profiled') profiling.get(m.id)?.();
    });
  });
  return {
    pid: child.pid!,
    port,
    memory(gc = false) {
      const id = nextId++;
      return new Promise((resolve) => {
        pending.set(id, resolve);
        child.send({ type: 'memory', id, gc });
      });
    },
    profileStart() {
      const id = nextId++;
      return new Promise<void>((resolve) => {
        profiling.set(id, resolve);
        child.send({ type: 'profile-start', id });
      });
    },
    profileStop(path) {
      const id = nextId++;
      return new Promise<void>((resolve) => {
        profiling.set(id, resolve);
        child.send({ type: 'profile-stop', id, path });
      });
    },
    stop: () => stopChild(child),
  };
}
