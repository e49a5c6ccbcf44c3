// The terminal WebSocket without a browser (the ws client, as the load test): refusals at the
// upgrade, refusals of the engine as close messages, a malformed frame, and a session ended by
// an admin's lock on its host, whose recording ends with the reason.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { readRecordingMeta } from '@portcullis/recording';
import { WebSocket } from 'ws';
import { TERMINAL_CLOSE, TERMINAL_PATH, TERMINAL_PROTOCOL, parseTerminalServerMessage, type TerminalServerMessage } from '../shared/terminal-protocol.js';
import { ADMIN_PASSWORD } from './fixture.js';
import { signInErin, startTerminalWorld, type TerminalWorld } from './terminal-world.js';

interface Client {
  readonly ws: WebSocket;
  readonly messages: TerminalServerMessage[];
  output(): string;
  closed: Promise<{ code: number; reason: string }>;
}

function connect(w: TerminalWorld, headers: Record<string, string>): Client {
  const ws = new WebSocket(`${w.f.info.url.replace('https:', 'wss:')}${TERMINAL_PATH}`, TERMINAL_PROTOCOL, { headers, rejectUnauthorized: false });
  const messages: TerminalServerMessage[] = [];
  const out: Buffer[] = [];
  ws.on('message', (d, binary) => {
    if (binary) out.push(d as Buffer);
    else messages.push(parseTerminalServerMessage(String(d)) ?? assert.fail(`not a v1 message: ${String(d)}`));
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  ws.on('error', () => {});
  return { ws, messages, output: () => Buffer.concat(out).toString(), closed };
}

async function until(pred: () => boolean, what: string, ms = 10_000): Promise<void> {
  for (let t = 0; t < ms; t += 25) {
    if (pred()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.fail(what);
}

describe('the terminal WebSocket', () => {
  let w: TerminalWorld;
  let cookie: string;
  let headers: Record<string, string>;

  before(async () => {
    w = await startTerminalWorld({ sessionMfa: false });
    cookie = await signInErin(w);
    headers = { cookie, origin: w.f.info.url };
  });
  after(async () => w?.stop());

  test('the upgrade is refused without a session, from a foreign Origin, or without the subprotocol', async () => {
    const status = (h: Record<string, string>, protocol = TERMINAL_PROTOCOL): Promise<number> =>
      new Promise((resolve) => {
        const ws = new WebSocket(`${w.f.info.url.replace('https:', 'wss:')}${TERMINAL_PATH}`, protocol, { headers: h, rejectUnauthorized: false });
        ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
        ws.on('open', () => resolve(101));
        ws.on('error', () => {});
      });
    assert.equal(await status({ origin: w.f.info.url }), 401);
    assert.equal(await status({ cookie, origin: 'https://evil.example' }), 403);
    assert.equal(await status({ cookie }), 403);
    assert.equal(await status(headers, 'portcullis.live.v1'), 400);
  });

  test('the engine\'s refusals come back as a close message with 4403', async () => {
    for (const [open, expected] of [
      [{ login: 'ubuntu', host: 'web01' }, /may not log in as "ubuntu"|ubuntu/],
      [{ login: 'root', host: 'db99' }, /not registered/],
    ] as const) {
      const c = connect(w, headers);
      c.ws.on('open', () => c.ws.send(JSON.stringify({ type: 'open', ...open, cols: 80, rows: 24 })));
      const closed = await c.closed;
      assert.equal(closed.code, TERMINAL_CLOSE.refused, JSON.stringify(closed));
      const last = c.messages.at(-1);
      assert.equal(last?.type, 'close');
      assert.match(last.type === 'close' ? last.reason : '', expected);
    }
    assert.ok(w.audit.some((e) => e.name === 'session.refused' && e.fields['route'] === 'web' && e.fields['stage'] === 'route'));
  });

  test('a frame that is not v1 closes the socket with 4400', async () => {
    const c = connect(w, headers);
    c.ws.on('open', () => c.ws.send(JSON.stringify({ type: 'data', data: 'ls' })));
    assert.equal((await c.closed).code, TERMINAL_CLOSE.protocol);
  });

  test('an admin\'s lock on the host ends the session with its message; the recording ends with it', async () => {
    const c = connect(w, headers);
    c.ws.on('open', () => c.ws.send(JSON.stringify({ type: 'open', login: 'root', host: 'web01', cols: 100, rows: 30 })));
    await until(() => c.messages.some((m) => m.type === 'session'), 'no session message');
    const session = c.messages.find((m) => m.type === 'session');
    assert.ok(session?.type === 'session');
    c.ws.send(Buffer.from('echo lock-$((40+2))\n'));
    await until(() => c.output().includes('lock-42'), `no echo: ${c.output()}`);
    c.ws.send(JSON.stringify({ type: 'ping', t: 7 }));
    await until(() => c.messages.some((m) => m.type === 'pong' && m.t === 7), 'no pong');

    const admin = await w.f.authApi.request<{ token: string }>('POST', '/v1/login/password', { json: { username: 'admin', password: ADMIN_PASSWORD } });
    const lock = await w.f.authApi.request<{ id: string }>('POST', '/v1/admin/locks', { token: admin.body.token, json: { target: { kind: 'host', name: 'web01' }, message: 'maintenance' } });
    assert.equal(lock.status, 200, lock.bytes.toString());
    try {
      const closed = await c.closed;
      assert.equal(closed.code, TERMINAL_CLOSE.exited);
      const last = c.messages.at(-1);
      assert.ok(last?.type === 'close' && /maintenance/.test(last.reason), JSON.stringify(last));
      let meta = await readRecordingMeta(w.f.redis, session.id);
      for (let i = 0; i < 100 && meta?.state !== 'ended'; i++) {
        await new Promise((r) => setTimeout(r, 50));
        meta = await readRecordingMeta(w.f.redis, session.id);
      }
      assert.equal(meta?.state, 'ended');
      assert.equal(meta?.route, 'web');
      assert.ok(w.audit.some((e) => e.name === 'session.terminated' && e.fields['sessionId'] === session.id));
    } finally {
      await w.f.authApi.request('DELETE', `/v1/admin/locks/${lock.body.id}`, { token: admin.body.token });
    }
  });
});
