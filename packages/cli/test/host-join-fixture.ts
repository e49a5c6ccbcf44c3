import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AuthClient, AuthService, parseAuthConfig, type ApiResponse, type AuthServiceInfo, type RequestOptions } from '@portcullis/auth';
import { freePort, run, runOk, sshRun, startRedis, type RedisHandle, type RunResult } from '@portcullis/harness';

/*
 * What the host enrollment tests share: a real auth service on loopback with a real
 * redis-server, a fake root directory laid out like a Debian host (host keys, an sshd_config
 * that Includes sshd_config.d/*.conf first), and an sshd running from that root exactly as it
 * would on the host, reloaded by SIGHUP through the PidFile.
 */

export const REPO = fileURLToPath(new URL('../../../', import.meta.url));
export const HOST_CLI = join(REPO, 'packages/cli/src/host/cli.ts');
export const HOST_SCRIPT = join(REPO, 'deploy/host/portcullis-host.sh');

const ROLES = [{ kind: 'role', name: 'dev', spec: { allow: { logins: ['root'], host_labels: { env: 'dev' } } } }];

export interface TestAuth {
  readonly info: AuthServiceInfo;
  api<T = Record<string, unknown>>(method: string, path: string, opts?: RequestOptions): Promise<ApiResponse<T>>;
  /** A join token made by the admin; `hostname` pins it (needed to enroll a known host again). */
  token(hostname?: string): Promise<string>;
  /** A user certificate for `publicKey` with the admin's logins (root): opens the proxy, not a host. */
  userCertificate(publicKey: string): Promise<{ certificate: string; serial: string; key_id: string; fingerprint: string }>;
  /**
   * What an enrolled host accepts: the certificate auth gives the proxy (the upstream CA) to log
   * in to `host` as root for the admin, for `publicKey`, the admin's user certificate for the
   * same key standing for the client's.
   */
  upstreamCertificate(publicKey: string, host: string): Promise<{ certificate: string; serial: string }>;
  /** Renews the fixture proxy's host certificate (it is in the inventory, so a host CA rotation waits for it). */
  renewProxy(): Promise<void>;
  revoke(serial: string): Promise<void>;
  stop(): Promise<void>;
}

function ok<T>(res: ApiResponse<T>): T {
  assert.ok(res.status >= 200 && res.status < 300, `HTTP ${res.status}: ${res.bytes.toString('utf8').slice(0, 400)}`);
  return res.body;
}

export async function startAuth(dir: string): Promise<TestAuth & { redis: RedisHandle }> {
  const redis = await startRedis({ dir });
  const config = parseAuthConfig(
    { state_dir: join(dir, 'auth-state'), listen: '127.0.0.1:0', redis: { url: redis.url }, audit: { sink: 'none' }, roles: ROLES },
    { env: {} },
  );
  const service = new AuthService({ config, log: () => {}, scrypt: { log2N: 10, r: 8, p: 1 }, defaultMetrics: false });
  const info = await service.start();
  const client = new AuthClient({ url: info.url, fingerprint: info.fingerprint });
  const api: TestAuth['api'] = (method, path, opts) => client.request(method, path, opts);
  const invite = info.bootstrapInvite!;
  const password = 'correct horse battery staple';
  ok(await api('POST', '/v1/invites/accept', { json: { token: invite.token, password } }));
  const admin = ok(await api<{ token: string }>('POST', '/v1/login/password', { json: { username: 'admin', password } })).token;
  ok(await api('PATCH', '/v1/admin/users/admin', { token: admin, json: { roles: ['admin', 'dev'] } }));
  // A proxy enrolled like any other, for its service credential (no proxy process runs).
  const proxyToken = ok(await api<{ token: string }>('POST', '/v1/admin/tokens', { token: admin, json: { type: 'proxy', ttl: '10m' } })).token;
  const proxyKey = join(dir, 'fixture_proxy_host_key');
  await runOk('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', proxyKey]);
  const proxy = ok(
    await api<{ service_credential: string }>('POST', '/v1/join', {
      json: { token: proxyToken, type: 'proxy', hostname: 'bastion.test', host_keys: [readFileSync(`${proxyKey}.pub`, 'utf8').trim()] },
    }),
  ).service_credential;
  const userCertificate: TestAuth['userCertificate'] = async (publicKey) =>
    ok(await api<{ certificate: string; serial: string; key_id: string; fingerprint: string }>('POST', '/v1/certs/user', { token: admin, json: { public_key: publicKey } }));
  return {
    info,
    redis,
    api,
    async token(hostname) {
      const body = { type: 'host', ttl: '10m', labels: { env: 'dev' }, ...(hostname === undefined ? {} : { hostname }) };
      return ok(await api<{ token: string }>('POST', '/v1/admin/tokens', { token: admin, json: body })).token;
    },
    userCertificate,
    async upstreamCertificate(publicKey, host) {
      const user = await userCertificate(publicKey);
      const client = { serial: user.serial, key_id: user.key_id, fingerprint: user.fingerprint };
      return ok(await api<{ certificate: string; serial: string }>('POST', '/v1/proxy/certs/upstream', { token: proxy, json: { user: 'admin', login: 'root', host, public_key: publicKey, client } }));
    },
    async renewProxy() {
      const c = ok(await api<{ challenge: string; namespace: string }>('POST', '/v1/hosts/renew/challenge', { json: { hostname: 'bastion.test' } }));
      const file = join(dir, 'fixture_proxy_challenge');
      writeFileSync(file, c.challenge);
      await runOk('ssh-keygen', ['-Y', 'sign', '-n', c.namespace, '-f', proxyKey, file]);
      ok(await api('POST', '/v1/hosts/renew', { json: { hostname: 'bastion.test', signature: readFileSync(`${file}.sig`, 'utf8') } }));
      rmSync(`${file}.sig`);
    },
    async revoke(serial) {
      ok(await api('POST', '/v1/admin/revoke', { token: admin, json: { serial, reason: 'test' } }));
    },
    async stop() {
      await service.stop();
      await redis.stop();
    },
  };
}

