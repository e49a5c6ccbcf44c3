import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { startRedis, tempDir, type RedisHandle, type TempDir } from '@portcullis/harness';
import { isAuthError } from '../src/errors.js';
import type { SsoIdentity } from '../src/identity/claims.js';
import { RedisInviteStore, RedisUserStore } from '../src/identity/redis-store.js';
import {
  UserDirectory,
  checkPasswordPolicy,
  checkRoleNames,
  decideSsoLogin,
  normalizeUsername,
  summarizeUser,
} from '../src/identity/users.js';
import { secretDigest } from '../src/store/keys.js';
import { refused, snapshot } from './support.js';

const FAST = { log2N: 10, r: 8, p: 1 };
const PASSWORD = 'a long enough passphrase';

describe('pure user decisions', () => {
  test('user names are lower-cased and limited to a key- and log-safe alphabet', () => {
    assert.equal(normalizeUsername(' Alice '), 'alice');
    assert.equal(normalizeUsername('alice.smith+ops@example.com'), 'alice.smith+ops@example.com');
    for (const bad of ['', '.alice', 'al ice', 'a{b}', 'a:b', 'a/b', 'x'.repeat(129), 'é']) {
      assert.throws(() => normalizeUsername(bad), (e: unknown) => isAuthError(e, 'ERR_BAD_REQUEST'), bad);
    }
  });

  test('password policy: at least 12 characters (code points), not the user name, bounded', () => {
    checkPasswordPolicy('twelve chars', 'alice');
    assert.throws(() => checkPasswordPolicy('eleven char', 'alice'), /too short: expected at least 12 characters, got 11/);
    // Twelve emoji are twelve characters though 24 UTF-16 units.
    checkPasswordPolicy('\u{1F512}'.repeat(12), 'alice');
    assert.throws(() => checkPasswordPolicy('\u{1F512}'.repeat(11), 'alice'), /got 11/);
    assert.throws(() => checkPasswordPolicy('Alice.Example', 'alice.example'), /must not be the user name/);
    assert.throws(() => checkPasswordPolicy('x'.repeat(1025), 'alice'), /too long/);
    checkPasswordPolicy('abcd', 'alice', { minLength: 4 });
    assert.throws(() => checkPasswordPolicy('abc', 'alice', { minLength: 4 }), /too short/);
  });

  test('role names are checked, de-duplicated and sorted', () => {
    assert.deepEqual(checkRoleNames(['ops', 'dev', 'ops']), ['dev', 'ops']);
    assert.throws(() => checkRoleNames(['Dev']), (e: unknown) => isAuthError(e, 'ERR_BAD_REQUEST'));
  });

  test('an SSO login binds a user name to its subject and never takes over a local user', () => {
    const id: SsoIdentity = { issuer: 'https://idp', subject: 's1', username: 'carol', groups: ['g'], roles: ['dev'], claims: {} };
    const created = decideSsoLogin(undefined, id, 1000);
    assert.equal(created.action, 'create');
    assert.deepEqual(created.user.sso, { issuer: 'https://idp', subject: 's1' });
    const updated = decideSsoLogin(created.user, { ...id, roles: ['ops'] }, 2000);
    assert.deepEqual([updated.action, updated.user.roles, updated.user.createdAt, updated.user.updatedAt], ['update', ['ops'], 1000, 2000]);
    assert.throws(() => decideSsoLogin(created.user, { ...id, subject: 's2' }, 3000), (e: unknown) => isAuthError(e, 'ERR_CONFLICT'));
    assert.throws(() => decideSsoLogin(created.user, { ...id, issuer: 'https://other' }, 3000), (e: unknown) => isAuthError(e, 'ERR_CONFLICT'));
    assert.throws(() => decideSsoLogin({ ...created.user, kind: 'local' }, id, 3000), /local user/);
    assert.throws(() => decideSsoLogin({ ...created.user, status: 'disabled' }, id, 3000), (e: unknown) => isAuthError(e, 'ERR_FORBIDDEN'));
  });

  test('a summary carries no secret', () => {
    const s = summarizeUser({
      name: 'dave', kind: 'local', roles: [], status: 'active', createdAt: 1, updatedAt: 1, claims: {},
      passwordHash: '$scrypt$secret', inviteHash: 'ab', totp: { secret: 'TOTPSECRET', enrolledAt: 1 },
    });
    assert.deepEqual(s, { name: 'dave', kind: 'local', roles: [], status: 'active', createdAt: 1, hasPassword: true, mfa: ['totp'] });
  });
});

