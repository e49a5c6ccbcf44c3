// Issue 8: the proxy records to Redis Cluster and to Redis Sentinel, and a session survives the
// death of the master holding its recording. Real redis-server, redis-sentinel, sshd and ssh;
// the master is SIGKILLed (a crash, not a polite shutdown) while the client is typing.
//
// best effort: the session goes on, the recorder spools while the slot has no master, and once
// the replica took over and the spool drained, the recording holds every byte the client saw.
// strict: the session ends with a message (not a hang), and the proxy serves new sessions after
// the failover.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { SSHD_PATH, hasTool, startRedisCluster, startRedisSentinelGroup, tempDir } from '@portcullis/harness';
import type { RedisCluster, RedisSentinelGroup, TempDir } from '@portcullis/harness';
import { readRecordingEvents, readRecordingMeta } from '@portcullis/recording';
import { connectRedis, type RedisConnection } from '@portcullis/store';
import { exited, startSystem } from './support/portcullis.js';
import type { Identity, System } from './support/portcullis.js';
import { startProxyServiceFor, type ProxyServiceHandle } from './support/proxy-service.js';

const missing = [...['ssh', 'redis-server', 'redis-cli'].filter((t) => !hasTool(t)), ...(existsSync(SSHD_PATH) ? [] : [SSHD_PATH])];
const skip = missing.length > 0 ? `needs ${missing.join(', ')}` : false;

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 20_000, detail: () => string = () => ''): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${detail()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Every byte of the session's stdout as the recording holds it; throws on a gap. */
async function recordedStdout(redis: RedisConnection['client'], id: string): Promise<string> {
  const out: Buffer[] = [];
  for await (const item of readRecordingEvents(redis, id)) {
    if (item.kind === 'gap') throw new Error(`recording ${id} has a gap: events ${item.from}-${item.to} are missing`);
    if (item.kind === 'event' && item.event.type === 'output' && item.event.stream === 0) out.push(Buffer.from(item.event.data));
  }
  return Buffer.concat(out).toString('utf8');
}

interface Topology {
  readonly config: unknown;
  /** SIGKILLs the master that holds this recording's keys; resolves with its port. */
  killMasterOf(recordingId: string): Promise<number>;
  /** Resolves once a replica has taken over and Redis serves writes again. */
  healed(killedPort: number): Promise<void>;
  stop(): Promise<void>;
}

async function clusterTopology(dir: string): Promise<Topology> {
  const c: RedisCluster = await startRedisCluster({ dir, masters: 3, replicasPerMaster: 1 });
  return {
    config: c.config,
    async killMasterOf(id) {
      const master = await c.masterOf(await c.keySlot(`pc:{rec:${id}}:events`));
      master.kill();
      return master.port;
    },
    healed: () => c.waitHealthy(45_000),
    stop: () => c.stop(),
  };
}

async function sentinelTopology(dir: string): Promise<Topology> {
  const g: RedisSentinelGroup = await startRedisSentinelGroup({ dir, replicas: 2, sentinels: 3 });
  return {
    config: g.config,
    async killMasterOf() {
      const master = await g.master();
      master.kill();
      return master.port;
    },
    healed: async (killed) => void (await g.waitMaster({ notPort: killed, minReplicas: 1, timeoutMs: 45_000 })),
    stop: () => g.stop(),
  };
}

/**
 * An interactive `cat` through the proxy: the test types a numbered line every 20 ms and the
 * target echoes it, so output keeps flowing across the failover and each line proves the
 * session still works.
 */
function typist(sys: System, as: Identity, proxy: ProxyServiceHandle) {
  const port = proxy.port;
  const ssh = sys.spawnSsh({ user: 'root%web01', as, command: 'cat', port });
  let n = 0;
  let timer: NodeJS.Timeout | undefined;
  const code = exited(ssh);
  return {
    ssh,
    code,
    get typed() {
      return n;
    },
    start(): void {
      timer = setInterval(() => {
        if (ssh.stdin?.writable === true) ssh.stdin.write(`line ${++n} ${'x'.repeat(60)}\n`);
      }, 20);
    },
    /** Waits until the target echoed line `k`. */
    echoed: (k: number, timeoutMs = 20_000) =>
      until(`line ${k} to come back`, async () => (ssh.output().stdout.includes(`line ${k} `) ? true : undefined), timeoutMs, () =>
        [`ssh stderr: ${ssh.output().stderr}`, `stdout bytes: ${ssh.output().stdout.length}`, `audit: ${proxy.audit.map((e) => e.name).join(', ')}`, ...proxy.logs].join('\n'),
      ),
    stopTyping(): void {
      clearInterval(timer);
    },
    end(): void {
      clearInterval(timer);
      ssh.stdin?.end();
    },
  };
}

for (const kind of ['cluster', 'sentinel'] as const) {
  describe(`proxy recording on Redis ${kind}: the master dies mid-session`, { skip, timeout: 240_000 }, () => {
    let sys: System;
    let alice: Identity;
    let bob: Identity;

    before(async () => {
      sys = await startSystem();
      await sys.admin('PUT', '/v1/admin/roles/audited', {
        yaml: 'kind: role\nname: audited\nspec:\n  allow: { logins: [root], host_labels: { "*": "*" } }\n  options: { max_cert_ttl: 10m, record_session: strict }\n',
      });
      alice = await (await sys.user('alice', ['dev'])).mint();
      bob = await (await sys.user('bob', ['audited'])).mint();
    });
    after(async () => {
      await sys?.stop();
    });

    const setUp = async (t: { after(f: () => Promise<void>): void }, name: string) => {
      // One after hook that undoes in reverse: clients before the servers they talk to.
      const undo: (() => Promise<void> | void)[] = [];
      t.after(async () => {
        for (const u of undo.reverse()) await Promise.resolve(u()).catch(() => {});
      });
      const dir: TempDir = tempDir(`portcullis-ha-${kind}-`);
      undo.push(() => dir.remove());
      const topo = kind === 'cluster' ? await clusterTopology(dir.path) : await sentinelTopology(dir.path);
      undo.push(() => topo.stop());
      const proxy: ProxyServiceHandle = await startProxyServiceFor(sys, { name, redis: topo.config });
      undo.push(() => proxy.stop());
      const reader = await connectRedis(topo.config as Parameters<typeof connectRedis>[0], { maxRetriesPerRequest: 20, onClientError: () => {} });
      undo.push(() => reader.close());
      return { topo, proxy, reader, undo };
    };

    it('best effort: the session goes on, and after failover and the spool drain the recording has every byte the client saw', { timeout: 90_000 }, async (t) => {
      const { topo, proxy, reader, undo } = await setUp(t, `${kind}-best-effort`);
      const s = typist(sys, alice, proxy);
      undo.push(() => void s.ssh.kill('SIGKILL'));
      s.start();
      await s.echoed(10);
      const start = await until('the session.start audit event', async () => proxy.audit.find((e) => e.name === 'session.start'));
      const id = String(start.fields['sessionId']);
      await until('the recording to be stored', async () => ((await readRecordingMeta(reader.client, id)) === undefined ? undefined : true));

      const before = s.typed;
      const killed = await topo.killMasterOf(id);
      // The session keeps working while the recording's master is gone...
      await s.echoed(before + 25);
      await topo.healed(killed);
      // ...and after a replica took over.
      const after = s.typed;
      await s.echoed(after + 25, 30_000);
      s.end();
      assert.equal(await s.code, 0, s.ssh.output().stderr);
      const seen = s.ssh.output().stdout;
      assert.ok(seen.split('\n').length > after + 25);

      const meta = await until(
        'the recording to end in Redis',
        async () => {
          const m = await readRecordingMeta(reader.client, id);
          return m?.state === 'ended' ? m : undefined;
        },
        45_000,
        () => proxy.logs.join('\n'),
      );
      assert.equal(meta.mode, 'best-effort');
      // Drained: no spool file left behind, and every byte in the stream.
      await until('the spool to drain', async () => (readdirSync(join(proxy.stateDir, 'recordings')).length === 0 ? true : undefined), 30_000);
      const recorded = await recordedStdout(reader.client, id);
      assert.equal(recorded.length, seen.length, `recorded ${recorded.length} bytes, the client saw ${seen.length}\n${proxy.logs.join('\n')}`);
      assert.equal(recorded, seen);
      assert.ok(
        proxy.audit.some((e) => e.name === 'session.recording' && e.fields['action'] === 'spooling') || proxy.logs.some((l) => /spool/.test(l)),
        'the failover was noticed (a write failed and was spooled)',
      );
    });

    it('strict: the session ends with a message when its recording cannot be stored, and the proxy serves new sessions after failover', { timeout: 90_000 }, async (t) => {
      const { topo, proxy, reader, undo } = await setUp(t, `${kind}-strict`);
      const s = typist(sys, bob, proxy);
      undo.push(() => void s.ssh.kill('SIGKILL'));
      s.start();
      await s.echoed(10);
      const start = await until('the session.start audit event', async () => proxy.audit.find((e) => e.name === 'session.start'));
      const id = String(start.fields['sessionId']);
      const meta = await until('the recording to be stored', async () => readRecordingMeta(reader.client, id));
      assert.equal(meta.mode, 'strict');

      const killed = await topo.killMasterOf(id);
      // Not a hang: the client is told and the connection ends while the typist keeps typing.
      const code = await Promise.race([s.code, new Promise<'hang'>((r) => setTimeout(() => r('hang'), 30_000).unref())]);
      s.stopTyping();
      assert.notEqual(code, 'hang', `the strict session did not end:\n${proxy.logs.join('\n')}`);
      assert.notEqual(code, 0);
      assert.match(s.ssh.output().stderr, /record/i, 'the client is told why');
      t.diagnostic(`the client was told: ${s.ssh.output().stderr.trim()}`);

      await topo.healed(killed);
      const again = await until(
        'a new strict session through the same proxy',
        async () => {
          const r = await sys.ssh({ user: 'root%web01', as: bob, command: 'echo after-failover', port: proxy.port });
          return r.code === 0 && r.stdout.includes('after-failover') ? r : undefined;
        },
        30_000,
        () => proxy.logs.join('\n'),
      );
      assert.equal(again.code, 0);
    });
  });
}
