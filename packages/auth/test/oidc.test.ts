import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Redis } from 'ioredis';
import {
  FormBrowser,
  approveDeviceLogin,
  signInThroughProvider,
  startOidcProvider,
  startRedis,
  tempDir,
  type RedisHandle,
  type TempDir,
  type TestOidcProvider,
} from '@portcullis/harness';
import { isAuthError } from '../src/errors.js';
import { OidcLogin, type OidcSettings } from '../src/identity/oidc.js';
import { RedisOidcStateStore } from '../src/identity/redis-store.js';
import { refused, snapshot } from './support.js';

const CLIENT = { client_id: 'portcullis', client_secret: 'test-client-secret-0123456789' };
const WEB_CALLBACK = 'https://bastion.example/web/callback';
const alice = { sub: 'sub-alice', username: 'alice', password: 'alice-password-1', groups: ['eng', 'oncall'], email: 'alice@example.com' };
const bob = { sub: 'sub-bob', username: 'bob', password: 'bob-password-123', groups: ['marketing'] };

describe('OIDC login against a real oidc-provider', () => {
  let dir: TempDir;
  let redisServer: RedisHandle;
  let redis: Redis;
  let provider: TestOidcProvider;
  let clock = 0; // offset added to the real time, to expire states without waiting
  let settings: OidcSettings;
  let login: OidcLogin;

  before(async () => {
    dir = tempDir('portcullis-oidc-');
    redisServer = await startRedis({ dir: dir.path });
    redis = new Redis(redisServer.url, { lazyConnect: true });
    await redis.connect();
    provider = await startOidcProvider({
      users: [alice, bob],
      clients: [{ ...CLIENT, redirect_uris: ['http://127.0.0.1/callback', WEB_CALLBACK] }],
    });
    settings = {
      issuer: provider.issuer,
      clientId: CLIENT.client_id,
      clientSecret: CLIENT.client_secret,
      roleMapping: [
        { value: 'eng', roles: ['developer'] },
        { value: 'oncall', roles: ['operator', 'developer'] },
      ],
      redirectUris: [WEB_CALLBACK],
      allowInsecureLoopbackIssuer: true,
    };
    login = new OidcLogin({ settings, store: new RedisOidcStateStore(redis), now: () => Date.now() + clock });
  });

  after(async () => {
    redis.disconnect();
    await provider.stop();
    await redisServer.stop();
    dir.remove();
  });

  test('authorization code + PKCE with a loopback redirect, signed in through the login form', async () => {
    const started = await login.startLogin({ redirectUri: 'http://127.0.0.1:54321/callback' });
    const url = new URL(started.url);
    assert.equal(url.searchParams.get('code_challenge_method'), 'S256');
    assert.equal(url.searchParams.get('redirect_uri'), 'http://127.0.0.1:54321/callback');
    assert.equal(url.searchParams.get('state'), started.state);
    assert.ok(url.searchParams.get('nonce'));
    // The verifier never leaves the server.
    assert.ok(!started.url.includes((await redis.hget(`pc:{oidc:${started.state}}`, 'codeVerifier')) ?? 'missing'));

    const callback = await signInThroughProvider(started.url, alice);
    assert.equal(callback.origin, 'http://127.0.0.1:54321');
    assert.equal(callback.searchParams.get('state'), started.state);

    const identity = await login.finishLogin(callback.href);
    assert.equal(identity.issuer, provider.issuer);
    assert.equal(identity.subject, 'sub-alice');
    assert.equal(identity.username, 'alice');
    assert.deepEqual(identity.groups, ['eng', 'oncall']);
    assert.deepEqual(identity.roles, ['developer', 'operator']);
    assert.equal(identity.claims['email'], 'alice@example.com');
    assert.equal(identity.claims['nonce'], undefined);

    // Used once: the verifier and nonce are forgotten, the marker stays until the key expires.
    const stored = await redis.hgetall(`pc:{oidc:${started.state}}`);
    assert.ok(stored['usedAt']);
    assert.equal(stored['codeVerifier'], undefined);
    assert.equal(stored['nonce'], undefined);
    assert.ok((await redis.pttl(`pc:{oidc:${started.state}}`)) > 0);
  });

  test('a reused callback is refused and changes nothing', async () => {
    const started = await login.startLogin({ redirectUri: 'http://127.0.0.1:40000/callback' });
    const callback = await signInThroughProvider(started.url, alice);
    await login.finishLogin(callback);
    const before = await snapshot(redis);
    await refused(login.finishLogin(callback), 'ERR_UNAUTHENTICATED', /already used/);
    await refused(login.finishLogin(callback.searchParams), 'ERR_UNAUTHENTICATED', /already used/);
    assert.deepEqual(await snapshot(redis), before);
  });

  test('two concurrent finishes of one callback never both return an identity', async () => {
    const started = await login.startLogin({ redirectUri: 'http://127.0.0.1:40001/callback' });
    const callback = await signInThroughProvider(started.url, alice);
    const results = await Promise.allSettled([login.finishLogin(callback), login.finishLogin(callback)]);
    // The provider refuses the second code exchange and, as RFC 6749 section 4.1.2 asks, revokes
    // what the first got, so both may fail; what must never happen is two identities.
    assert.ok(results.filter((r) => r.status === 'fulfilled').length <= 1);
    for (const r of results) if (r.status === 'rejected') assert.ok(isAuthError(r.reason, 'ERR_UNAUTHENTICATED'), String(r.reason));
  });

  test('the state is claimed atomically: of 20 concurrent claims exactly one wins', async () => {
    const store = new RedisOidcStateStore(redis);
    const started = await login.startLogin({ redirectUri: 'http://127.0.0.1:40001/callback' });
    const wins = await Promise.all(Array.from({ length: 20 }, () => store.markPendingUsed(started.state, Date.now())));
    assert.equal(wins.filter(Boolean).length, 1);
  });

  test('an expired state is refused with ERR_EXPIRED and changes nothing', async () => {
    const started = await login.startLogin({ redirectUri: 'http://127.0.0.1:40002/callback' });
    const callback = await signInThroughProvider(started.url, alice);
    clock = 11 * 60_000;
    try {
      const before = await snapshot(redis);
      await refused(login.finishLogin(callback), 'ERR_EXPIRED', /expired at/);
      assert.deepEqual(await snapshot(redis), before);
    } finally {
      clock = 0;
    }
  });

  test('unknown, missing or malformed state is refused and changes nothing', async () => {
    const before = await snapshot(redis);
    await refused(login.finishLogin({ code: 'x', state: 'A'.repeat(43) }), 'ERR_UNAUTHENTICATED', /unknown OIDC state/);
    await refused(login.finishLogin({ code: 'x' }), 'ERR_UNAUTHENTICATED', /no valid state/);
    await refused(login.finishLogin({ code: 'x', state: 'a}b{c:d' + 'x'.repeat(20) }), 'ERR_UNAUTHENTICATED');
    await refused(login.finishLogin('not a url'), 'ERR_BAD_REQUEST');
    assert.deepEqual(await snapshot(redis), before);
  });

  test('a code swapped into another login fails PKCE at the provider and changes nothing', async () => {
    const a = await login.startLogin({ redirectUri: 'http://127.0.0.1:40003/callback' });
    const b = await login.startLogin({ redirectUri: 'http://127.0.0.1:40003/callback' });
    const callbackA = await signInThroughProvider(a.url, alice);
    const forged = new URL(callbackA);
    forged.searchParams.set('state', b.state);
    const before = await snapshot(redis);
    await refused(login.finishLogin(forged), 'ERR_UNAUTHENTICATED', /identity provider refused/);
    assert.deepEqual(await snapshot(redis), before);
  });

  test('a user whose groups map to no role is refused with ERR_FORBIDDEN and nothing changes', async () => {
    const started = await login.startLogin({ redirectUri: 'http://127.0.0.1:40004/callback' });
    const callback = await signInThroughProvider(started.url, bob);
    const before = await snapshot(redis);
    await refused(login.finishLogin(callback), 'ERR_FORBIDDEN', /no Portcullis role for bob: groups marketing match no rule/);
    assert.deepEqual(await snapshot(redis), before);
  });

  test('the user cancelling at the provider is refused and changes nothing', async () => {
    const started = await login.startLogin({ redirectUri: 'http://127.0.0.1:40005/callback' });
    const browser = new FormBrowser(started.url);
    const page = await browser.open(started.url);
    const cancelled = await browser.submit(page, {}, 'abort');
    assert.ok(cancelled.leftTo);
    assert.equal(cancelled.leftTo.searchParams.get('error'), 'access_denied');
    const before = await snapshot(redis);
    await refused(login.finishLogin(cancelled.leftTo), 'ERR_UNAUTHENTICATED', /access_denied/);
    assert.deepEqual(await snapshot(redis), before);
  });

  test("the web app's configured redirect URI works; others are refused before anything is stored", async () => {
    const started = await login.startLogin({ redirectUri: WEB_CALLBACK });
    const callback = await signInThroughProvider(started.url, alice);
    assert.equal(callback.origin + callback.pathname, WEB_CALLBACK);
    assert.equal((await login.finishLogin(callback)).username, 'alice');

    const before = await snapshot(redis);
    for (const uri of [
      'https://evil.example/callback',
      'http://localhost:4000/callback', // a name, not an address (RFC 8252 section 8.3)
      'http://127.0.0.1/callback', // no port
      'http://127.0.0.1:4000/other',
      'http://127.0.0.1:4000/callback?x=1',
      'http://127.0.0.1:4000/callback#frag',
      'https://bastion.example/web/callback/../admin',
      'not a url',
    ]) {
      await refused(login.startLogin({ redirectUri: uri }), 'ERR_BAD_REQUEST');
    }
    assert.deepEqual(await snapshot(redis), before);
  });

  test('device authorization grant: pending, approved through the device page, then complete once', async () => {
    const started = await login.startDeviceLogin();
    assert.match(started.userCode, /^[A-Z]{4}-[A-Z]{4}$/);
    assert.ok(started.verificationUri.startsWith(provider.issuer));
    assert.ok(started.interval >= 1);
    assert.ok(started.expiresAt > Date.now());
    // The provider's device code stays on the server; the client only gets a handle.
    assert.notEqual(started.handle, await redis.hget(`pc:{oidc:${started.handle}}`, 'deviceCode'));

    const before = await snapshot(redis);
    assert.deepEqual(await login.pollDeviceLogin(started.handle), { status: 'pending', interval: started.interval });
    assert.deepEqual(await snapshot(redis), before);

    await approveDeviceLogin(started.verificationUri, started.userCode, alice);
    const done = await login.pollDeviceLogin(started.handle);
    assert.equal(done.status, 'complete');
    assert.ok(done.status === 'complete');
    assert.equal(done.identity.username, 'alice');
    assert.deepEqual(done.identity.roles, ['developer', 'operator']);

    await refused(login.pollDeviceLogin(started.handle), 'ERR_UNAUTHENTICATED', /already used/);
    assert.equal(await redis.hget(`pc:{oidc:${started.handle}}`, 'deviceCode'), null);
  });

  test('device grant: a user without a mapped role is refused; unknown and expired handles too', async () => {
    const started = await login.startDeviceLogin();
    await approveDeviceLogin(started.verificationUri, started.userCode, bob);
    const before = await snapshot(redis);
    await refused(login.pollDeviceLogin(started.handle), 'ERR_FORBIDDEN', /no Portcullis role for bob/);
    await refused(login.pollDeviceLogin('B'.repeat(43)), 'ERR_UNAUTHENTICATED', /unknown device login/);
    const other = await login.startDeviceLogin();
    const before2 = await snapshot(redis);
    clock = 11 * 60_000;
    try {
      await refused(login.pollDeviceLogin(other.handle), 'ERR_EXPIRED');
    } finally {
      clock = 0;
    }
    assert.deepEqual(await snapshot(redis), before2);
    assert.notDeepEqual(before, before2);
  });

  test('a device code typed wrong at the provider is refused there', async () => {
    const started = await login.startDeviceLogin();
    await assert.rejects(approveDeviceLogin(started.verificationUri, 'BCDF-GHJK', alice), /refused the device approval/);
  });

  test('claims carried in the ID token alone (no userinfo needed) give the same identity', async () => {
    const p2 = await startOidcProvider({
      users: [alice],
      clients: [{ ...CLIENT, redirect_uris: ['http://127.0.0.1/callback'] }],
      claimsInIdToken: true,
    });
    try {
      const l2 = new OidcLogin({ settings: { ...settings, issuer: p2.issuer }, store: new RedisOidcStateStore(redis) });
      const started = await l2.startLogin({ redirectUri: 'http://127.0.0.1:40006/callback' });
      const identity = await l2.finishLogin(await signInThroughProvider(started.url, alice));
      assert.deepEqual([identity.username, identity.groups, identity.roles], ['alice', ['eng', 'oncall'], ['developer', 'operator']]);
    } finally {
      await p2.stop();
    }
  });

  test('username from a configurable claim (email)', async () => {
    const l2 = new OidcLogin({ settings: { ...settings, usernameClaim: 'email' }, store: new RedisOidcStateStore(redis) });
    const started = await l2.startLogin({ redirectUri: 'http://127.0.0.1:40007/callback' });
    const identity = await l2.finishLogin(await signInThroughProvider(started.url, alice));
    assert.equal(identity.username, 'alice@example.com');
  });

  test('the test provider itself refuses an authorization request without PKCE', async () => {
    const url = new URL(`${provider.issuer}/auth`);
    url.search = new URLSearchParams({
      client_id: CLIENT.client_id,
      response_type: 'code',
      scope: 'openid',
      redirect_uri: 'http://127.0.0.1:40008/callback',
      state: 'x'.repeat(20),
    }).toString();
    const res = await fetch(url, { redirect: 'manual' });
    const back = new URL(res.headers.get('location') ?? 'http://none/');
    assert.equal(back.origin, 'http://127.0.0.1:40008');
    assert.equal(back.searchParams.get('error'), 'invalid_request');
    assert.match(back.searchParams.get('error_description') ?? '', /requires PKCE/);
  });

  test('http issuers: refused unless loopback and allowed by the flag', async () => {
    const store = new RedisOidcStateStore(redis);
    assert.throws(
      () => new OidcLogin({ settings: { ...settings, allowInsecureLoopbackIssuer: false }, store }),
      (e: unknown) => isAuthError(e, 'ERR_CONFIG') && /uses http/.test(e.message),
    );
    assert.throws(
      () => new OidcLogin({ settings: { ...settings, issuer: 'http://idp.example' }, store }),
      (e: unknown) => isAuthError(e, 'ERR_CONFIG'),
    );
    assert.throws(
      () => new OidcLogin({ settings: { ...settings, issuer: 'http://localhost:1234' }, store }),
      (e: unknown) => isAuthError(e, 'ERR_CONFIG'),
    );
  });

  test('an unreachable provider is ERR_UNAVAILABLE and stores nothing', async () => {
    const before = await snapshot(redis);
    const dead = new OidcLogin({ settings: { ...settings, issuer: 'http://127.0.0.1:9' }, store: new RedisOidcStateStore(redis) });
    await refused(dead.startLogin({ redirectUri: 'http://127.0.0.1:4000/callback' }), 'ERR_UNAVAILABLE', /discovery failed/);
    await refused(dead.startDeviceLogin(), 'ERR_UNAVAILABLE');
    assert.deepEqual(await snapshot(redis), before);
  });
});
