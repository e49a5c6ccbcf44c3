import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import { Secret } from 'otpauth';
import { startRedis, tempDir, type RedisHandle, type TempDir } from '@portcullis/harness';
import { isAuthError } from '../src/errors.js';
import { RedisInviteStore, RedisUserStore } from '../src/identity/redis-store.js';
import { TotpAuthenticator, matchTotpStep, totpCode } from '../src/identity/totp.js';
import { UserDirectory } from '../src/identity/users.js';
import { refused, snapshot } from './support.js';

describe('TOTP codes (pure)', () => {
  test('RFC 6238 appendix B SHA-1 vectors', () => {
    // The RFC's seed is the ASCII string "12345678901234567890"; its vectors are 8 digits.
    const seed = new Secret({ buffer: new TextEncoder().encode('12345678901234567890').buffer }).base32;
    const p = { issuer: 'x', digits: 8, period: 30, window: 1 };
    assert.equal(totpCode(seed, 59_000, p), '94287082');
    assert.equal(totpCode(seed, 1111111109_000, p), '07081804');
    assert.equal(totpCode(seed, 1234567890_000, p), '89005924');
    assert.equal(totpCode(seed, 20000000000_000, p), '65353130');
  });

  test('a code matches its own step and the steps either side, no further', () => {
    const secret = new Secret({ size: 20 }).base32;
    const t = 1_900_000_000_000;
    const step = Math.floor(t / 30_000);
    const code = totpCode(secret, t);
    assert.equal(matchTotpStep(secret, code, t), step);
    assert.equal(matchTotpStep(secret, code, t + 30_000), step); // typed just before the rollover
    assert.equal(matchTotpStep(secret, code, t - 30_000), step); // phone clock a step ahead
    assert.equal(matchTotpStep(secret, code, t + 60_000), undefined);
    assert.equal(matchTotpStep(secret, code, t - 60_000), undefined);
  });
});

