import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseWebConfig, gatewayOrigins } from '../src/config.js';
import { SESSION_COOKIE, readCookie, sessionCookie } from '../src/cookies.js';
import { checkCsrf, type CsrfInput } from '../src/csrf.js';
import { sessionTtl, type BrowserSession } from '../src/browser-session.js';
import { LIVE_PROTOCOL, TerminalChannel, parseLiveMessage } from '../shared/protocol.js';

/* The pure decisions: CSRF, cookies, session lifetimes, the live protocol, configuration. */

const ORIGINS = ['https://bastion.example.com:3080'];
const TOKEN = 'a'.repeat(43);

test('CSRF: safe methods pass; a POST needs our origin (or same-origin fetch metadata) and the token', () => {
  const base: CsrfInput = { method: 'POST', origin: ORIGINS[0], secFetchSite: undefined, token: TOKEN, expectedToken: TOKEN };
  assert.deepEqual(checkCsrf({ ...base, method: 'GET', origin: 'https://evil.example', token: undefined }, ORIGINS), { ok: true });
  assert.deepEqual(checkCsrf(base, ORIGINS), { ok: true });
  assert.deepEqual(checkCsrf({ ...base, origin: undefined, secFetchSite: 'same-origin' }, ORIGINS), { ok: true });
  const refusals: [{ [K in keyof CsrfInput]?: CsrfInput[K] | undefined }, RegExp][] = [
    [{ origin: 'https://evil.example' }, /origin https:\/\/evil\.example/],
    [{ origin: 'https://bastion.example.com' }, /not this gateway's/],
    [{ origin: undefined }, /neither its Origin/],
    [{ origin: 'null', secFetchSite: 'cross-site' }, /neither its Origin/],
    [{ token: undefined }, /missing/],
    [{ token: 'b'.repeat(43) }, /does not match/],
    [{ token: 'a'.repeat(42) }, /does not match/],
    [{ expectedToken: undefined }, /no session/],
  ];
  for (const [change, reason] of refusals) {
    const v = checkCsrf({ ...base, ...change } as CsrfInput, ORIGINS);
    assert.equal(v.ok, false, JSON.stringify(change));
    assert.match(v.ok ? '' : v.reason, reason);
  }
});

test('cookies: the session cookie is __Host-, Secure, HttpOnly, SameSite=Strict; parsing takes the named one', () => {
  assert.equal(sessionCookie(TOKEN), `${SESSION_COOKIE}=${TOKEN}; Path=/; Secure; HttpOnly; SameSite=Strict`);
  assert.throws(() => sessionCookie('x; Domain=evil'), TypeError);
  assert.equal(readCookie(`a=1; ${SESSION_COOKIE}=${TOKEN}; b=2`, SESSION_COOKIE), TOKEN);
  assert.equal(readCookie('pc_session=x', SESSION_COOKIE), undefined);
  assert.equal(readCookie(undefined, SESSION_COOKIE), undefined);
});

test('session lifetime: anonymous short, signed-in idle time capped by auth session expiry', () => {
  const times = { anonymousMs: 900_000, idleMs: 3_600_000 };
  const s: BrowserSession = { id: '0'.repeat(64), csrf: TOKEN, stage: 'anonymous', createdAt: 0, oidcStates: [] };
  assert.equal(sessionTtl(s, 0, times), 900_000);
  const signed = { ...s, stage: 'authenticated' as const, signedIn: { token: TOKEN, user: 'u', admin: false, mfaVerified: true, expiresAt: 600_000, checkedAt: 0 } };
  assert.equal(sessionTtl(signed, 0, times), 600_000);
  assert.equal(sessionTtl({ ...signed, signedIn: { ...signed.signedIn, expiresAt: 10_000_000 } }, 0, times), 3_600_000);
  assert.equal(sessionTtl(signed, 700_000, times), 0);
});

test('live protocol: typed messages validated, anything else rejected; the terminal channel is the first to claim', () => {
  assert.equal(LIVE_PROTOCOL, 'portcullis.live.v1');
  assert.deepEqual(parseLiveMessage('{"type":"resize","cols":100,"rows":30}'), { type: 'resize', cols: 100, rows: 30 });
  assert.deepEqual(parseLiveMessage('{"type":"end","reason":"bye"}'), { type: 'end', reason: 'bye' });
  for (const bad of ['', 'null', '[]', '{"type":"resize","cols":0,"rows":30}', '{"type":"resize","cols":"80","rows":24}', '{"type":"screen","cols":80,"rows":24}', '{"type":"exec","command":"x"}', '{"type":"hello","recording":{}}']) {
    assert.equal(parseLiveMessage(bad), undefined, bad);
  }
  const t = new TerminalChannel();
  assert.equal(t.claims({ type: 'channel' , channel: 3 }), false);
  assert.equal(t.claims({ type: 'pty', channel: 1 }), true);
  assert.equal(t.claims({ type: 'output', channel: 2 }), false);
  assert.equal(t.claims({ type: 'output', channel: 1 }), true);
  assert.equal(t.claims({ type: 'end' }), false);
});

test('config: strict keys, defaults, origins', () => {
  const c = parseWebConfig({ state_dir: '/tmp/x', auth: { url: 'https://127.0.0.1:3025', fingerprint: 'AB' }, redis: { url: 'redis://127.0.0.1:6379' } });
  assert.deepEqual(c.listen, { host: '127.0.0.1', port: 3080 });
  assert.deepEqual(c.sessions, { idle: 3600, anonymous: 900 });
  assert.throws(() => parseWebConfig({ state_dir: '/x', auth: { url: 'https://a' }, redis: { url: 'redis://a' }, colour: 1 }), /unknown key colour/);
  assert.throws(() => parseWebConfig({ state_dir: '/x', auth: { url: 'http://a' }, redis: { url: 'redis://a' } }), /auth\.url/);
  assert.throws(() => parseWebConfig({ state_dir: '/x', public_url: 'https://a/web', auth: { url: 'https://a' }, redis: { url: 'redis://a' } }), /public_url/);
  assert.throws(() => parseWebConfig({ state_dir: '/x', auth: { url: 'https://a' }, redis: { host: 'a' } }), /redis/);
  assert.deepEqual(gatewayOrigins('https://bastion.example.com:3080', 1), ['https://bastion.example.com:3080']);
  assert.deepEqual(gatewayOrigins('https://bastion.example.com:443', 1), ['https://bastion.example.com']);
  assert.deepEqual(gatewayOrigins(undefined, 3080), ['https://localhost:3080', 'https://127.0.0.1:3080', 'https://[::1]:3080']);
});
