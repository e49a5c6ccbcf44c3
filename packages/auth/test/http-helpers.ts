import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { runOk } from '@portcullis/harness';
import { parseAuthConfig } from '../src/config/load.js';
import { AuthClient, type ApiResponse, type RequestOptions } from '../src/http/client.js';
import { AuthService, type AuthServiceInfo } from '../src/service.js';
import { totpCode } from '../src/identity/totp.js';

/*
 * Shared by the HTTP API and end-to-end tests: an auth service on 127.0.0.1 with a real Redis,
 * a client pinned to the certificate fingerprint the service reported, and Redis snapshots.
 */

export interface TestAuth {
  readonly service: AuthService;
  readonly info: AuthServiceInfo;
  readonly client: AuthClient;
  /** A separate connection for inspecting Redis. */
  readonly redis: Redis;
  /** Added to the real time the service sees, to expire things without waiting. */
  readonly clock: { offset: number };
  readonly log: string[];
  api<T = Record<string, unknown>>(method: string, path: string, opts?: RequestOptions): Promise<ApiResponse<T>>;
  stop(): Promise<void>;
}

export interface TestAuthOptions {
  readonly stateDir: string;
  readonly redisUrl: string;
  /** More config keys (roles, oidc, rate_limits...). */
  readonly config?: Readonly<Record<string, unknown>>;
  readonly clock?: { offset: number };
}

export async function startTestAuth(opts: TestAuthOptions): Promise<TestAuth> {
  const clock = opts.clock ?? { offset: 0 };
  const log: string[] = [];
  const config = parseAuthConfig(
    { state_dir: opts.stateDir, listen: '127.0.0.1:0', redis: { url: opts.redisUrl }, audit: { sink: 'none' }, ...opts.config },
    { env: {} },
  );
  const service = new AuthService({
    config,
    clock: () => Date.now() + clock.offset,
    log: (l) => log.push(l),
    // Fast hashing: these tests are about the API, not the password hash's cost.
    scrypt: { log2N: 10, r: 8, p: 1 },
    defaultMetrics: false,
  });
  const info = await service.start();
  const client = new AuthClient({ url: info.url, fingerprint: info.fingerprint });
  const redis = new Redis(opts.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await redis.connect();
  return {
    service,
    info,
    client,
    redis,
    clock,
    log,
    api: (method, path, o) => client.request(method, path, o),
    async stop() {
      redis.disconnect();
      await service.stop();
    },
  };
}

/** The audit events written after stream id `since` ('-' for all). */
export { snapshot } from './support.js';

/** The audit events written after stream id `since` ('-' for all). */
export async function auditSince(redis: Redis, since: string): Promise<{ id: string; code: string; name: string; fields: Record<string, unknown>; actor: Record<string, unknown> }[]> {
  const entries = await redis.xrange('pc:{audit}:events', since === '-' ? '-' : `(${since}`, '+');
  return entries.map(([id, flat]) => {
    const f = new Map<string, string>();
    for (let i = 0; i + 1 < flat.length; i += 2) f.set(flat[i]!, flat[i + 1]!);
    return {
      id,
      code: f.get('code') ?? '',
      name: f.get('name') ?? '',
      fields: JSON.parse(f.get('fields') ?? '{}') as Record<string, unknown>,
      actor: JSON.parse(f.get('actor') ?? '{}') as Record<string, unknown>,
    };
  });
}

/** The id of the newest audit event, to read what comes after it. */
export async function auditMark(redis: Redis): Promise<string> {
  const last = await redis.xrevrange('pc:{audit}:events', '+', '-', 'COUNT', 1);
  return last[0]?.[0] ?? '0-0';
}

export function expectError(res: ApiResponse, status: number, code: string, message?: RegExp): void {
  const body = res.body as { error?: { code?: string; message?: string } } | undefined;
  assert.equal(res.status, status, `expected ${status} ${code}, got ${res.status} ${JSON.stringify(body)}`);
  assert.equal(body?.error?.code, code, JSON.stringify(body));
  if (message !== undefined) assert.match(body?.error?.message ?? '', message);
}

export function expectOk<T>(res: ApiResponse<T>, status = 200): T {
  assert.equal(res.status, status, `expected ${status}, got ${res.status} ${res.bytes.toString('utf8').slice(0, 500)}`);
  return res.body;
}

/** The code an authenticator app shows for the secret at the service's time (real time + offset). */
export function totpFor(secret: string, offsetMs = 0): string {
  return totpCode(secret, Date.now() + offsetMs);
}

/** Sets the bootstrap admin's password through the invite and logs in; returns the session token. */
export async function adminSession(auth: Pick<TestAuth, 'info' | 'api'>, password = 'correct horse battery staple'): Promise<string> {
  const invite = auth.info.bootstrapInvite;
  assert.ok(invite, 'the first start made an admin invite');
  expectOk(await auth.api('POST', '/v1/invites/accept', { json: { token: invite.token, password } }));
  const login = expectOk(await auth.api<{ token: string }>('POST', '/v1/login/password', { json: { username: 'admin', password } }));
  return login.token;
}

/** An ssh-keygen key pair in `dir`; returns the private key path and the public key line. */
export async function sshKeygen(dir: string, name: string, type = 'ed25519', bits?: number): Promise<{ path: string; publicKey: string }> {
  const path = join(dir, name);
  await runOk('ssh-keygen', ['-q', '-t', type, ...(bits === undefined ? [] : ['-b', String(bits)]), '-N', '', '-C', name, '-f', path]);
  const { readFileSync } = await import('node:fs');
  return { path, publicKey: readFileSync(`${path}.pub`, 'utf8').trim() };
}
