import assert from 'node:assert/strict';
import { test } from 'node:test';
import { hasTool, redisProcessesUnder, run, runOk, startRedis, tempDir, type RedisHandle } from '@portcullis/harness';
import type { Cluster } from 'ioredis';
import * as keys from '../src/store/keys.js';
import { connectRedis } from '@portcullis/store';

const skip = (!hasTool('redis-server') || !hasTool('redis-cli')) && 'redis-server and redis-cli are needed';

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Three masters, no replicas, all slots assigned by `redis-cli --cluster create`. */
async function startCluster(dir: string): Promise<RedisHandle[]> {
  const nodes: RedisHandle[] = [];
  for (let i = 0; i < 3; i++) {
    const d = `${dir}/node${i}`;
    await runOk('mkdir', ['-p', d]);
    nodes.push(
      await startRedis({
        dir: d,
        extraConfig: ['cluster-enabled yes', 'cluster-config-file nodes.conf', 'cluster-node-timeout 2000'],
      }),
    );
  }
  const addrs = nodes.map((n) => `127.0.0.1:${n.port}`);
  await runOk('redis-cli', ['--cluster', 'create', ...addrs, '--cluster-replicas', '0', '--cluster-yes']);
  const deadline = Date.now() + 20_000;
  for (const n of nodes) {
    for (;;) {
      const info = await run('redis-cli', ['-p', String(n.port), 'cluster', 'info']);
      if (/cluster_state:ok/.test(info.stdout)) break;
      if (Date.now() > deadline) throw new Error(`cluster not ok on ${n.port}:\n${info.stdout}`);
      await sleep(100);
    }
  }
  return nodes;
}

test('a real Redis Cluster: slots as Redis computes them, one-slot MULTI per group, CROSSSLOT across', { skip, timeout: 90_000 }, async (t) => {
  const tmp = tempDir();
  t.after(() => tmp.remove());
  const nodes = await startCluster(tmp.path);
  t.after(async () => {
    await Promise.all(nodes.map((n) => n.stop()));
  });
  const first = nodes[0];
  assert.ok(first?.port !== undefined);

  const H = keys.secretDigest('a login session token');
  const sample = [
    keys.caSerialKey(),
    keys.caKrlVersionKey(),
    keys.auditEventsKey(),
    keys.userRecordKey('alice@example.com'),
    keys.sessionKey(H),
    keys.joinTokenKey(H),
    keys.hostKey('web01'),
    keys.rateKey('login-addr', '2001:db8::1'),
    // Redis hashes the whole key when the first {} is empty (ioredis' cluster-key-slot differs).
    'foo{}{bar}',
  ];
  for (const k of sample) {
    const r = await runOk('redis-cli', ['-p', String(first.port), 'cluster', 'keyslot', k]);
    assert.equal(keys.keySlot(k), Number(r.stdout.trim()), k);
  }

  const conn = await connectRedis({ cluster: { nodes: [{ host: '127.0.0.1', port: first.port }] } });
  t.after(() => conn.close());
  assert.equal(conn.kind, 'cluster');
  const c = conn.client as Cluster;

  // A user's keys change together (e.g. record a certificate and a session for alice).
  const u = 'alice';
  const res = await c
    .multi()
    .hset(keys.userRecordKey(u), 'kind', 'local')
    .set(keys.userTotpUsedKey(u), '12345')
    .zadd(keys.userCertsKey(u), 1_900_000_000, '17')
    .sadd(keys.userSessionsKey(u), H)
    .exec();
  assert.ok(res !== null && res.every(([err]) => err === null));

  // Revocation: entry, KRL bytes and version in one transaction.
  const rev = await c.multi().hset(keys.caRevokedKey(), 'serial:17', '{}').set(keys.caKrlKey(), 'krl').incr(keys.caKrlVersionKey()).exec();
  assert.ok(rev !== null && rev.every(([err]) => err === null));

  // A login session's own key and the user's session set live in different slots: a MULTI over
  // both is refused, which is why sessions/ writes them as ordered steps.
  assert.ok(!keys.sameSlot(keys.sessionKey(H), keys.userSessionsKey(u)));
  await assert.rejects(c.multi().set(keys.sessionKey(H), 'x').sadd(keys.userSessionsKey(u), H).exec(), /slot|CROSSSLOT/i);

  // Pub/sub reaches a subscriber made from the cluster connection.
  const sub = await conn.subscriber();
  const got = new Promise<string>((resolve) => sub.on('message', (_ch: string, m: string) => resolve(m)));
  await sub.subscribe(keys.LOCKS_CHANNEL);
  await c.publish(keys.LOCKS_CHANNEL, 'lock:1');
  assert.equal(await got, 'lock:1');

  await conn.close();
  await Promise.all(nodes.map((n) => n.stop()));
  assert.deepEqual(redisProcessesUnder(tmp.path), []);
});
