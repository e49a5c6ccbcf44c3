// Shared set-up for the CA, hosts and revocation tests: a real redis-server, a CA key store in
// a temporary state directory, users in memory, roles in Redis, audit events and metrics kept
// for assertions.
import { readFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import { parse as parseYaml } from 'yaml';
import { runOk, startRedis, tempDir } from '@portcullis/harness';
import type { RedisHandle, TempDir } from '@portcullis/harness';
import { nodeCrypto } from '@portcullis/cert-core/node';
import { AuditLog } from '../src/audit/log.js';
import type { AuditEvent } from '../src/audit/event.js';
import { createAuthMetrics } from '../src/metrics.js';
import type { AuthMetrics } from '../src/metrics.js';
import type { User } from '../src/identity/store.js';
import { parseRole } from '../src/roles/schema.js';
import { rolesKey } from '../src/store/keys.js';
import { CaKeystore } from '../src/ca/keystore.js';
import { redisRoleSource } from '../src/ca/access.js';
import type { IssuerDeps } from '../src/ca/issuer.js';
import type { CaTrust } from '../src/revocation/krl.js';

export interface CaFixture {
  readonly dir: TempDir;
  server: RedisHandle;
  redis: Redis;
  keystore: CaKeystore;
  readonly users: Map<string, User>;
  readonly events: AuditEvent[];
  readonly metrics: AuthMetrics;
  /** Deps for the issuer (and, spread, for enrollment and revocation). */
  deps(): IssuerDeps;
  trust(): CaTrust;
  addUser(name: string, roles: readonly string[], change?: Partial<User>): void;
  putRole(yaml: string): Promise<void>;
  /** Restarts redis-server on its data directory (AOF keeps the data when `aof` was set). */
  restartRedis(): Promise<void>;
  close(): Promise<void>;
}

export async function caFixture(options: { readonly aof?: boolean } = {}): Promise<CaFixture> {
  const dir = tempDir('portcullis-ca-test-');
  const redisDir = dir.file('redis');
  const { mkdirSync } = await import('node:fs');
  mkdirSync(redisDir);
  const redisOptions = { dir: redisDir, ...(options.aof ? { extraConfig: ['appendonly yes', 'appendfsync always'] } : {}) };
  let server = await startRedis(redisOptions);
  let redis = new Redis(server.url, { maxRetriesPerRequest: 1 });
  const keystore = CaKeystore.open({ stateDir: dir.file('state'), crypto: nodeCrypto });
  const users = new Map<string, User>();
  const events: AuditEvent[] = [];
  const metrics = createAuthMetrics({ defaultMetrics: false });
  const audit = new AuditLog({ sinks: [{ name: 'memory', write: async (e) => void events.push(e) }] });
  const fx: CaFixture = {
    dir,
    server,
    redis,
    keystore,
    users,
    events,
    metrics,
    deps: () => ({
      redis: fx.redis,
      crypto: nodeCrypto,
      signer: (kind) => fx.keystore.signer(kind),
      users: { getUser: async (name) => users.get(name) },
      roles: redisRoleSource(fx.redis),
      audit,
      metrics,
    }),
    trust: () => ({
      user: fx.keystore.keys('user').map((k) => k.publicKey),
      upstream: fx.keystore.keys('upstream').map((k) => k.publicKey),
      host: fx.keystore.keys('host').map((k) => k.publicKey),
    }),
    addUser(name, roles, change = {}) {
      users.set(name, { name, kind: 'local', roles, status: 'active', createdAt: 0, updatedAt: 0, claims: {}, ...change });
    },
    async putRole(yaml) {
      // Stored as written (YAML as JSON, before defaults), validated on the way in.
      const raw = parseYaml(yaml) as unknown;
      const role = parseRole(raw);
      await fx.redis.hset(rolesKey(), role.name, JSON.stringify(raw));
    },
    async restartRedis() {
      fx.redis.disconnect();
      const port = server.port;
      await server.stop();
      server = await startRedis({ ...redisOptions, ...(port === undefined ? {} : { port }) });
      fx.server = server;
      redis = new Redis(server.url, { maxRetriesPerRequest: 1 });
      fx.redis = redis;
    },
    async close() {
      fx.redis.disconnect();
      await fx.server.stop();
      dir.remove();
    },
  };
  return fx;
}

/** A key pair made by ssh-keygen: the private key file and the public key line. */
export async function sshKeygen(dir: TempDir, name: string, type: 'ed25519' | 'ecdsa' | 'rsa' = 'ed25519', bits?: number): Promise<{ path: string; publicLine: string }> {
  const path = dir.file(name);
  await runOk('ssh-keygen', ['-q', '-t', type, ...(bits === undefined ? [] : ['-b', String(bits)]), '-N', '', '-C', name, '-f', path]);
  return { path, publicLine: readFileSync(`${path}.pub`, 'utf8').trim() };
}

/** Every key and its value, to prove a refused request changed nothing. */
export async function snapshot(redis: Redis, ignore: readonly string[] = ['pc:{audit}:events']): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const k of (await redis.keys('*')).sort()) {
    if (ignore.includes(k)) continue;
    const dump = await redis.dumpBuffer(k);
    out.set(k, dump === null ? '' : dump.toString('base64'));
  }
  return out;
}

export const escapeRe = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