describe('users and invites in Redis', () => {
  let dir: TempDir;
  let server: RedisHandle;
  let redis: Redis;
  let clock: number;
  let tokens: string[];
  let users: UserDirectory;

  before(async () => {
    dir = tempDir('portcullis-users-');
    server = await startRedis({ dir: dir.path });
    redis = new Redis(server.url);
  });
  after(async () => {
    redis.disconnect();
    await server.stop();
    dir.remove();
  });
  beforeEach(async () => {
    await redis.flushall();
    // Real time: stored expiries become Redis TTLs, which Redis counts on its own clock.
    clock = Date.now();
    tokens = [];
    users = new UserDirectory({
      users: new RedisUserStore(redis),
      invites: new RedisInviteStore(redis),
      scrypt: FAST,
      inviteTtlMs: 3600_000,
      now: () => clock,
    });
  });

  const invite = async (name: string): Promise<string> => {
    const i = await users.createInvite(name);
    tokens.push(i.token);
    return i.token;
  };

  test('create a local user, invite, set the password, sign in', async () => {
    const created = await users.createLocalUser('Alice', ['dev', 'ops']);
    assert.deepEqual(created, { name: 'alice', kind: 'local', roles: ['dev', 'ops'], status: 'active', createdAt: clock, hasPassword: false, mfa: [] });
    assert.deepEqual(await users.listUsers(), [created]);

    const issued = await users.createInvite('alice');
    assert.match(issued.token, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(issued.expiresAt, clock + 3600_000);
    // Only the SHA-256 of the token is stored: the token appears in no key and no value.
    const dump = JSON.stringify(await snapshot(redis));
    assert.ok(!dump.includes(issued.token));
    const key = `pc:{invite:${secretDigest(issued.token)}}`;
    assert.equal(await redis.hget(key, 'user'), 'alice');
    // Kept until a day past expiry (so a late click says "expired"), then Redis drops it.
    const ttl = await redis.pttl(key);
    assert.ok(ttl > 0 && ttl <= 3600_000 + 24 * 3600_000, String(ttl));

    clock += 60_000;
    const accepted = await users.acceptInvite(issued.token, PASSWORD);
    assert.equal(accepted.hasPassword, true);
    assert.equal((await users.authenticateLocal('ALICE', PASSWORD)).name, 'alice');
    assert.equal(await redis.hget('pc:{user:alice}:record', 'inviteHash'), null);
    assert.equal(await redis.hget(key, 'usedAt'), String(clock));
  });

  test('an invite works once; a second use is refused and changes nothing', async () => {
    await users.createLocalUser('bob', ['dev']);
    const token = await invite('bob');
    await users.acceptInvite(token, PASSWORD);
    const before = await snapshot(redis);
    await refused(users.acceptInvite(token, 'another long passphrase'), 'ERR_CONFLICT', /already used/);
    assert.deepEqual(await snapshot(redis), before);
    await refused(users.authenticateLocal('bob', 'another long passphrase'), 'ERR_UNAUTHENTICATED');
  });

  test('two concurrent uses of one invite: exactly one sets the password', async () => {
    await users.createLocalUser('bob', ['dev']);
    const token = await invite('bob');
    const results = await Promise.allSettled(
      Array.from({ length: 5 }, (_, i) => users.acceptInvite(token, `concurrent passphrase ${i}`)),
    );
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
    for (const r of results) if (r.status === 'rejected') assert.ok(isAuthError(r.reason, 'ERR_CONFLICT'), String(r.reason));
  });

  test('an expired invite is refused with ERR_EXPIRED and changes nothing', async () => {
    await users.createLocalUser('carol', ['dev']);
    const token = await invite('carol');
    const expiry = new Date(clock + 3600_000).toISOString();
    clock += 3600_000;
    const before = await snapshot(redis);
    await refused(users.acceptInvite(token, PASSWORD), 'ERR_EXPIRED', new RegExp(`invite expired at ${expiry}`));
    assert.deepEqual(await snapshot(redis), before);
  });

  test('Redis forgets an invite at its retention time (real TTL)', async () => {
    await users.createLocalUser('erin', ['dev']);
    const token = await invite('erin');
    const key = `pc:{invite:${secretDigest(token)}}`;
    // Pull the expiry to now to watch Redis itself drop the key.
    await redis.pexpire(key, 50);
    await new Promise((r) => setTimeout(r, 120));
    assert.equal(await redis.exists(key), 0);
    await refused(users.acceptInvite(token, PASSWORD), 'ERR_UNAUTHENTICATED', /unknown invite/);
  });

  test('a short password is refused before the invite is touched', async () => {
    await users.createLocalUser('dan', ['dev']);
    const token = await invite('dan');
    const before = await snapshot(redis);
    await refused(users.acceptInvite(token, 'too short'), 'ERR_BAD_REQUEST', /at least 12 characters, got 9/);
    await refused(users.acceptInvite(token, 'dan'.padEnd(12, ' ')), 'ERR_BAD_REQUEST');
    assert.deepEqual(await snapshot(redis), before);
    await users.acceptInvite(token, PASSWORD);
  });

  test('unknown and malformed tokens are refused and change nothing', async () => {
    await users.createLocalUser('dan', ['dev']);
    await invite('dan');
    const before = await snapshot(redis);
    await refused(users.acceptInvite('A'.repeat(43), PASSWORD), 'ERR_UNAUTHENTICATED', /unknown invite/);
    await refused(users.acceptInvite('short', PASSWORD), 'ERR_UNAUTHENTICATED', /malformed/);
    await refused(users.acceptInvite(`${'A'.repeat(42)}}`, PASSWORD), 'ERR_UNAUTHENTICATED', /malformed/);
    assert.deepEqual(await snapshot(redis), before);
  });

  test('a newer invite disowns the older one', async () => {
    await users.createLocalUser('frank', ['dev']);
    const first = await invite('frank');
    const second = await invite('frank');
    const before = await snapshot(redis);
    await refused(users.acceptInvite(first, PASSWORD), 'ERR_CONFLICT', /replaced by a newer invite/);
    assert.deepEqual(await snapshot(redis), before);
    await users.acceptInvite(second, PASSWORD);
  });

  test('reset removes the password at once and issues a link for a new one', async () => {
    await users.createLocalUser('gina', ['dev']);
    await users.acceptInvite(await invite('gina'), PASSWORD);
    const reset = await users.resetPassword('gina');
    assert.equal(reset.purpose, 'reset');
    await refused(users.authenticateLocal('gina', PASSWORD), 'ERR_UNAUTHENTICATED');
    await users.acceptInvite(reset.token, 'a brand new passphrase');
    assert.equal((await users.authenticateLocal('gina', 'a brand new passphrase')).name, 'gina');
  });

  test('sign-in refusals look the same for a wrong password, an unknown user and an SSO user', async () => {
    await users.createLocalUser('hank', ['dev']);
    await users.acceptInvite(await invite('hank'), PASSWORD);
    await users.recordSsoLogin({ issuer: 'https://idp', subject: 's-ivy', username: 'ivy', groups: [], roles: ['dev'], claims: {} });
    const before = await snapshot(redis);
    for (const [name, pw] of [['hank', 'wrong passphrase!'], ['nobody', PASSWORD], ['ivy', PASSWORD], ['bad name!', PASSWORD], ['hank', '']]) {
      await refused(users.authenticateLocal(name!, pw!), 'ERR_UNAUTHENTICATED', /^invalid user name or password$/);
    }
    assert.deepEqual(await snapshot(redis), before);
  });

  test('a disabled user cannot sign in or accept an invite', async () => {
    await users.createLocalUser('jack', ['dev']);
    const token = await invite('jack');
    await users.setStatus('jack', 'disabled');
    const before = await snapshot(redis);
    await refused(users.acceptInvite(token, PASSWORD), 'ERR_FORBIDDEN', /disabled/);
    assert.deepEqual(await snapshot(redis), before);
    await users.setStatus('jack', 'active');
    await users.acceptInvite(token, PASSWORD);
    await users.setStatus('jack', 'disabled');
    await refused(users.authenticateLocal('jack', PASSWORD), 'ERR_FORBIDDEN');
  });

  test('raising the scrypt cost rehashes a stored password at the next sign-in', async () => {
    await users.createLocalUser('kim', ['dev']);
    await users.acceptInvite(await invite('kim'), PASSWORD);
    assert.match((await redis.hget('pc:{user:kim}:record', 'passwordHash'))!, /ln=10,/);
    const stronger = new UserDirectory({ users: new RedisUserStore(redis), invites: new RedisInviteStore(redis), scrypt: { log2N: 11, r: 8, p: 1 } });
    await stronger.authenticateLocal('kim', PASSWORD);
    assert.match((await redis.hget('pc:{user:kim}:record', 'passwordHash'))!, /ln=11,/);
    await stronger.authenticateLocal('kim', PASSWORD);
  });

  test('duplicates, bad names, unknown users and SSO users are refused without writes', async () => {
    await users.createLocalUser('lee', ['dev']);
    await users.recordSsoLogin({ issuer: 'https://idp', subject: 's-mo', username: 'mo', groups: [], roles: ['dev'], claims: {} });
    const before = await snapshot(redis);
    await refused(users.createLocalUser('LEE', ['ops']), 'ERR_CONFLICT', /already exists/);
    await refused(users.createLocalUser('l{ee}', ['ops']), 'ERR_BAD_REQUEST');
    await refused(users.createLocalUser('ned', ['Not A Role']), 'ERR_BAD_REQUEST');
    await refused(users.createInvite('nobody'), 'ERR_NOT_FOUND');
    await refused(users.createInvite('mo'), 'ERR_CONFLICT', /SSO/);
    await refused(users.resetPassword('mo'), 'ERR_CONFLICT');
    await refused(users.setRoles('nobody', ['dev']), 'ERR_NOT_FOUND');
    await refused(users.deleteUser('nobody'), 'ERR_NOT_FOUND');
    assert.deepEqual(await snapshot(redis), before);
  });

  test('SSO logins create, then refresh, the user; a moved username is refused', async () => {
    const id: SsoIdentity = { issuer: 'https://idp', subject: 's-olga', username: 'Olga', groups: ['eng'], roles: ['dev'], claims: { groups: ['eng'], unix_login: 'olga' } };
    const first = await users.recordSsoLogin(id);
    assert.deepEqual([first.name, first.kind, first.roles], ['olga', 'sso', ['dev']]);
    clock += 1000;
    const second = await users.recordSsoLogin({ ...id, roles: ['dev', 'ops'] });
    assert.deepEqual(second.roles, ['dev', 'ops']);
    const stored = await users.getUser('olga');
    assert.deepEqual(stored?.roles, ['dev', 'ops']);
    assert.deepEqual(stored?.claims, { groups: ['eng'], unix_login: 'olga' });
    assert.deepEqual(stored?.sso, { issuer: 'https://idp', subject: 's-olga' });

    await users.createLocalUser('pat', ['dev']);
    const before = await snapshot(redis);
    await refused(users.recordSsoLogin({ ...id, subject: 's-impostor' }), 'ERR_CONFLICT', /another SSO subject/);
    await refused(users.recordSsoLogin({ ...id, subject: 's-pat', username: 'pat' }), 'ERR_CONFLICT', /local user/);
    assert.deepEqual(await snapshot(redis), before);
  });

  test('roles, status and deletion', async () => {
    await users.createLocalUser('quinn', ['dev']);
    await users.setRoles('quinn', ['ops', 'dev', 'ops']);
    await users.setStatus('quinn', 'disabled');
    const u = await users.getUser('quinn');
    assert.deepEqual([u?.roles, u?.status], [['dev', 'ops'], 'disabled']);
    await refused(users.setStatus('quinn', 'gone' as 'active'), 'ERR_BAD_REQUEST');
    await users.deleteUser('quinn');
    assert.equal(await users.getUser('quinn'), undefined);
    assert.deepEqual(await users.listUsers(), []);
    assert.deepEqual(await redis.keys('*'), []);
  });
});
