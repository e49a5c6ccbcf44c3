import assert from 'node:assert/strict';
import { test } from 'node:test';
import calculateSlot from 'cluster-key-slot';
import { isAuthError } from '../src/errors.js';
import * as keys from '../src/store/keys.js';

const H = 'a'.repeat(64); // a SHA-256 hex digest
const H2 = 'b'.repeat(64);

/** Every key function with sample arguments, and the key the table in docs/auth-design.md names. */
const TABLE: ReadonlyArray<readonly [string, () => string, string]> = [
  ['caSerialKey', () => keys.caSerialKey(), 'pc:{ca}:serial'],
  ['caRevokedKey', () => keys.caRevokedKey(), 'pc:{ca}:revoked'],
  ['caKrlKey', () => keys.caKrlKey(), 'pc:{ca}:krl'],
  ['caKrlVersionKey', () => keys.caKrlVersionKey(), 'pc:{ca}:krl:version'],
  ['caTrustKey', () => keys.caTrustKey(), 'pc:{ca}:trust'],
  ['auditEventsKey', () => keys.auditEventsKey(), 'pc:{audit}:events'],
  ['usersIndexKey', () => keys.usersIndexKey(), 'pc:{users}:index'],
  ['userRecordKey', () => keys.userRecordKey('alice'), 'pc:{user:alice}:record'],
  ['userTotpUsedKey', () => keys.userTotpUsedKey('alice'), 'pc:{user:alice}:totp-used'],
  ['userCertsKey', () => keys.userCertsKey('alice'), 'pc:{user:alice}:certs'],
  ['userSessionsKey', () => keys.userSessionsKey('alice'), 'pc:{user:alice}:sessions'],
  ['inviteKey', () => keys.inviteKey(H), `pc:{invite:${H}}`],
  ['sessionKey', () => keys.sessionKey(H), `pc:{session:${H}}`],
  ['oidcStateKey', () => keys.oidcStateKey('st4te-Xy_z'), 'pc:{oidc:st4te-Xy_z}'],
  ['rolesKey', () => keys.rolesKey(), 'pc:{roles}:all'],
  ['joinTokenKey', () => keys.joinTokenKey(H), `pc:{tokens}:${H}`],
  ['hostsIndexKey', () => keys.hostsIndexKey(), 'pc:{hosts}:index'],
  ['hostKey', () => keys.hostKey('web01.example.com'), 'pc:{host:web01.example.com}'],
  ['locksKey', () => keys.locksKey(), 'pc:{locks}:all'],
  ['rateKey', () => keys.rateKey('login-addr', '2001:db8::1'), 'pc:{rate}:login-addr:2001:db8::1'],
];

test('keys: every key function is in the table, and builds exactly the documented key', () => {
  const fns = Object.entries(keys)
    .filter(([n, v]) => typeof v === 'function' && n.endsWith('Key'))
    .map(([n]) => n)
    .sort();
  assert.deepEqual(fns, TABLE.map(([n]) => n).sort(), 'a new key function needs a row here and in docs/auth-design.md');
  for (const [n, fn, expected] of TABLE) assert.equal(fn(), expected, n);
  assert.equal(keys.LOCKS_CHANNEL, 'pc:locks');
});

test('keys: every key starts with pc: and carries a non-empty hash tag', () => {
  for (const [n, fn] of TABLE) {
    const k = fn();
    assert.ok(k.startsWith('pc:{'), `${n}: ${k}`);
    assert.notEqual(keys.hashTag(k), k, `${n}: ${k} has no hash tag`);
    assert.ok(keys.hashTag(k).length > 0);
  }
});

test('keys: keys one operation changes atomically share a slot', () => {
  const groups: Record<string, readonly string[]> = {
    // revoke: add the entry, store the new KRL and bump its version in one MULTI
    revocation: [keys.caSerialKey(), keys.caRevokedKey(), keys.caKrlKey(), keys.caKrlVersionKey()],
    // a rotation step records the new phase and the CA replicas must hold in one MULTI
    rotation: ['pc:{ca}:rotation', keys.caTrustKey()],
    // one user's record, TOTP replay guard, live certificates and login sessions
    user: ['alice', 'bob@example.com', 'Ünïcode', 'x:y'].flatMap((u) => [
      keys.userRecordKey(u),
      keys.userTotpUsedKey(u),
      keys.userCertsKey(u),
      keys.userSessionsKey(u),
    ]),
    tokens: [keys.joinTokenKey(H), keys.joinTokenKey(H2)],
    rate: [keys.rateKey('login-user', 'alice'), keys.rateKey('totp-addr', '10.0.0.1')],
  };
  for (const [name, group] of Object.entries(groups)) {
    if (name === 'user') {
      for (let i = 0; i < group.length; i += 4) assert.ok(keys.sameSlot(...group.slice(i, i + 4)), `${name}: ${group[i]}`);
    } else {
      assert.ok(keys.sameSlot(...group), name);
    }
  }
});

test('keys: slot computation matches the Redis Cluster specification and ioredis', () => {
  // CRC16-XModem check value, and example slots from the Redis Cluster specification.
  assert.equal(keys.crc16(Buffer.from('123456789')), 0x31c3);
  assert.equal(keys.keySlot('{user1000}.following'), keys.keySlot('{user1000}.followers'));
  assert.equal(keys.hashTag('foo{}{bar}'), 'foo{}{bar}');
  assert.equal(keys.hashTag('foo{{bar}}zap'), '{bar');
  assert.equal(keys.hashTag('foo{bar}{zap}'), 'bar');
  // Cross-check with the slot function ioredis routes commands by. Not 'foo{}{bar}': there
  // cluster-key-slot hashes "{bar" where Redis hashes the whole key (store-cluster.test.ts asks
  // a real cluster); our keys never have an empty tag, so the two agree on every key we make.
  const samples = [...TABLE.map(([, fn]) => fn()), 'foo', 'bar', 'foo{{bar}}zap', 'Ünïcode{ü}', ''];
  for (const k of samples) assert.equal(keys.keySlot(k), calculateSlot(k), k);
});

test('keys: names that would break the hash tag are refused; secrets only as digests', () => {
  for (const bad of ['', 'a}b', 'a{b', 'tab\there', 'nl\n', 'x'.repeat(257)]) {
    assert.throws(() => keys.userRecordKey(bad), (e: unknown) => isAuthError(e, 'ERR_BAD_REQUEST') && /^store: user name /.test(e.message));
    assert.throws(() => keys.hostKey(bad), (e: unknown) => isAuthError(e, 'ERR_BAD_REQUEST'));
  }
  // A raw token passed where its digest belongs is a programming error, caught before Redis.
  for (const raw of ['pcs_rawtokenvalue', H.toUpperCase(), H + 'a']) {
    assert.throws(() => keys.sessionKey(raw), /expected a lowercase hex SHA-256 digest/);
    assert.throws(() => keys.joinTokenKey(raw), TypeError);
    assert.throws(() => keys.inviteKey(raw), TypeError);
  }
  assert.equal(keys.secretDigest('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  assert.equal(keys.sessionKey(keys.secretDigest('tok')).length, 'pc:{session:}'.length + 64);
});
