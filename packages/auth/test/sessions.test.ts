// Login sessions against a real redis-server: the token is returned once and stored only as its
// SHA-256, lives as long as the policy says, and can be revoked one by one or all at once.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Redis } from 'ioredis';
import { startRedis, tempDir } from '@portcullis/harness';
import type { RedisHandle, TempDir } from '@portcullis/harness';
import { isAuthError } from '../src/errors.js';
import { secretDigest, sessionKey, userSessionsKey } from '../src/store/keys.js';
import {
  authenticateLoginSession,
  createLoginSession,
  getLoginSession,
  listUserSessions,
  revokeLoginSession,
  revokeUserSessions,
} from '../src/sessions/login-session.js';
import type { NewLoginSession } from '../src/sessions/login-session.js';

const NOW = 1_800_000_000_000;

/** Every key and value in the database, as text, to search for a secret. */
async function dumpAll(redis: Redis): Promise<string> {
  const keys = await redis.keys('*');
  const parts: string[] = [];
  for (const k of keys) {
    const type = await redis.type(k);
    parts.push(k);
    if (type === 'hash') parts.push(JSON.stringify(await redis.hgetall(k)));
    else if (type === 'set') parts.push(JSON.stringify(await redis.smembers(k)));
    else if (type === 'string') parts.push(String(await redis.get(k)));
  }
  return parts.join('\n');
}

describe('login sessions', () => {
  let dir: TempDir;
  let server: RedisHandle;
  let redis: Redis;
  const alice: NewLoginSession = { user: 'alice', method: 'oidc', mfaVerified: true, mfaMethod: 'totp', ttlSeconds: 3600, sourceAddress: '192.0.2.1' };

  before(async () => {
    dir = tempDir('portcullis-sessions-');
    server = await startRedis({ dir: dir.path });
    redis = new Redis(server.url, { lazyConnect: false, maxRetriesPerRequest: 1 });
  });

  after(async () => {
    redis.disconnect();
    await server.stop();
    dir.remove();
  });

  it('returns a 32-byte base64url token once and stores only its SHA-256', async () => {
    const { token, session } = await createLoginSession(redis, alice, NOW);
    assert.match(token, /^[A-Za-z0-9_-]{43}$/);
    assert.equal(Buffer.from(token, 'base64url').length, 32);
    assert.equal(session.id, secretDigest(token));
    const everything = await dumpAll(redis);
    assert.ok(!everything.includes(token), 'the token itself is in Redis');
    assert.ok(everything.includes(session.id));
    assert.deepEqual(await getLoginSession(redis, session.id), session);
    assert.equal(session.expiresAt, NOW + 3600_000);
  });

  it('authenticates a token, and binds it to the user with its MFA state and method', async () => {
    const { token } = await createLoginSession(redis, alice, NOW);
    const s = await authenticateLoginSession(redis, token, NOW + 1000);
    assert.equal(s.user, 'alice');
    assert.equal(s.method, 'oidc');
    assert.equal(s.mfaVerified, true);
    assert.equal(s.mfaMethod, 'totp');
    assert.equal(s.sourceAddress, '192.0.2.1');
  });

  it('expires: Redis TTL from the policy, and our own clock as a second check', async () => {
    const { token, session } = await createLoginSession(redis, { ...alice, ttlSeconds: 120 }, Date.now());
    const pttl = await redis.pttl(sessionKey(session.id));
    assert.ok(pttl > 110_000 && pttl <= 120_000, `PTTL ${pttl}`);
    await assert.rejects(authenticateLoginSession(redis, token, session.expiresAt), (e) => isAuthError(e, 'ERR_EXPIRED'));
  });

  it('refuses unknown, malformed and revoked tokens without telling them apart beyond shape', async () => {
    await assert.rejects(authenticateLoginSession(redis, 'x'.repeat(43), NOW), (e) => isAuthError(e, 'ERR_UNAUTHENTICATED') && /unknown, expired or revoked/.test(e.message));
    await assert.rejects(authenticateLoginSession(redis, 'short', NOW), (e) => isAuthError(e, 'ERR_UNAUTHENTICATED'));
    await assert.rejects(authenticateLoginSession(redis, 42 as unknown as string, NOW), (e) => isAuthError(e, 'ERR_UNAUTHENTICATED'));
    const { token, session } = await createLoginSession(redis, alice, NOW);
    assert.equal(await revokeLoginSession(redis, session.id), true);
    assert.equal(await revokeLoginSession(redis, session.id), false);
    await assert.rejects(authenticateLoginSession(redis, token, NOW), (e) => isAuthError(e, 'ERR_UNAUTHENTICATED'));
    assert.equal(await redis.sismember(userSessionsKey('alice'), session.id), 0);
  });

  it("revokes all of a user's sessions and leaves other users' alone", async () => {
    const a1 = await createLoginSession(redis, { ...alice, user: 'carol' }, NOW);
    const a2 = await createLoginSession(redis, { user: 'carol', method: 'password', mfaVerified: false, ttlSeconds: 600 }, NOW);
    const b = await createLoginSession(redis, { ...alice, user: 'bob' }, NOW);
    assert.deepEqual((await listUserSessions(redis, 'carol', NOW)).map((s) => s.id).sort(), [a1.session.id, a2.session.id].sort());
    assert.equal((await revokeUserSessions(redis, 'carol')).length, 2);
    for (const t of [a1.token, a2.token]) await assert.rejects(authenticateLoginSession(redis, t, NOW), (e) => isAuthError(e, 'ERR_UNAUTHENTICATED'));
    assert.equal((await authenticateLoginSession(redis, b.token, NOW)).user, 'bob');
    assert.equal((await revokeUserSessions(redis, 'carol')).length, 0);
  });

  it("keeps the user's session set alive as long as its longest session", async () => {
    const long = await createLoginSession(redis, { ...alice, user: 'dave', ttlSeconds: 7200 }, Date.now());
    await createLoginSession(redis, { ...alice, user: 'dave', ttlSeconds: 60 }, Date.now());
    const pttl = await redis.pttl(userSessionsKey('dave'));
    assert.ok(pttl > 7000_000, `set PTTL ${pttl} would drop the long session ${long.session.id}`);
  });

  it('forgets ids of sessions Redis expired when the user logs in again', async () => {
    const s = await createLoginSession(redis, { ...alice, user: 'erin' }, NOW);
    await redis.del(sessionKey(s.session.id));
    await createLoginSession(redis, { ...alice, user: 'erin' }, NOW);
    assert.equal(await redis.sismember(userSessionsKey('erin'), s.session.id), 0);
    assert.equal(await redis.scard(userSessionsKey('erin')), 1);
  });

  it('checks the request', async () => {
    const bad: [Partial<NewLoginSession>, RegExp][] = [
      [{ user: '' }, /"user"/],
      [{ method: 'magic' as 'oidc' }, /"method"/],
      [{ ttlSeconds: 10 }, /"ttlSeconds"/],
      [{ ttlSeconds: 30 * 86400 }, /"ttlSeconds"/],
      [{ mfaVerified: false }, /"mfaMethod" given/],
      [{ user: 'a{b}' }, /without "\{"/],
    ];
    for (const [change, re] of bad) {
      await assert.rejects(createLoginSession(redis, { ...alice, ...change }, NOW), (e) => isAuthError(e, 'ERR_BAD_REQUEST') && re.test(e.message), JSON.stringify(change));
    }
    await assert.rejects(createLoginSession(redis, alice, NOW, () => new Uint8Array(16)), TypeError);
  });
});
