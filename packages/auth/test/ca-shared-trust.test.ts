// Replicas with their own copies of the CA directory against one Redis: the pure check, then
// real AuthServices on a real redis-server (a second replica with another or an older CA
// directory refuses, a copied one starts, two first starts race and one wins), and the record
// following a rotation's steps and its rollback.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { hasTool, startRedis, tempDir } from '@portcullis/harness';
import { nodeCrypto } from '@portcullis/cert-core/node';
import { CaKeystore } from '../src/ca/keystore.js';
import { RotationService } from '../src/ca/rotation.js';
import { checkSharedTrust, peekCaDirectory, readTrustRecords, trustRecordOf, type CaTrustRecord } from '../src/ca/shared-trust.js';
import { isAuthError } from '../src/errors.js';
import { auditMark, auditSince, startTestAuth } from './http-helpers.js';

const skip = hasTool('redis-server') ? false : 'needs redis-server';

const ref = (c: string): { id: string; fingerprint: string } => ({ id: c.repeat(16), fingerprint: `SHA256:${c}` });
const rec = (active: string, ...others: string[]): CaTrustRecord => ({ kind: 'user', active: ref(active), trusted: [ref(active), ...others.map(ref)] });

test('checkSharedTrust: nothing recorded passes; missing or another active key refuses unless both are the rotation pair', () => {
  const standby = { phase: 'standby' };
  assert.deepEqual(checkSharedTrust('user', undefined, undefined, standby), { ok: true });
  assert.deepEqual(checkSharedTrust('user', rec('a'), rec('a', 'b'), standby), { ok: true });
  const missing = checkSharedTrust('user', undefined, rec('a'), standby);
  assert.ok(!missing.ok && missing.reason === 'missing');
  assert.match(missing.message, /no user CA; copy the CA directory \(<state_dir>\/ca\) from a running replica/);
  assert.match(missing.message, /aaaaaaaaaaaaaaaa \(SHA256:a\)/);
  const other = checkSharedTrust('user', rec('b'), rec('a'), standby);
  assert.ok(!other.ok && other.reason === 'different');
  assert.match(other.message, /active user CA is bbbbbbbbbbbbbbbb \(SHA256:b\).*other replicas' is aaaaaaaaaaaaaaaa \(SHA256:a\).*no rotation is in progress/);
  // Mid-rotation (a step writes the keystore, then the record) either key of the pair may be active.
  const rotating = { phase: 'update_clients', oldId: 'a'.repeat(16), newId: 'b'.repeat(16) };
  assert.deepEqual(checkSharedTrust('user', rec('b', 'a'), rec('a', 'b'), rotating), { ok: true });
  assert.deepEqual(checkSharedTrust('user', rec('a', 'b'), rec('b', 'a'), rotating), { ok: true });
  const outside = checkSharedTrust('user', rec('c'), rec('a', 'b'), rotating);
  assert.ok(!outside.ok && /rotation in phase update_clients is between a{16} and b{16}/.test(outside.message));
});

test('replicas against one redis: another CA directory refuses (audited), a copy starts, an older copy without the upstream CA refuses', { skip }, async () => {
  const dir = tempDir('portcullis-shared-trust-');
  const server = await startRedis({ dir: dir.path });
  const redis = new Redis(server.url);
  try {
    const first = await startTestAuth({ stateDir: dir.file('auth1'), redisUrl: server.url });
    const ks1 = first.service.context.keystore;
    await first.stop();
    const recorded = await readTrustRecords(redis);
    for (const kind of ['user', 'upstream', 'host'] as const) assert.deepEqual(recorded[kind], trustRecordOf(ks1, kind));

    const mark = await auditMark(redis);

    await assert.rejects(startTestAuth({ stateDir: dir.file('auth2'), redisUrl: server.url }), (e: unknown) => {
      assert.ok(isAuthError(e, 'ERR_CONFIG'), String(e));
      assert.match(e.message, /other replicas' user CA is active/);
      assert.ok(e.message.includes(ks1.active('user').fingerprint), e.message);
      assert.match(e.message, /copy the CA directory/);
      return true;
    });
    const refusal = (await auditSince(redis, mark)).find((ev) => ev.name === 'ca.trust_mismatch');
    assert.ok(refusal, 'the refusal is audited');
    assert.equal(refusal.code, 'PC2012E');
    assert.equal(refusal.fields['kind'], 'user');
    assert.equal(refusal.fields['recordedActive'], ks1.active('user').fingerprint);
    // Refused before CaKeystore.open: no CA of its own was made.
    assert.deepEqual(peekCaDirectory(dir.file('auth2'), nodeCrypto), {});

    cpSync(dir.file('auth1/ca'), dir.file('auth2/ca'), { recursive: true });

    const second = await startTestAuth({ stateDir: dir.file('auth2'), redisUrl: server.url });
    assert.equal(second.service.context.keystore.active('upstream').id, ks1.active('upstream').id);
    await second.stop();

    // The upgrade case: a copy made before the upstream CA existed.
    mkdirSync(dir.file('auth3'), { mode: 0o700 });
    cpSync(dir.file('auth1/ca'), dir.file('auth3/ca'), { recursive: true });
    const index = join(dir.file('auth3/ca'), 'index.json');
    const parsed = JSON.parse(readFileSync(index, 'utf8')) as { keys: { kind: string }[] };
    writeFileSync(index, JSON.stringify({ ...parsed, keys: parsed.keys.filter((k) => k.kind !== 'upstream') }), { mode: 0o600 });
    await assert.rejects(startTestAuth({ stateDir: dir.file('auth3'), redisUrl: server.url }), (e: unknown) => isAuthError(e, 'ERR_CONFIG') && /this replica's CA directory has no upstream CA/.test(e.message) && e.message.includes(ks1.active('upstream').fingerprint));
    assert.equal(peekCaDirectory(dir.file('auth3'), nodeCrypto).upstream, undefined, 'no upstream CA was created');

    // Another signing key while no rotation runs (a directory changed by hand) refuses too.
    const hand = CaKeystore.open({ stateDir: dir.file('auth2'), crypto: nodeCrypto });
    hand.activate(hand.stage('host').id);
    await assert.rejects(startTestAuth({ stateDir: dir.file('auth2'), redisUrl: server.url }), (e: unknown) => isAuthError(e, 'ERR_CONFIG') && /active host CA is .* no rotation is in progress/.test(e.message));
  } finally {
    redis.disconnect();
    await server.stop();
    dir.remove();
  }
});

test('two replicas making their CAs at the same first start: exactly one wins, the other refuses', { skip }, async () => {
  const dir = tempDir('portcullis-shared-trust-race-');
  const server = await startRedis({ dir: dir.path });
  try {
    const results = await Promise.allSettled([startTestAuth({ stateDir: dir.file('a'), redisUrl: server.url }), startTestAuth({ stateDir: dir.file('b'), redisUrl: server.url })]);
    const won = results.filter((r) => r.status === 'fulfilled');
    const lost = results.filter((r) => r.status === 'rejected');
    assert.equal(won.length, 1, JSON.stringify(results.map((r) => r.status)));
    assert.equal(lost.length, 1);
    assert.ok(isAuthError(lost[0]!.reason, 'ERR_CONFIG') && /copy the CA directory/.test(lost[0]!.reason.message), String(lost[0]!.reason));
    for (const r of won) await r.value.stop();
  } finally {
    await server.stop();
    dir.remove();
  }
});

test('a rotation moves the record with each step; mid-rotation and after it a copied directory still starts', { skip }, async () => {
  const dir = tempDir('portcullis-shared-trust-rotation-');
  const server = await startRedis({ dir: dir.path });
  const redis = new Redis(server.url);
  try {
    const auth = await startTestAuth({ stateDir: dir.file('auth1'), redisUrl: server.url });
    const keystore = auth.service.context.keystore;
    await auth.stop();
    const rotation = new RotationService({ redis, keystore, clock: Date.now });
    const recorded = async (): Promise<CaTrustRecord | undefined> => (await readTrustRecords(redis)).user;
    const startCopy = async (name: string): Promise<void> => {
      cpSync(dir.file('auth1/ca'), dir.file(`${name}/ca`), { recursive: true });
      const r = await startTestAuth({ stateDir: dir.file(name), redisUrl: server.url });
      await r.stop();
    };
    const old = keystore.active('user').id;
    cpSync(dir.file('auth1/ca'), dir.file('before/ca'), { recursive: true });
    await rotation.rotate('user', { to: 'init' }, { by: 'test' });
    assert.deepEqual(await recorded(), trustRecordOf(keystore, 'user'));
    assert.equal((await recorded())?.trusted.length, 2);
    await rotation.rotate('user', { to: 'update_clients' }, { by: 'test' });
    const next = keystore.active('user').id;
    assert.notEqual(next, old);
    assert.equal((await recorded())?.active.id, next);
    await startCopy('mid');
    // A copy from before the rotation signs with the old key: tolerated while the rotation runs.
    await (await startTestAuth({ stateDir: dir.file('before'), redisUrl: server.url })).stop();
    // A replica whose directory was written but whose record was not (a step cut short) still starts.
    await redis.hset('pc:{ca}:trust', 'user', JSON.stringify({ ...(await recorded()), active: (await recorded())!.trusted.find((k) => k.id === old) }));
    await startCopy('window');
    await rotation.rotate('user', { to: 'update_servers' }, { by: 'test' });
    await rotation.rotate('user', { to: 'standby' }, { by: 'test' });
    assert.deepEqual(await recorded(), trustRecordOf(keystore, 'user'));
    assert.deepEqual((await recorded())?.trusted.map((k) => k.id), [next]);
    await startCopy('after');
    // Once the rotation is over, the pre-rotation copy is refused.
    await assert.rejects(startTestAuth({ stateDir: dir.file('before'), redisUrl: server.url }), (e: unknown) => isAuthError(e, 'ERR_CONFIG') && /active user CA is .* no rotation is in progress/.test(e.message));

    // Rollback puts the record back on the old key.
    await rotation.rotate('user', { to: 'init' }, { by: 'test' });
    await rotation.rotate('user', { to: 'update_clients' }, { by: 'test' });
    await rotation.rotate('user', { rollback: true }, { by: 'test' });
    assert.equal((await recorded())?.active.id, next);
    assert.deepEqual(await recorded(), trustRecordOf(keystore, 'user'));
  } finally {
    redis.disconnect();
    await server.stop();
    dir.remove();
  }
});
