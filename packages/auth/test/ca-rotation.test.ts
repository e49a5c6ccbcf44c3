// Phased CA rotation: the pure phase machine (order, rollback, refusals), then RotationService
// on a real keystore and a real redis-server, checking what is trusted and what signs at each
// phase, and that a concurrent step is refused rather than interleaved.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { hasTool, startRedis, tempDir } from '@portcullis/harness';
import { formatPrivateKey, generateKey } from '@portcullis/cert-core';
import { nodeCrypto } from '@portcullis/cert-core/node';
import { CaKeystore, type CaKind } from '../src/ca/keystore.js';
import { ROTATION_KEY, RotationService, nextState, planTransition, type RotationState } from '../src/ca/rotation.js';
import { refused } from './support.js';
import { isAuthError } from '../src/errors.js';

const conflicts = (f: () => unknown, re: RegExp): void => {
  assert.throws(f, (e: unknown) => isAuthError(e, 'ERR_CONFLICT') && re.test(e.message));
};

test('phase machine: one phase at a time, keystore steps per phase, rollback before the end only', () => {
  let s: RotationState = { kind: 'user', phase: 'standby' };
  conflicts(() => planTransition(s, { to: 'update_clients' }), /next phase is init, not update_clients/);
  conflicts(() => planTransition(s, { rollback: true }), /no user CA rotation to roll back/);
  conflicts(() => planTransition(s, { to: 'standby' }), /in phase standby already/);

  let t = planTransition(s, { to: 'init' });
  assert.deepEqual(t.steps, [{ op: 'stage' }]);
  s = nextState(s, t, 1000, 'admin', { oldId: 'a'.repeat(16), newId: 'b'.repeat(16) });
  assert.equal(s.phase, 'init');
  assert.equal(s.startedAt, 1000);
  // From init a rollback only drops the new key: the old one never stopped signing.
  assert.deepEqual(planTransition(s, { rollback: true }).steps, [{ op: 'retire', id: 'b'.repeat(16) }]);
  conflicts(() => planTransition(s, { to: 'update_servers' }), /next phase is update_clients, not update_servers \(or --rollback\)/);

  t = planTransition(s, { to: 'update_clients' });
  assert.deepEqual(t.steps, [{ op: 'activate', id: 'b'.repeat(16) }]);
  s = nextState(s, t, 2000, 'admin');
  assert.equal(s.signingSwitchedAt, 2000);
  assert.deepEqual(planTransition(s, { rollback: true }).steps, [
    { op: 'activate', id: 'a'.repeat(16) },
    { op: 'retire', id: 'b'.repeat(16) },
  ]);

  t = planTransition(s, { to: 'update_servers' });
  assert.deepEqual(t.steps, []);
  s = nextState(s, t, 3000, 'admin');
  t = planTransition(s, { to: 'standby' });
  assert.deepEqual(t.steps, [{ op: 'retire', id: 'a'.repeat(16) }]);
  s = nextState(s, t, 4000, 'admin');
  assert.deepEqual(s, { kind: 'user', phase: 'standby', changedAt: 4000, changedBy: 'admin', last: { outcome: 'completed', at: 4000, oldId: 'a'.repeat(16), newId: 'b'.repeat(16) } });
});

