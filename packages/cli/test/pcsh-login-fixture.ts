import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  run,
  startOidcProvider,
  startRedis,
  tempDir,
  type OidcTestUser,
  type RedisHandle,
  type RunResult,
  type TempDir,
  type TestOidcProvider,
} from '@portcullis/harness';
import { AuthClient, AuthService, parseAuthConfig, totpCode, type AuthServiceInfo } from '@portcullis/auth';

/*
 * What the CLI tests run against: a real redis-server, a real OpenID provider and a real auth
 * service on loopback, and the real pcsh / pcctl binaries started as a user would, each with
 * HOME and PCSH_HOME in a temporary directory and no display (so no browser opens).
 */

export const CLIENT = { client_id: 'portcullis', client_secret: 'cli-e2e-client-secret-0123456789' };
export const alice: OidcTestUser = { sub: 'sub-alice', username: 'alice', password: 'alice-password-1', groups: ['eng'] };
export const bob: OidcTestUser = { sub: 'sub-bob', username: 'bob', password: 'bob-password-123', groups: ['eng'] };
export const ADMIN_PASSWORD = 'correct horse battery staple';

export const ROLES = [
  // root is the login the test sshd can serve.
  { kind: 'role', name: 'dev', spec: { allow: { logins: ['root'], host_labels: { '*': '*' } }, options: { max_cert_ttl: '10m' } } },
  { kind: 'role', name: 'strict', spec: { allow: { logins: ['root'], host_labels: { '*': '*' } }, options: { require_session_mfa: true } } },
];

const BIN = (tool: string): string => fileURLToPath(new URL(`../bin/${tool}`, import.meta.url));

export interface Stack {
  readonly dir: TempDir;
  readonly redis: RedisHandle;
  readonly provider: TestOidcProvider;
  readonly service: AuthService;
  readonly info: AuthServiceInfo;
  readonly client: AuthClient;
  /** Added to real time for the service: expires sessions without waiting. */
  readonly clock: { offset: number };
  /** The TOTP code the service accepts now for `secret`. */
  totp(secret: string): string;
  stop(): Promise<void>;
}

export async function startStack(prefix: string, users: readonly OidcTestUser[] = [alice, bob], extraConfig: Readonly<Record<string, unknown>> = {}): Promise<Stack> {
  const dir = tempDir(prefix);
  const redis = await startRedis({ dir: dir.path });
  const provider = await startOidcProvider({ users, clients: [{ ...CLIENT, redirect_uris: ['http://127.0.0.1/callback'] }] });
  const clock = { offset: 0 };
  const config = parseAuthConfig(
    {
      state_dir: dir.file('state'),
      listen: '127.0.0.1:0',
      redis: { url: redis.url },
      audit: { sink: 'none' },
      roles: ROLES,
      oidc: { issuer: provider.issuer, ...CLIENT, allow_insecure_loopback_issuer: true, role_mapping: [{ value: 'eng', roles: ['dev'] }] },
      ...extraConfig,
    },
    { env: {} },
  );
  const service = new AuthService({ config, clock: () => Date.now() + clock.offset, log: () => {}, scrypt: { log2N: 10, r: 8, p: 1 }, defaultMetrics: false });
  const info = await service.start();
  const client = new AuthClient({ url: info.url, fingerprint: info.fingerprint });
  return {
    dir,
    redis,
    provider,
    service,
    info,
    client,
    clock,
    totp: (secret) => totpCode(secret, Date.now() + clock.offset),
    async stop() {
      await service.stop();
      await provider.stop();
      await redis.stop();
      dir.remove();
    },
  };
}

/** A user's machine: its own HOME and PCSH_HOME. */
export interface Laptop {
  readonly home: string;
  readonly pcshHome: string;
  readonly env: NodeJS.ProcessEnv;
}

export function laptop(stack: Stack, name: string): Laptop {
  const home = stack.dir.file(`home-${name}`);
  mkdirSync(home, { recursive: true });
  const pcshHome = `${home}/.pcsh`;
  return { home, pcshHome, env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: home, PCSH_HOME: pcshHome, TZ: 'UTC' } };
}

