// Issue 8: auth on Redis Sentinel and on Redis Cluster. The real auth service issues
// certificates through its HTTP API on each topology; certificate serials stay unique while
// the master holding the serial counter is SIGKILLed and a replica takes over; and notices
// published on one cluster node reach subscribers on every other.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import { AuthClient, AuthService, LOCKS_CHANNEL, caSerialKey, nextSerial, parseAuthConfig, parseNotice, publishNotice } from '@portcullis/auth';
import type { ApiResponse, AuthServiceInfo } from '@portcullis/auth';
import { hasTool, runOk, startRedisCluster, startRedisSentinelGroup, tempDir } from '@portcullis/harness';
import type { TempDir } from '@portcullis/harness';
import { connectRedis, type RedisConfig } from '@portcullis/store';
import { ROLES } from './support/portcullis.js';

const missing = ['ssh-keygen', 'redis-server', 'redis-cli'].filter((t) => !hasTool(t));
const skip = missing.length > 0 ? `needs ${missing.join(', ')}` : false;
const PASSWORD = 'correct horse battery staple';

function ok<T>(r: ApiResponse<T>, what: string): T {
  if (r.status !== 200) throw new Error(`${what}: ${r.status} ${r.bytes.toString('utf8').slice(0, 300)}`);
  return r.body;
}

type Undo = (() => Promise<void> | void)[];

function cleanup(t: { after(f: () => Promise<void>): void }): Undo {
  const undo: Undo = [];
  t.after(async () => {
    for (const u of undo.reverse()) await Promise.resolve(u()).catch(() => {});
  });
  return undo;
}

interface Topology {
  readonly config: RedisConfig;
  /** SIGKILLs the master holding `key`; resolves once a replica serves it. */
  failover(key: string): Promise<void>;
  stop(): Promise<void>;
}

async function topology(kind: 'cluster' | 'sentinel', dir: TempDir): Promise<Topology> {
  if (kind === 'cluster') {
    const c = await startRedisCluster({ dir: dir.path, masters: 3, replicasPerMaster: 1 });
    return {
      config: c.config,
      async failover(key) {
        const m = await c.masterOf(await c.keySlot(key));
        m.kill();
        await c.waitHealthy(45_000);
      },
      stop: () => c.stop(),
    };
  }
  const g = await startRedisSentinelGroup({ dir: dir.path, replicas: 2, sentinels: 3 });
  return {
    config: g.config,
    async failover() {
      const m = await g.master();
      m.kill();
      await g.waitMaster({ notPort: m.port, timeoutMs: 45_000 });
    },
    stop: () => g.stop(),
  };
}

/** The bootstrap admin, a user with the dev role, and a certificate minted as pcsh would. */
async function issueCertificate(info: AuthServiceInfo, dir: TempDir, name: string, first: boolean): Promise<string> {
  const client = new AuthClient({ url: info.url, fingerprint: info.fingerprint });
  const api = <T>(method: string, path: string, o: { token?: string; json?: unknown } = {}): Promise<ApiResponse<T>> =>
    client.request<T>(method, path, { ...(o.token === undefined ? {} : { token: o.token }), ...(o.json === undefined ? {} : { json: o.json }) });
  const invite = info.bootstrapInvite;
  if (invite === undefined) throw new Error('auth made no bootstrap invite');
  if (first) ok(await api('POST', '/v1/invites/accept', { json: { token: invite.token, password: PASSWORD } }), 'accept the admin invite');
  const admin = ok(await api<{ token: string }>('POST', '/v1/login/password', { json: { username: 'admin', password: PASSWORD } }), 'admin login').token;
  const created = ok(await api<{ invite: { token: string } }>('POST', '/v1/admin/users', { token: admin, json: { name, roles: ['dev'] } }), 'create user');
  ok(await api('POST', '/v1/invites/accept', { json: { token: created.invite.token, password: PASSWORD } }), 'accept the user invite');
  const token = ok(await api<{ token: string }>('POST', '/v1/login/password', { json: { username: name, password: PASSWORD } }), 'user login').token;
  const key = dir.file(`${name}-key`);
  await runOk('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', key]);
  const cert = ok(
    await api<{ certificate: string; serial: string }>('POST', '/v1/certs/user', { token, json: { public_key: readFileSync(`${key}.pub`, 'utf8').trim() } }),
    'mint a certificate',
  );
  assert.match(cert.certificate, /^ssh-ed25519-cert-v01@openssh.com /);
  return cert.serial;
}

