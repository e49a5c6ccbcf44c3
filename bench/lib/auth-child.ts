// Starts the real auth service in a child process (bench/lib/auth-server.ts) on a fresh state
// directory with an embedded redis-server and a generated TLS certificate, then does what an
// operator and an engineer would: the first admin sets a password through the invite, creates
// a user with a role through the admin API, the user sets a password and logs in.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AuthClient } from '@portcullis/auth';
import type { TempDir } from '@portcullis/harness';
import type { BenchServerInfo } from './auth-server.js';
import { spawnAuthServer } from './auth-process.js';

export const BENCH_USER = 'alice';
export const BENCH_ROLE = 'engineers';

export interface BenchAuth {
  readonly info: BenchServerInfo;
  readonly pid: number;
  /** The generated TLS certificate (PEM), for a keep-alive agent to trust. */
  readonly certPem: string;
  /** The user's login session token. */
  readonly token: string;
  readonly client: AuthClient;
  /** Everything the service logged (stderr), for a failure message. */
  log(): string;
  /** Starts V8's sampling profiler in the service. */
  startProfile(): Promise<void>;
  /** Stops it and writes the .cpuprofile to `file`. */
  stopProfile(file: string): Promise<void>;
  stop(): Promise<void>;
}

export interface BenchAuthOptions {
  readonly dir: TempDir;
}

function config(stateDir: string, auditPath: string): unknown {
  return {
    state_dir: stateDir,
    listen: '127.0.0.1:0',
    // A file, as an operator shipping to ELK would have it: each certificate costs its line.
    audit: { sink: 'file', path: auditPath },
    roles: [
      {
        kind: 'role',
        name: BENCH_ROLE,
        spec: { allow: { logins: ['{{user.name}}', 'ubuntu'], host_labels: { '*': '*' } }, options: { max_cert_ttl: '5m' } },
      },
    ],
  };
}

async function ok<T>(p: Promise<{ status: number; body: T; bytes: Buffer }>, what: string): Promise<T> {
  const r = await p;
  if (r.status !== 200) throw new Error(`${what}: HTTP ${r.status} ${r.bytes.toString('utf8').slice(0, 300)}`);
  return r.body;
}

export async function startBenchAuth(opts: BenchAuthOptions): Promise<BenchAuth> {
  const stateDir = opts.dir.file('state');
  const configPath = opts.dir.file('auth.yaml');
  // JSON is YAML; the loader reads either.
  writeFileSync(configPath, JSON.stringify(config(stateDir, opts.dir.file('audit.jsonl')), null, 2));
  const server = spawnAuthServer(configPath);
  const { nextLine, stop } = server;
  const log = server.stderr;
  try {
    const info = JSON.parse(await nextLine()) as BenchServerInfo;
    if (info.invite === undefined) throw new Error('the service made no first-admin invite on a fresh state directory');
    const client = new AuthClient({ url: info.url, fingerprint: info.fingerprint });
    const adminPassword = 'bench admin password 0123456789';
    await ok(client.request('POST', '/v1/invites/accept', { json: { token: info.invite, password: adminPassword } }), 'accept the admin invite');
    const admin = await ok(client.request<{ token: string }>('POST', '/v1/login/password', { json: { username: 'admin', password: adminPassword } }), 'admin login');
    const created = await ok(
      client.request<{ invite: { token: string } }>('POST', '/v1/admin/users', { token: admin.token, json: { name: BENCH_USER, roles: [BENCH_ROLE] } }),
      'create the user',
    );
    const userPassword = 'bench user password 0123456789';
    await ok(client.request('POST', '/v1/invites/accept', { json: { token: created.invite.token, password: userPassword } }), 'accept the user invite');
    const login = await ok(client.request<{ token: string }>('POST', '/v1/login/password', { json: { username: BENCH_USER, password: userPassword } }), 'user login');
    return {
      info,
      pid: server.child.pid!,
      certPem: readFileSync(join(stateDir, 'tls', 'auth-cert.pem'), 'utf8'),
      token: login.token,
      client,
      log,
      startProfile: async () => void (await server.command('profile-start', /^profiling$/)),
      stopProfile: async (file) => void (await server.command(`profile-stop ${file}`, /^profile /)),
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}
