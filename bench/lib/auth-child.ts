// Starts the real auth service in a child process (bench/lib/auth-server.ts) on a fresh state
// directory with an embedded redis-server and a generated TLS certificate, then does what an
// operator and an engineer would: the first admin sets a password through the invite, creates
// a user with a role through the admin API, the user sets a password and logs in.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { AuthClient } from '@portcullis/auth';
import type { TempDir } from '@portcullis/harness';
import type { BenchServerInfo } from './auth-server.js';

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

/** The child's stdout, a line at a time: its start-up report, then one answer per command. */
function lineReader(child: ChildProcess, log: () => string): () => Promise<string> {
  const waiting: { resolve: (line: string) => void; reject: (e: Error) => void }[] = [];
  const early: string[] = [];
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const w = waiting.shift();
    if (w === undefined) early.push(line);
    else w.resolve(line);
  });
  child.once('exit', (code) => {
    for (const w of waiting.splice(0)) w.reject(new Error(`the auth service exited (${code}):\n${log()}`));
  });
  return () => {
    const line = early.shift();
    if (line !== undefined) return Promise.resolve(line);
    if (child.exitCode !== null || child.signalCode !== null) return Promise.reject(new Error(`the auth service has exited:\n${log()}`));
    return new Promise((resolve, reject) => waiting.push({ resolve, reject }));
  };
}

export async function startBenchAuth(opts: BenchAuthOptions): Promise<BenchAuth> {
  const stateDir = opts.dir.file('state');
  const configPath = opts.dir.file('auth.yaml');
  // JSON is YAML; the loader reads either.
  writeFileSync(configPath, JSON.stringify(config(stateDir, opts.dir.file('audit.jsonl')), null, 2));
  const entry = fileURLToPath(new URL('./auth-server.ts', import.meta.url));
  // From the repository root, where `--import tsx` resolves, whatever the caller's directory.
  const root = fileURLToPath(new URL('../../', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', entry, configPath], { cwd: root, stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString('utf8')));
  const log = (): string => stderr;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const nextLine = lineReader(child, log);
  const command = async (line: string, expect: RegExp): Promise<void> => {
    child.stdin!.write(`${line}\n`);
    const answer = await nextLine();
    if (!expect.test(answer)) throw new Error(`the auth service answered ${JSON.stringify(answer)} to ${line}`);
  };

  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    }
  };
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
      pid: child.pid!,
      certPem: readFileSync(join(stateDir, 'tls', 'auth-cert.pem'), 'utf8'),
      token: login.token,
      client,
      log,
      startProfile: () => command('profile-start', /^profiling$/),
      stopProfile: (file) => command(`profile-stop ${file}`, /^profile /),
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}