export function cli(tool: 'pcsh' | 'pcctl', who: Laptop, args: readonly string[], opts: { env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<RunResult> {
  return run(BIN(tool), args, { env: { ...who.env, ...opts.env }, ...(opts.input === undefined ? {} : { input: opts.input }), timeoutMs: 60_000 });
}

/** Exit 0, or the assertion shows what the command said. */
export async function ok(tool: 'pcsh' | 'pcctl', who: Laptop, args: readonly string[], opts: { env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<RunResult> {
  const r = await cli(tool, who, args, opts);
  assert.equal(r.code, 0, `${tool} ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r;
}

/** A failure as promised: this exit code, exactly one line on stderr, no stack trace. */
export async function fails(tool: 'pcsh' | 'pcctl', who: Laptop, args: readonly string[], code: number, message: RegExp, opts: { env?: NodeJS.ProcessEnv; input?: string } = {}): Promise<string> {
  const r = await cli(tool, who, args, opts);
  assert.equal(r.code, code, `${tool} ${args.join(' ')}: expected exit ${code}, got ${r.code}: ${r.stderr}`);
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 1, `one line on stderr, got:\n${r.stderr}`);
  assert.match(lines[0]!, new RegExp(`^${tool}: `));
  assert.match(lines[0]!, message);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
  return lines[0]!;
}

/** A running command whose stderr a test reads as it comes (browser URLs, device codes). */
export interface Running {
  waitForStderr(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  write(text: string): void;
  /** SIGTERM, as Ctrl-C would end a `--follow`. */
  stop(): void;
  readonly done: Promise<RunResult>;
}

/**
 * Runs the command in a pseudo-terminal (util-linux script), as a person at a keyboard would:
 * prompts switch to their terminal behaviour (no echo for secrets, yes/no questions).
 */
export function startInTerminal(tool: 'pcsh' | 'pcctl', who: Laptop, args: readonly string[]): Running {
  const q = (a: string): string => `'${a.replace(/'/g, `'\\''`)}'`;
  return start(tool, who, args, ['script', '-qfec', [BIN(tool), ...args].map(q).join(' '), '/dev/null']);
}

export function start(tool: 'pcsh' | 'pcctl', who: Laptop, args: readonly string[], argv: readonly string[] = [BIN(tool), ...args]): Running {
  const child = spawn(argv[0]!, argv.slice(1), { env: { TERM: 'xterm', ...who.env }, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  child.stdin.on('error', () => {});
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const done = new Promise<RunResult>((resolve) =>
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? 1, stdout, stderr, stdoutBytes: Buffer.from(stdout) });
    }),
  );
  return {
    done,
    write: (text) => child.stdin.write(text),
    stop: () => child.kill('SIGTERM'),
    async waitForStderr(pattern, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const m = stderr.match(pattern) ?? stdout.match(pattern);
        if (m) return m;
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`${tool} ${args.join(' ')}: no ${pattern} in its output:\n${stdout}\n${stderr}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    },
  };
}

/** The bootstrap admin's password set through the invite, and the admin logged in with pcsh. */
export async function adminLaptop(stack: Stack): Promise<Laptop> {
  const invite = stack.info.bootstrapInvite;
  assert.ok(invite, 'the first start made an admin invite');
  const res = await stack.client.request('POST', '/v1/invites/accept', { json: { token: invite.token, password: ADMIN_PASSWORD } });
  assert.equal(res.status, 200, res.bytes.toString());
  const admin = laptop(stack, 'admin');
  const r = await ok('pcsh', admin, ['login', '--auth', stack.info.url, '--fingerprint', stack.info.fingerprint, '--user', 'admin'], { env: { PCSH_PASSWORD: ADMIN_PASSWORD } });
  // The built-in admin role grants no login: signed in, without a certificate, and told so.
  assert.match(r.stderr, /logged in as admin, but no SSH certificate was issued/);
  return admin;
}

/** Accepts an invite link as the invite page does. */
export async function acceptInvite(stack: Stack, url: string, password: string): Promise<void> {
  const token = new URL(url.trim()).hash.slice(1);
  const res = await stack.client.request('POST', '/v1/invites/accept', { json: { token, password } });
  assert.equal(res.status, 200, res.bytes.toString());
}