describe('TOTP enrollment and verification in Redis', () => {
  let dir: TempDir;
  let server: RedisHandle;
  let redis: Redis;
  let clock: number;
  let users: UserDirectory;
  let totp: TotpAuthenticator;

  before(async () => {
    dir = tempDir('portcullis-totp-');
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
    // On a step boundary, so "the next step" is exactly +30 s.
    clock = Math.floor(Date.now() / 30_000) * 30_000;
    const store = new RedisUserStore(redis);
    users = new UserDirectory({ users: store, invites: new RedisInviteStore(redis), scrypt: { log2N: 10, r: 8, p: 1 }, now: () => clock });
    totp = new TotpAuthenticator({ users: store, now: () => clock });
    await users.createLocalUser('alice', ['dev']);
  });

  /** Enrolls alice, confirming at the current step; returns the secret. */
  async function enroll(): Promise<string> {
    const e = await totp.beginEnrollment('alice');
    await totp.confirmEnrollment('alice', totpCode(e.secret, clock));
    return e.secret;
  }

  test('enrollment: secret and otpauth URI, inactive until confirmed by a valid code', async () => {
    const e = await totp.beginEnrollment('alice');
    assert.match(e.secret, /^[A-Z2-7]{32}$/);
    const uri = new URL(e.uri);
    assert.equal(uri.protocol, 'otpauth:');
    assert.equal(uri.host, 'totp');
    assert.equal(decodeURIComponent(uri.pathname), '/Portcullis:alice');
    assert.equal(uri.searchParams.get('secret'), e.secret);
    assert.equal(uri.searchParams.get('issuer'), 'Portcullis');
    assert.equal(uri.searchParams.get('digits'), '6');
    assert.equal(uri.searchParams.get('period'), '30');
    assert.equal(e.expiresAt, clock + 10 * 60_000);

    // Not active yet: verification asks for enrollment, and a wrong confirmation changes nothing.
    await refused(totp.verify('alice', totpCode(e.secret, clock)), 'ERR_MFA_REQUIRED');
    const before = await snapshot(redis);
    const wrong = totpCode(e.secret, clock + 5 * 30_000);
    await refused(totp.confirmEnrollment('alice', wrong), 'ERR_MFA_INVALID', /wrong TOTP code/);
    assert.deepEqual(await snapshot(redis), before);

    await totp.confirmEnrollment('alice', totpCode(e.secret, clock));
    const u = await users.getUser('alice');
    assert.equal(u?.totp?.secret, e.secret);
    assert.equal(u?.totpPending, undefined);
    assert.deepEqual((await users.listUsers())[0]?.mfa, ['totp']);
  });

  test('the confirming code cannot be replayed as a login code', async () => {
    const secret = await enroll();
    await refused(totp.verify('alice', totpCode(secret, clock)), 'ERR_MFA_INVALID', /already used/);
  });

  test('verify: a fresh code passes once; the same code again is refused and changes nothing', async () => {
    const secret = await enroll();
    clock += 30_000;
    const code = totpCode(secret, clock);
    assert.equal(await totp.verify('alice', code), clock / 30_000);
    assert.equal(await redis.get('pc:{user:alice}:totp-used'), String(clock / 30_000));
    const before = await snapshot(redis);
    await refused(totp.verify('alice', code), 'ERR_MFA_INVALID', /already used/);
    // Still inside the window a few seconds later: still refused.
    clock += 10_000;
    await refused(totp.verify('alice', code), 'ERR_MFA_INVALID', /already used/);
    assert.deepEqual(await snapshot(redis), before);
  });

  test('a code of an earlier step is refused once a later one was accepted', async () => {
    const secret = await enroll();
    clock += 60_000;
    const older = totpCode(secret, clock - 30_000); // still inside the window
    await totp.verify('alice', totpCode(secret, clock));
    await refused(totp.verify('alice', older), 'ERR_MFA_INVALID', /already used/);
  });

  test('window of one step either side', async () => {
    const secret = await enroll();
    clock += 5 * 30_000;
    await totp.verify('alice', totpCode(secret, clock - 30_000));
    await totp.verify('alice', totpCode(secret, clock));
    await totp.verify('alice', totpCode(secret, clock + 30_000));
    clock += 5 * 30_000;
    const before = await snapshot(redis);
    await refused(totp.verify('alice', totpCode(secret, clock - 60_000)), 'ERR_MFA_INVALID', /wrong TOTP code/);
    await refused(totp.verify('alice', totpCode(secret, clock + 60_000)), 'ERR_MFA_INVALID', /wrong TOTP code/);
    assert.deepEqual(await snapshot(redis), before);
  });

  test('concurrent uses of one code: exactly one passes', async () => {
    const secret = await enroll();
    clock += 30_000;
    const code = totpCode(secret, clock);
    const results = await Promise.allSettled(Array.from({ length: 20 }, () => totp.verify('alice', code)));
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
    for (const r of results) {
      if (r.status === 'rejected') assert.ok(isAuthError(r.reason, 'ERR_MFA_INVALID') && r.reason.details?.['reason'] === 'replayed');
    }
  });

  test('wrong and malformed codes: ERR_MFA_INVALID, nothing changes', async () => {
    const secret = await enroll();
    clock += 30_000;
    const right = totpCode(secret, clock);
    const wrong = String((Number(right) + 1) % 1_000_000).padStart(6, '0');
    const before = await snapshot(redis);
    await refused(totp.verify('alice', wrong), 'ERR_MFA_INVALID', /wrong TOTP code/);
    for (const bad of ['', '12345', '1234567', 'abcdef', ' 123456', '12 456']) {
      await refused(totp.verify('alice', bad), 'ERR_MFA_INVALID', /expected 6 digits/);
    }
    await refused(totp.verify('alice', 123456 as unknown as string), 'ERR_MFA_INVALID');
    assert.deepEqual(await snapshot(redis), before);
    await totp.verify('alice', right);
  });

  test('an unconfirmed enrollment expires', async () => {
    const e = await totp.beginEnrollment('alice');
    clock += 10 * 60_000;
    const before = await snapshot(redis);
    await refused(totp.confirmEnrollment('alice', totpCode(e.secret, clock)), 'ERR_EXPIRED');
    assert.deepEqual(await snapshot(redis), before);
  });

  test('replacing an active factor must be asked for, and the old one works until confirmed', async () => {
    const oldSecret = await enroll();
    const before = await snapshot(redis);
    await refused(totp.beginEnrollment('alice'), 'ERR_CONFLICT', /already has TOTP/);
    assert.deepEqual(await snapshot(redis), before);
    const e = await totp.beginEnrollment('alice', { replace: true });
    clock += 30_000;
    await totp.verify('alice', totpCode(oldSecret, clock));
    clock += 30_000;
    await totp.confirmEnrollment('alice', totpCode(e.secret, clock));
    clock += 30_000;
    await refused(totp.verify('alice', totpCode(oldSecret, clock)), 'ERR_MFA_INVALID');
    await totp.verify('alice', totpCode(e.secret, clock));
  });

  test('confirming against a secret replaced meanwhile is refused', async () => {
    const first = await totp.beginEnrollment('alice');
    const code = totpCode(first.secret, clock);
    await totp.beginEnrollment('alice'); // a second enrollment started in another tab
    await refused(totp.confirmEnrollment('alice', code), 'ERR_MFA_INVALID');
  });

  test('removal, unknown and disabled users', async () => {
    const secret = await enroll();
    await totp.remove('alice');
    clock += 30_000;
    await refused(totp.verify('alice', totpCode(secret, clock)), 'ERR_MFA_REQUIRED', /no TOTP enrolled/);
    await refused(totp.verify('nobody', '123456'), 'ERR_NOT_FOUND');
    await refused(totp.remove('nobody'), 'ERR_NOT_FOUND');
    const s2 = await enroll();
    await users.setStatus('alice', 'disabled');
    clock += 30_000;
    const before = await snapshot(redis);
    await refused(totp.verify('alice', totpCode(s2, clock)), 'ERR_FORBIDDEN');
    await refused(totp.beginEnrollment('alice', { replace: true }), 'ERR_FORBIDDEN');
    assert.deepEqual(await snapshot(redis), before);
  });

  test('a removed factor cannot be raced: a step accepted for a removed secret is refused', async () => {
    const secret = await enroll();
    const store = new RedisUserStore(redis);
    await totp.remove('alice');
    assert.equal(await store.acceptTotpStep('alice', secret, clock / 30_000 + 5), false);
  });

  test('activation is a compare-and-set on the pending secret', async () => {
    const store = new RedisUserStore(redis);
    const first = await totp.beginEnrollment('alice');
    const second = await totp.beginEnrollment('alice');
    assert.equal(await store.activateTotp('alice', first.secret, clock / 30_000, clock), false);
    assert.equal((await users.getUser('alice'))?.totp, undefined);
    assert.equal(await store.activateTotp('alice', second.secret, clock / 30_000, clock), true);
    assert.equal(await store.lastTotpStep('alice'), clock / 30_000);
  });
});