test('RotationService on a real keystore and redis: trusted and signing keys at each phase; rollback restores the old key', { skip: hasTool('redis-server') ? false : 'needs redis-server' }, async () => {
  const dir = tempDir('portcullis-rotation-');
  const server = await startRedis({ dir: dir.path });
  const redis = new Redis(server.url);
  try {
    const keystore = CaKeystore.open({ stateDir: join(dir.path, 'state'), crypto: nodeCrypto });
    let now = 1_700_000_000_000;
    const rotation = new RotationService({ redis, keystore, clock: () => now++ });
    const trusted = (kind: CaKind): string[] => keystore.keys(kind).map((k) => k.id).sort();
    const signing = (kind: CaKind): string => keystore.active(kind).id;

    for (const kind of ['user', 'host'] as const) {
      const old = signing(kind);
      const init = await rotation.rotate(kind, { to: 'init' }, { by: 'admin' });
      const fresh = init.state.newId!;
      assert.equal(init.state.oldId, old);
      assert.deepEqual(trusted(kind), [old, fresh].sort());
      assert.equal(signing(kind), old, 'init trusts the new key but does not sign with it');

      await rotation.rotate(kind, { to: 'update_clients' }, { by: 'admin' });
      assert.equal(signing(kind), fresh);
      assert.deepEqual(trusted(kind), [old, fresh].sort());

      await rotation.rotate(kind, { to: 'update_servers' }, { by: 'admin' });
      const back = await rotation.rotate(kind, { rollback: true }, { by: 'admin' });
      assert.equal(back.state.phase, 'standby');
      assert.equal(back.state.last?.outcome, 'rolled_back');
      assert.equal(signing(kind), old, 'rollback: the old key signs again');
      assert.deepEqual(trusted(kind), [old], 'rollback: the new key is no longer trusted');

      // A second rotation, completed this time.
      const second = await rotation.rotate(kind, { to: 'init' }, { by: 'admin' });
      for (const to of ['update_clients', 'update_servers', 'standby'] as const) await rotation.rotate(kind, { to }, { by: 'admin' });
      assert.deepEqual(trusted(kind), [second.state.newId!]);
      assert.equal(signing(kind), second.state.newId);
      assert.equal((await rotation.state(kind)).last?.outcome, 'completed');
    }
    // Rotating to a key that is already listed as standby (imported, or an HSM key auth added).
    const imported = keystore.import('user', formatPrivateKey(generateKey(nodeCrypto, 'ssh-ed25519'), { crypto: nodeCrypto, comment: 'imported' }));
    await refused(rotation.rotate('user', { to: 'init' }, { by: 'admin', useKey: signing('user') }), 'ERR_NOT_FOUND', /no standby user CA key/);
    const adopted = await rotation.rotate('user', { to: 'init' }, { by: 'admin', useKey: imported.id });
    assert.equal(adopted.state.newId, imported.id);
    assert.equal(trusted('user').length, 2, 'nothing generated');
    await rotation.rotate('user', { to: 'update_clients' }, { by: 'admin' });
    assert.equal(signing('user'), imported.id);
    await rotation.rotate('user', { rollback: true }, { by: 'admin' });

    // A second replica on the same state directory: it follows steps made through the first
    // (sync, on auth's timer), and its own step starts from the disk, not from its stale copy.
    const replica = CaKeystore.open({ stateDir: join(dir.path, 'state'), crypto: nodeCrypto });
    const replicaRotation = new RotationService({ redis, keystore: replica, clock: () => now++ });
    await replicaRotation.sync();
    const viaFirst = await rotation.rotate('host', { to: 'init' }, { by: 'admin' });
    await rotation.rotate('host', { to: 'update_clients' }, { by: 'admin' });
    assert.notEqual(replica.active('host').id, viaFirst.state.newId, 'not yet followed');
    assert.equal(await replicaRotation.sync(), true);
    assert.equal(await replicaRotation.sync(), false, 'nothing new');
    assert.equal(replica.active('host').id, viaFirst.state.newId);
    assert.equal(replica.signer('host').publicKey.type, keystore.signer('host').publicKey.type);
    await replicaRotation.rotate('host', { to: 'update_servers' }, { by: 'admin' });
    await replicaRotation.rotate('host', { to: 'standby' }, { by: 'admin' });
    await rotation.sync();
    assert.deepEqual(trusted('host'), [viaFirst.state.newId!]);
    assert.deepEqual(replica.keys('host').map((k) => k.id), [viaFirst.state.newId!]);

    // Both kinds' states sit in one hash-tagged key.
    assert.deepEqual(Object.keys(await redis.hgetall(ROTATION_KEY)).sort(), ['host', 'user']);

    // A step under way elsewhere (its lock held) refuses this one instead of interleaving.
    await redis.set('pc:{ca}:rotation:lock', 'someone-else', 'PX', 5000);
    await refused(rotation.rotate('user', { to: 'init' }, { by: 'admin' }), 'ERR_CONFLICT', /another rotation step/);
    assert.equal((await rotation.state('user')).phase, 'standby');

    // A keystore reopened from disk agrees with what the rotation left.
    const reopened = CaKeystore.open({ stateDir: join(dir.path, 'state'), crypto: nodeCrypto });
    assert.equal(reopened.active('user').id, signing('user'));
    assert.deepEqual(reopened.keys('host').map((k) => k.id), trusted('host'));
  } finally {
    redis.disconnect();
    await server.stop();
    dir.remove();
  }
});
