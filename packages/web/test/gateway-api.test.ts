import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { ApiResponse } from '@portcullis/auth';
import { signInThroughProvider } from '@portcullis/harness';
import { WebSocket } from 'ws';
import { LIVE_PROTOCOL, parseLiveMessage, type EventsPage, type RecordingSummary } from '../shared/protocol.js';
import { ADMIN_PASSWORD, BOB, setAdminPassword, startWebFixture, type WebFixture } from './fixture.js';
import { PHASES, startLiveRecording, writeExecRecording, writeSeekableRecording } from './recordings.js';

/*
 * The gateway over HTTPS without a browser: cookie flags, CSRF and Origin refusals, login
 * through auth (password, SSO bound to the browser that started it), the admin-only recordings
 * API, the live view's WebSocket checks, and auth's API forwarded for pcsh.
 */

interface Browserish {
  cookie: string | undefined;
  csrf: string;
}

function cookieOf(res: ApiResponse): string | undefined {
  const set = res.headers['set-cookie'];
  const line = Array.isArray(set) ? set[0] : set;
  return line === undefined ? undefined : /^([^=]+=[^;]*)/.exec(line)?.[1];
}

describe('web gateway API', () => {
  let f: WebFixture;
  let origin: string;
  let seekable: string;
  let exec: string;

  before(async () => {
    f = await startWebFixture();
    origin = f.info.url;
    await setAdminPassword(f);
    seekable = await writeSeekableRecording(f.redis, { user: 'carol', host: 'db01' });
    exec = await writeExecRecording(f.redis, 'sudo systemctl restart nginx', 'restarted\n', { user: 'dave', host: 'web02', login: 'deploy' });
  });
  after(async () => {
    await f?.stop();
  });

  async function call(b: Browserish, method: string, path: string, json?: unknown, headers: Record<string, string> = {}): Promise<ApiResponse<Record<string, unknown>>> {
    const res = await f.client.request<Record<string, unknown>>(method, path, {
      ...(json === undefined ? {} : { json }),
      headers: { origin, 'x-csrf-token': b.csrf, ...(b.cookie === undefined ? {} : { cookie: b.cookie }), ...headers },
    });
    const c = cookieOf(res);
    if (c !== undefined) b.cookie = c.endsWith('=') ? undefined : c;
    if (typeof res.body?.['csrf'] === 'string') b.csrf = res.body['csrf'];
    return res;
  }

  async function freshBrowser(): Promise<Browserish> {
    const b: Browserish = { cookie: undefined, csrf: '' };
    const res = await call(b, 'GET', '/web/api/session');
    assert.equal(res.status, 200);
    return b;
  }

  async function adminBrowser(): Promise<Browserish> {
    const b = await freshBrowser();
    const res = await call(b, 'POST', '/web/api/login/password', { username: 'admin', password: ADMIN_PASSWORD });
    assert.equal(res.status, 200, res.bytes.toString());
    return b;
  }

  test('the session cookie is __Host-, Secure, HttpOnly, SameSite=Strict, and a login rotates it', async () => {
    const res = await f.client.request('GET', '/web/api/session');
    const line = String(res.headers['set-cookie']);
    assert.match(line, /^__Host-pc_session=[A-Za-z0-9_-]{43}; Path=\/; Secure; HttpOnly; SameSite=Strict$/);
    assert.equal(res.headers['cache-control'], 'no-store');
    const b = await freshBrowser();
    const before = b.cookie;
    const csrfBefore = b.csrf;
    const login = await call(b, 'POST', '/web/api/login/password', { username: 'admin', password: ADMIN_PASSWORD });
    assert.equal(login.status, 200);
    assert.deepEqual([login.body['stage'], login.body['user'], login.body['admin']], ['authenticated', 'admin', true]);
    assert.notEqual(b.cookie, before, 'a new cookie after login');
    assert.notEqual(b.csrf, csrfBefore, 'a new CSRF token after login');
    assert.ok(!JSON.stringify(login.body).includes('token"'), 'auth token never reaches the browser');
    // The pre-login cookie is dead.
    const old = await call({ cookie: before, csrf: csrfBefore }, 'GET', '/web/api/hosts');
    assert.equal(old.status, 401);
  });

  test('state-changing requests need the CSRF token and one of our origins', async () => {
    const b = await adminBrowser();
    const noToken = await call(b, 'POST', '/web/api/logout', {}, { 'x-csrf-token': '' });
    assert.equal(noToken.status, 403);
    assert.match(String((noToken.body['error'] as { message: string }).message), /x-csrf-token/);
    const foreign = await call(b, 'POST', '/web/api/logout', {}, { origin: 'https://evil.example' });
    assert.equal(foreign.status, 403);
    assert.match(String((foreign.body['error'] as { message: string }).message), /origin https:\/\/evil\.example/);
    const noOrigin = await f.client.request('POST', '/web/api/logout', { json: {}, headers: { cookie: b.cookie!, 'x-csrf-token': b.csrf } });
    assert.equal(noOrigin.status, 403);
    // Still signed in after all three.
    assert.equal((await call(b, 'GET', '/web/api/hosts')).status, 200);
    const out = await call(b, 'POST', '/web/api/logout', {});
    assert.equal(out.status, 200);
    assert.equal(b.cookie, undefined, 'the cookie is cleared');
  });

  test('SSO finishes only in the browser that started it; a non-admin gets no recordings', async () => {
    const b = await freshBrowser();
    const start = await call(b, 'POST', '/web/api/login/oidc/start', {});
    assert.equal(start.status, 200, start.bytes.toString());
    const url = new URL(String(start.body['url']));
    assert.equal(url.searchParams.get('redirect_uri'), `${origin}/web/callback`);
    const callback = await signInThroughProvider(url.href, BOB);
    // Someone else's browser with this callback URL (a link an attacker sent) is refused.
    const other = await freshBrowser();
    const stolen = await call(other, 'POST', '/web/api/login/oidc/finish', { callback_url: callback.href });
    assert.equal(stolen.status, 401);
    const done = await call(b, 'POST', '/web/api/login/oidc/finish', { callback_url: callback.href });
    assert.equal(done.status, 200, done.bytes.toString());
    assert.deepEqual([done.body['user'], done.body['admin']], ['bob', false]);
    const hosts = await call(b, 'GET', '/web/api/hosts');
    assert.equal(hosts.status, 200);
    const recs = await call(b, 'GET', '/web/api/recordings');
    assert.equal(recs.status, 403);
    assert.equal((recs.body['error'] as { code: string }).code, 'ERR_FORBIDDEN');
  });

  test('recordings: filters, command search, events from a snapshot, pages, asciicast', async () => {
    const b = await adminBrowser();
    const all = (await call(b, 'GET', '/web/api/recordings')).body['recordings'] as RecordingSummary[];
    assert.ok(all.some((r) => r.id === seekable) && all.some((r) => r.id === exec));
    const byUser = (await call(b, 'GET', '/web/api/recordings?user=dave')).body['recordings'] as RecordingSummary[];
    assert.deepEqual(byUser.map((r) => r.id), [exec]);
    const byCommand = (await call(b, 'GET', `/web/api/recordings?command=${encodeURIComponent('RESTART nginx')}`)).body['recordings'] as RecordingSummary[];
    assert.deepEqual(byCommand.map((r) => [r.id, r.matches]), [[exec, ['sudo systemctl restart nginx']]]);
    const future = (await call(b, 'GET', `/web/api/recordings?from=${new Date(Date.now() + 86400_000).toISOString()}`)).body['recordings'] as RecordingSummary[];
    assert.equal(future.length, 0);
    assert.equal((await call(b, 'GET', '/web/api/recordings?colour=blue')).status, 400);

    // A seek to 9 s starts from the snapshot at 8 s (phase three), not from the first event.
    const page = (await call(b, 'GET', `/web/api/recordings/${seekable}/events?from_ms=9000`)).body as unknown as EventsPage;
    const first = page.items[0]!;
    assert.equal(first.kind, 'screen');
    assert.ok(first.kind === 'screen' && first.t <= 9000 && first.t >= PHASES[2].t && first.screen.includes('phase three'), JSON.stringify(first).slice(0, 300));
    // Paging: three at a time, continued with `after`, ends with next: null.
    let after: string | null = null;
    const seqs: number[] = [];
    do {
      const path: string = `/web/api/recordings/${seekable}/events?limit=3${after === null ? '' : `&after=${after}`}`;
      const p = (await call(b, 'GET', path)).body as unknown as EventsPage;
      for (const it of p.items) if (it.kind === 'event') seqs.push(it.event.seq);
      after = p.next;
    } while (after !== null);
    assert.deepEqual(seqs, seqs.map((_, i) => i + 1), 'every event once, in order');
    assert.equal(seqs.length > 10, true);

    const cast = await call(b, 'GET', `/web/api/recordings/${seekable}/asciicast`);
    assert.equal(cast.status, 200);
    assert.match(String(cast.headers['content-disposition']), /^attachment; filename="web-.*\.cast"$/);
    const lines = cast.bytes.toString('utf8').trim().split('\n');
    assert.equal(JSON.parse(lines[0]!).version, 2);
    assert.ok(lines.some((l) => l.includes('phase four')));
    assert.equal((await call(b, 'GET', '/web/api/recordings/no-such-id')).status, 404);
  });

  function openLive(id: string, headers: Record<string, string>): Promise<{ status: number; messages: string[]; ws: WebSocket | undefined }> {
    return new Promise((resolve) => {
      const ws = new WebSocket(`wss://127.0.0.1:${new URL(origin).port}/web/api/recordings/${id}/live`, LIVE_PROTOCOL, { headers, rejectUnauthorized: false });
      const messages: string[] = [];
      ws.on('unexpected-response', (_req, res) => {
        resolve({ status: res.statusCode ?? 0, messages, ws: undefined });
        ws.terminate();
      });
      ws.on('message', (data, binary) => messages.push(binary ? `bin:${Buffer.from(data as Buffer).toString()}` : String(data)));
      ws.on('open', () => resolve({ status: 101, messages, ws }));
      ws.on('error', () => undefined);
    });
  }

  test('the live view refuses a foreign Origin and no session, and follows a session for an admin', async () => {
    const b = await adminBrowser();
    const live = await startLiveRecording(f.redis);
    await live.write('before the viewer\r\n');
    const foreign = await openLive(live.id, { origin: 'https://evil.example', cookie: b.cookie! });
    assert.equal(foreign.status, 403);
    const anonymous = await openLive(live.id, { origin });
    assert.equal(anonymous.status, 401);
    const ok = await openLive(live.id, { origin, cookie: b.cookie! });
    assert.equal(ok.status, 101);
    const until = async (pred: () => boolean): Promise<void> => {
      for (let i = 0; i < 100 && !pred(); i++) await new Promise((r) => setTimeout(r, 50));
      assert.ok(pred(), ok.messages.join('\n').slice(0, 2000));
    };
    await until(() => ok.messages.some((m) => m.includes('before the viewer')));
    assert.equal(parseLiveMessage(ok.messages[0]!)?.type, 'hello');
    await live.write('while watching\r\n');
    await until(() => ok.messages.some((m) => m.includes('while watching')));
    await live.end();
    await until(() => ok.messages.some((m) => parseLiveMessage(m)?.type === 'end'));
    ok.ws?.close();
  });

  test('auth API forwarded on the gateway port: pinned, bearer tokens, no cookies', async () => {
    const direct = await f.authApi.request('GET', '/v1/ca');
    const via = await f.client.request('GET', '/v1/ca');
    assert.equal(via.status, 200);
    assert.deepEqual(via.body, direct.body);
    const login = await f.client.request<{ token: string }>('POST', '/v1/login/password', { json: { username: 'admin', password: ADMIN_PASSWORD } });
    assert.equal(login.status, 200);
    assert.equal(login.headers['set-cookie'], undefined);
    const me = await f.client.request<{ user: { name: string } }>('GET', '/v1/me', { token: login.body.token });
    assert.equal(me.body.user.name, 'admin');
    const bad = await f.client.request<{ error: { code: string } }>('POST', '/v1/login/password', { json: { username: 'admin', password: 'wrong', extra: 1 } });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error.code, 'ERR_BAD_REQUEST');
  });
});
