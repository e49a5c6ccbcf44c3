import assert from 'node:assert/strict';
import { test } from 'node:test';
import { hasTool, redisProcessesUnder, runOk, startRedisCluster, tempDir } from '@portcullis/harness';
import type { Cluster } from 'ioredis';
import * as keys from '../src/store/keys.js';
import { connectRedis } from '@portcullis/store';

const skip = (!hasTool('redis-server') || !hasTool('redis-cli')) && 'redis-server and redis-cli are needed';

test('a real Redis Cluster: slots as Redis computes them, one-slot MULTI per group, CROSSSLOT across', { skip, timeout: 90_000 }, async (t) => {
  const tmp = tempDir();
  t.after(() => tmp.remove());
  // Three masters, no replicas: slots and transactions, not failover (test/e2e/redis-ha.test.ts).
  const cluster = await startRedisCluster({ dir: tmp.path, masters: 3, replicasPerMaster: 0 });
  t.after(() => cluster.stop());
  const first = cluster.nodes[0];
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
  await cluster.stop();
  assert.deepEqual(redisProcessesUnder(tmp.path), []);
});