export interface HostRoot {
  readonly root: string;
  readonly sshDir: string;
  readonly port: number;
  readonly file: (p: string) => string;
}

/** A directory that looks like a host's / to `host join --root`: keys, sshd_config, /run. */
export async function makeHostRoot(root: string): Promise<HostRoot> {
  const sshDir = join(root, 'etc/ssh');
  for (const d of ['etc/ssh/sshd_config.d', 'run', 'etc/cron.d']) mkdirSync(join(root, d), { recursive: true });
  for (const t of ['ed25519', 'ecdsa']) {
    await runOk('ssh-keygen', ['-q', '-t', t, '-N', '', '-C', `host ${t}`, '-f', join(sshDir, `ssh_host_${t}_key`)]);
  }
  const port = await freePort();
  // As Debian ships it: the drop-ins first, so they win (sshd keeps the first value).
  writeFileSync(
    join(sshDir, 'sshd_config'),
    [
      `Include ${sshDir}/sshd_config.d/*.conf`,
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${sshDir}/ssh_host_ed25519_key`,
      `HostKey ${sshDir}/ssh_host_ecdsa_key`,
      `PidFile ${root}/run/sshd.pid`,
      'UsePAM no',
      'StrictModes no',
      'UseDNS no',
      'PermitRootLogin prohibit-password',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PrintMotd no',
      'LogLevel VERBOSE',
      '',
    ].join('\n'),
  );
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  return { root, sshDir, port, file: (p) => join(root, p) };
}

export interface RootSshd {
  log(): string;
  /** Resolves once sshd has said it listens `count` times in all (a reload listens again). */
  listening(count: number): Promise<void>;
  waitForLog(pattern: RegExp, since?: number): Promise<void>;
  stop(): Promise<void>;
}

/** The sshd of a host root, in the foreground, reading that root's sshd_config. */
export async function startRootSshd(host: HostRoot): Promise<RootSshd> {
  const child = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', join(host.sshDir, 'sshd_config')], { stdio: ['ignore', 'ignore', 'pipe'], env: { PATH: process.env['PATH'] ?? '', TZ: 'UTC' } });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (s: string) => (stderr += s));
  const killOnExit = (): void => void child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  const waitFor = async (test: () => boolean, what: string): Promise<void> => {
    const deadline = Date.now() + 10_000;
    while (!test()) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`sshd: ${what} did not happen:\n${stderr}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const handle: RootSshd = {
    log: () => stderr,
    listening: (count) => waitFor(() => stderr.split(`Server listening on 127.0.0.1 port ${host.port}.`).length - 1 >= count, `listening #${count}`),
    waitForLog: (pattern, since = 0) => waitFor(() => pattern.test(stderr.slice(since)), String(pattern)),
    async stop() {
      process.removeListener('exit', killOnExit);
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
  await handle.listening(1);
  return handle;
}

export function runHostCli(args: readonly string[]): Promise<RunResult> {
  return run(process.execPath, ['--import', 'tsx', HOST_CLI, ...args], { cwd: REPO, timeoutMs: 60_000 });
}

export function runHostScript(args: readonly string[]): Promise<RunResult> {
  return run('bash', [HOST_SCRIPT, ...args], { cwd: REPO, timeoutMs: 60_000 });
}

/**
 * A key pair with the certificate the proxy would log in to `host` with (upstream CA), written
 * where ssh finds them: enrolled hosts trust the upstream CA only, never users' own certificates.
 * It lives two minutes. `kind: 'user'` writes the admin's own user certificate instead.
 */
export async function userIdentity(auth: TestAuth, dir: string, name: string, host: string, kind: 'upstream' | 'user' = 'upstream'): Promise<{ key: string; cert: string; serial: string }> {
  const key = join(dir, name);
  await runOk('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', key]);
  const publicKey = readFileSync(`${key}.pub`, 'utf8').trim();
  const issued = kind === 'user' ? await auth.userCertificate(publicKey) : await auth.upstreamCertificate(publicKey, host);
  writeFileSync(`${key}-cert.pub`, `${issued.certificate}\n`);
  return { key, cert: `${key}-cert.pub`, serial: issued.serial };
}

/**
 * Stock ssh with only a known_hosts file (strict checking, batch mode: a prompt would fail) and
 * the host's name as HostKeyAlias, so the host certificate is checked against that name.
 */
export function sshAs(host: HostRoot, hostName: string, id: { key: string; cert: string }, knownHosts: string, command = 'echo logged-in'): Promise<RunResult> {
  return sshRun({ port: host.port, user: 'root', identity: id.key, certificate: id.cert, knownHosts, command, options: [`HostKeyAlias=${hostName}`] });
}

/** One line on stderr, no stack trace: what a failing command owes its user. */
export function assertOneLine(r: RunResult, pattern: RegExp): void {
  assert.notEqual(r.code, 0, `expected a failure, got exit 0: ${r.stdout}`);
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `expected one line on stderr, got:\n${r.stderr}`);
  assert.match(lines[0]!, pattern);
}