for (const kind of ['cluster', 'sentinel'] as const) {
  describe(`auth on Redis ${kind}`, { skip, timeout: 200_000 }, () => {
    it('issues certificates, and serials stay unique while the counter\'s master dies and a replica takes over', { timeout: 90_000 }, async (t) => {
      const undo = cleanup(t);
      const dir = tempDir(`portcullis-ha-auth-${kind}-`);
      undo.push(() => dir.remove());
      const topo = await topology(kind, dir);
      undo.push(() => topo.stop());

      const config = parseAuthConfig({ state_dir: dir.file('auth'), listen: '127.0.0.1:0', redis: topo.config, audit: { sink: 'none' }, roles: ROLES }, { env: {} });
      const auth = new AuthService({ config, log: () => {}, scrypt: { log2N: 10, r: 8, p: 1 }, defaultMetrics: false });
      const info = await auth.start();
      undo.push(() => auth.stop());
      const first = BigInt(await issueCertificate(info, dir, 'alice', true));

      // Serials drawn as fast as four callers can while the master holding the counter dies.
      const conn = await connectRedis(topo.config, { maxRetriesPerRequest: 1, onClientError: () => {} });
      undo.push(() => conn.close());
      const serials: bigint[] = [first];
      const failures: string[] = [];
      let drawing = true;
      const drawers = Array.from({ length: 4 }, async () => {
        while (drawing) {
          try {
            serials.push(await nextSerial(conn.client, Date.now()));
          } catch (e) {
            failures.push((e as Error).message);
            await new Promise((r) => setTimeout(r, 50));
          }
        }
      });
      while (serials.length < 200) await new Promise((r) => setTimeout(r, 10));
      const beforeKill = serials.length;
      await topo.failover(caSerialKey());
      const afterFailover = serials.length;
      // Wait for draws on the new master, not for time.
      const deadline = Date.now() + 30_000;
      while (serials.length < afterFailover + 200 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      drawing = false;
      await Promise.all(drawers);
      assert.ok(serials.length >= afterFailover + 200, `the new master served serials (${serials.length - afterFailover} after failover; failures: ${failures.slice(-3).join(' | ')})`);
      assert.ok(afterFailover >= beforeKill);
      assert.ok(failures.length > 0, 'the kill was felt by the callers (some draws failed during the failover)');
      const unique = new Set(serials.map(String));
      assert.equal(unique.size, serials.length, 'no serial was handed out twice');

      // The service itself heals: a certificate after the failover has a serial above all of them.
      const later = BigInt(await issueCertificate(info, dir, 'bob', false));
      assert.ok(serials.every((s) => s < later));
    });

    if (kind === 'cluster') {
      it('a notice published on any cluster node reaches a subscriber made by connectRedis', { timeout: 60_000 }, async (t) => {
        const undo = cleanup(t);
        const dir = tempDir('portcullis-ha-pubsub-');
        undo.push(() => dir.remove());
        const c = await startRedisCluster({ dir: dir.path, masters: 3, replicasPerMaster: 1 });
        undo.push(() => c.stop());
        // The subscriber's client knows one node only; publishers talk to each node directly.
        const first = c.nodes[0]!;
        const conn = await connectRedis({ cluster: { nodes: [{ host: '127.0.0.1', port: first.port }] } });
        undo.push(() => conn.close());
        const sub = await conn.subscriber();
        const got: string[] = [];
        sub.on('message', (channel: string, m: string) => {
          if (channel === LOCKS_CHANNEL) got.push(m);
        });
        await sub.subscribe(LOCKS_CHANNEL);
        for (const node of c.nodes) {
          const direct = new Redis({ host: '127.0.0.1', port: node.port, lazyConnect: true });
          undo.push(() => void direct.disconnect());
          await direct.connect();
          await publishNotice(direct, { kind: 'revocation', krlVersion: node.port, serials: ['1'], keyIds: [], keys: [] });
        }
        // And through the cluster client, as auth's revocation code publishes.
        await publishNotice(conn.client, { kind: 'revocation', krlVersion: 1, serials: ['2'], keyIds: [], keys: [] });
        const want = [...c.nodes.map((n) => n.port), 1].sort();
        const deadline = Date.now() + 15_000;
        while (got.length < want.length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
        const versions = got.map((m) => {
          const n = parseNotice(m);
          assert.equal(n?.kind, 'revocation');
          return n.kind === 'revocation' ? n.krlVersion : -1;
        });
        assert.deepEqual(versions.sort(), want);
      });
    }
  });
}
