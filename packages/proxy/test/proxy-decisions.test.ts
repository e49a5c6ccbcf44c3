// The proxy's pure parts and small state machines, without sockets: user-name routing, the
// client certificate and access decisions, force-command, the failure throttle, the trust
// cache (KRL fail-closed, staleness, ETag), the pump's backpressure and tap ordering.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { PassThrough, Readable, Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type ssh2 from 'ssh2';
import { trustedAuthorities, publicPart } from '@portcullis/cert-core';
import { nodeCrypto } from '@portcullis/cert-core/node';
import {
  DEFAULT_REVOCATION,
  FailureThrottle,
  ProxyError,
  TrustCache,
  channelPolicy,
  createProxyMetrics,
  decideAccess,
  decideClientCertificate,
  effectiveStart,
  envAllowed,
  isProxyError,
  jumpedRoute,
  parseClientUsername,
  pump,
  resolveConfig,
  userFromKeyId,
} from '../src/index.js';
import type { ChannelEvent, ClientRoute, ProxyAuditEvent, SessionMeta, SessionTap } from '../src/index.js';
import { Relay } from '../src/session/relay.js';
import type { Upstream } from '../src/upstream.js';
import { StandInAuthority, newKey } from './support/authority.js';
import { access } from './support/fixture.js';

describe('routing: the target in the user name', () => {
  const cases: [string, ClientRoute['kind'], Partial<Record<string, string>>?][] = [
    ['root%web01', 'target', { login: 'root', host: 'web01' }],
    ['ubuntu%web01.example.com', 'target', { login: 'ubuntu', host: 'web01.example.com' }],
    ['deploy%10.0.0.7', 'target', { login: 'deploy', host: '10.0.0.7' }],
    ['root%web%01', 'invalid'],
    ['%web01', 'invalid'],
    ['root%', 'invalid'],
    ['-oProxyCommand%web01', 'invalid'],
    ['root%web 01', 'invalid'],
    ['alice', 'jump', { name: 'alice' }],
    ['alice@example.com', 'jump', { name: 'alice@example.com' }],
    ['', 'invalid'],
  ];
  for (const [name, kind, fields] of cases) {
    it(`${JSON.stringify(name)} is ${kind}`, () => {
      const r = parseClientUsername(name);
      assert.equal(r.kind, kind);
      for (const [k, v] of Object.entries(fields ?? {})) assert.equal((r as unknown as Record<string, string>)[k], v);
    });
  }

  it('inside a jump the user name is only the login', () => {
    assert.deepEqual(jumpedRoute('root', 'web01'), { kind: 'target', login: 'root', host: 'web01' });
    assert.equal(jumpedRoute('root%web02', 'web01').kind, 'invalid');
  });
});

describe('client certificate and access decisions', () => {
  const auth = new StandInAuthority([]);
  const trustedCAs = trustedAuthorities([publicPart(auth.userCA)]);
  const base = {
    peerAddress: '192.0.2.10',
    now: Date.now(),
    trustedCAs,
    isRevoked: () => false as const,
    crypto: nodeCrypto,
    skewSeconds: 0,
    userOf: userFromKeyId,
  };
  const target = (login: string): ClientRoute => ({ kind: 'target', login, host: 'web01' });

  it('accepts a login among the principals and names the user from the key id', () => {
    const certificate = auth.userCertificate('alice', { principals: ['root', 'ubuntu'] });
    const v = decideClientCertificate({ ...base, certificate, route: target('ubuntu') });
    assert.ok(v.ok);
    assert.equal(v.value.user, 'alice');
    assert.equal(v.value.permissions.pty, true);
  });

  it('refuses, with a bounded metrics label, what the checker refuses', () => {
    const cases = [
      { cert: auth.userCertificate('alice', { principals: ['root'] }), route: target('admin'), result: 'wrong_principal', code: 'ERR_WRONG_PRINCIPAL' },
      { cert: auth.userCertificate('alice', { principals: ['root'], validFor: -1 }), route: target('root'), result: 'expired', code: 'ERR_EXPIRED' },
      { cert: auth.userCertificate('alice', { principals: ['root'], ca: newKey() }), route: target('root'), result: 'untrusted_ca', code: 'ERR_UNTRUSTED_CA' },
      {
        cert: auth.userCertificate('alice', { principals: ['root'], permissions: { sourceAddress: '198.51.100.0/24' } }),
        route: target('root'),
        result: 'source_address',
        code: 'ERR_SOURCE_ADDRESS',
      },
      { cert: auth.userCertificate('alice', { principals: ['root'], keyId: ' leading-blank' }), route: target('root'), result: 'unknown_user', code: 'ERR_UNKNOWN_USER' },
    ];
    for (const c of cases) {
      const v = decideClientCertificate({ ...base, certificate: c.cert, route: c.route });
      assert.ok(!v.ok, c.code);
      assert.equal(v.result, c.result);
      assert.equal(v.code, c.code);
    }
  });

  it('refuses a revoked certificate with the hook\'s reason', () => {
    const certificate = auth.userCertificate('alice', { principals: ['root'] });
    const v = decideClientCertificate({ ...base, certificate, route: target('root'), isRevoked: () => 'serial 7 is revoked' });
    assert.ok(!v.ok);
    assert.equal(v.result, 'revoked');
    assert.match(v.reason, /serial 7 is revoked/);
  });

  it('a jump hop logs in as the user itself, still with every other check', () => {
    const certificate = auth.userCertificate('alice', { principals: ['root'] });
    assert.ok(decideClientCertificate({ ...base, certificate, route: { kind: 'jump', name: 'alice' } }).ok);
    const wrong = decideClientCertificate({ ...base, certificate, route: { kind: 'jump', name: 'root' } });
    assert.ok(!wrong.ok && wrong.code === 'ERR_LOGIN_NOT_ALLOWED');
    const expired = auth.userCertificate('alice', { principals: ['root'], validFor: -1 });
    const e = decideClientCertificate({ ...base, certificate: expired, route: { kind: 'jump', name: 'alice' } });
    assert.ok(!e.ok && e.code === 'ERR_EXPIRED');
  });

  it('the login must also be allowed by the roles now', () => {
    const certificate = auth.userCertificate('alice', { principals: ['root', 'admin'] });
    const v = decideClientCertificate({ ...base, certificate, route: target('admin') });
    assert.ok(v.ok);
    const refused = decideAccess(v.value, target('admin'), access('alice', { logins: ['root'] }));
    assert.ok(!refused.ok);
    assert.equal(refused.code, 'ERR_LOGIN_NOT_ALLOWED');
    assert.match(refused.reason, /may not log in as "admin" \(allowed now: "root"\)/);
    assert.ok(decideAccess(v.value, target('root'), access('alice', { logins: ['root'] })).ok);
    assert.ok(!decideAccess(v.value, target('root'), access('bob')).ok, 'an answer about another user is refused');
  });

  it('forwarding needs the certificate extension AND the role', () => {
    const certificate = auth.userCertificate('alice', { principals: ['root'], permissions: { portForwarding: true, agentForwarding: true } });
    const v = decideClientCertificate({ ...base, certificate, route: target('root') });
    assert.ok(v.ok);
    assert.equal(channelPolicy(v.value.permissions, access('alice', { portForwarding: false })).portForwarding, false);
    assert.equal(channelPolicy(v.value.permissions, access('alice', { portForwarding: true })).portForwarding, true);
    assert.equal(channelPolicy(v.value.permissions, access('alice', { agentForwarding: true })).agentForwarding, true);
    assert.equal(channelPolicy(v.value.permissions, access('alice', { x11Forwarding: true })).x11Forwarding, false);
  });
});

describe('force-command', () => {
  it('replaces exec, shell and subsystem, passing the original as SSH_ORIGINAL_COMMAND', () => {
    assert.deepEqual(effectiveStart({ kind: 'exec', command: 'ls' }, undefined), { start: { kind: 'exec', command: 'ls' }, env: {} });
    assert.deepEqual(effectiveStart({ kind: 'exec', command: 'ls -l' }, 'report'), { start: { kind: 'exec', command: 'report' }, env: { SSH_ORIGINAL_COMMAND: 'ls -l' } });
    assert.deepEqual(effectiveStart({ kind: 'shell' }, 'report'), { start: { kind: 'exec', command: 'report' }, env: {} });
    assert.deepEqual(effectiveStart({ kind: 'subsystem', name: 'sftp' }, 'report'), { start: { kind: 'exec', command: 'report' }, env: { SSH_ORIGINAL_COMMAND: 'sftp' } });
  });
});

describe('config', () => {
  it('fills defaults and refuses nonsense', () => {
    const auth = new StandInAuthority([]);
    const key = newKey();
    const hostKeys = [{ privateKey: key, certificate: auth.hostCertificate(key, ['bastion']) }];
    const c = resolveConfig({ authority: auth, hostKeys });
    assert.equal(c.port, 3022);
    assert.deepEqual(c.envAllowList, ['LANG', 'LC_*', 'TERM']);
    assert.throws(() => resolveConfig({ authority: auth, hostKeys: [] }), (e) => isProxyError(e, 'ERR_CONFIG'));
    assert.throws(() => resolveConfig({ authority: auth, hostKeys, listen: { port: 70000 } }), (e) => isProxyError(e, 'ERR_CONFIG'));
    assert.throws(() => resolveConfig({ authority: auth, hostKeys, revocation: { refreshMs: 0 } }), (e) => isProxyError(e, 'ERR_CONFIG'));
  });

  it('env allow-list: exact names and PREFIX* entries', () => {
    const list = ['LANG', 'LC_*', 'TERM'];
    for (const n of ['LANG', 'LC_ALL', 'LC_', 'TERM']) assert.ok(envAllowed(list, n), n);
    for (const n of ['LANGUAGE', 'LD_PRELOAD', 'PATH', 'lang', 'TERMINFO']) assert.ok(!envAllowed(list, n), n);
  });
});

describe('failure throttle', () => {
  const settings = { baseDelayMs: 100, maxDelayMs: 1_000, maxEntries: 3, forgetAfterMs: 60_000 };

  it('doubles the delay per failure up to the cap, forgets after a quiet period, clears on success', () => {
    const t = new FailureThrottle(settings);
    assert.equal(t.delayFor('a', 0), 0);
    const delays = [];
    for (let i = 0; i < 6; i++) {
      t.failure('a', 1_000);
      delays.push(t.delayFor('a', 1_000));
    }
    assert.deepEqual(delays, [100, 200, 400, 800, 1_000, 1_000]);
    assert.equal(t.delayFor('a', 1_000 + 60_000), 0);
    t.failure('b', 0);
    t.success('b');
    assert.equal(t.delayFor('b', 0), 0);
    // Far past the cap, the exponent must not overflow into NaN or Infinity.
    for (let i = 0; i < 2_000; i++) t.failure('c', 0);
    assert.equal(t.delayFor('c', 0), 1_000);
  });

  it('remembers at most maxEntries addresses, the least recently failing forgotten first', () => {
    const t = new FailureThrottle(settings);
    for (const a of ['a', 'b', 'c']) t.failure(a, 0);
    t.failure('a', 1);
    t.failure('d', 2);
    assert.equal(t.size, 3);
    assert.equal(t.delayFor('b', 3), 0, 'b was the oldest');
    assert.equal(t.delayFor('a', 3), 200);
  });
});

describe('trust cache', () => {
  const settings = { ...DEFAULT_REVOCATION, refreshMs: 60_000, maxStaleMs: 10_000 };

  it('refuses every certificate until the KRL is loaded, then applies it, then refuses again once it is stale', async () => {
    const auth = new StandInAuthority([access('alice')]);
    let now = 1_000_000;
    const trust = new TrustCache({ authority: auth, crypto: nodeCrypto, now: () => now, revocation: settings, caCacheMs: 60_000, log: () => {} });
    const cert = auth.userCertificate('alice', { principals: ['root'] });
    assert.match(String(trust.isRevoked(cert)), /has not been loaded/);
    await trust.refreshKrl();
    assert.equal(trust.isRevoked(cert), false);
    auth.revoke(cert);
    assert.equal(trust.isRevoked(cert), false, 'not yet fetched');
    await trust.refreshKrl();
    assert.match(String(trust.isRevoked(cert)), /serial \d+ .*revoked/);
    const other = auth.userCertificate('alice', { principals: ['root'] });
    // An unchanged KRL (ETag) still counts as confirmed.
    const fetches = auth.krlFetches;
    now += 9_000;
    await trust.refreshKrl();
    assert.equal(auth.krlFetches, fetches + 1);
    now += 9_000;
    assert.equal(trust.isRevoked(other), false);
    auth.down = true;
    await assert.rejects(trust.refreshKrl(), /auth is down/);
    now += 2_000;
    assert.match(String(trust.isRevoked(other)), /revocation list is 11 s old/);
  });

  it('keeps the last CA list when auth cannot be reached, and says so when it never could', async () => {
    const auth = new StandInAuthority([]);
    let now = 0;
    const trust = new TrustCache({ authority: auth, crypto: nodeCrypto, now: () => now, revocation: settings, caCacheMs: 1_000, log: () => {} });
    const first = await trust.userCAs();
    auth.down = true;
    now += 5_000;
    assert.equal(await trust.userCAs(), first);
    const fresh = new TrustCache({ authority: auth, crypto: nodeCrypto, now: () => now, revocation: settings, caCacheMs: 1_000, log: () => {} });
    await assert.rejects(fresh.hostCAs(), (e) => isProxyError(e, 'ERR_AUTHORITY_UNAVAILABLE'));
  });
});

describe('pump', () => {
  it('reads no further ahead than the destination accepts (backpressure), and loses nothing', async () => {
    const total = 64;
    let produced = 0;
    const src = new Readable({
      highWaterMark: 4,
      objectMode: false,
      read() {
        if (produced === total) this.push(null);
        else this.push(Buffer.alloc(1024, produced++));
      },
    });
    let consumed = 0;
    let maxAhead = 0;
    const dst = new Writable({
      highWaterMark: 2048,
      write(chunk: Buffer, _e, cb) {
        consumed += chunk.length / 1024;
        maxAhead = Math.max(maxAhead, produced - consumed);
        setTimeout(cb, 1);
      },
    });
    const how = await pump(src, dst, { signal: new AbortController().signal });
    assert.equal(how, 'end');
    await new Promise<void>((r) => dst.end(r));
    assert.equal(consumed, total);
    // Source buffer (4 bytes: one chunk) + destination buffer (2 KiB) + the chunk in hand.
    assert.ok(maxAhead <= 6, `read ${maxAhead} chunks ahead of the slow writer`);
  });

  it('holds the pump while the tap is busy, in order; a failing tap stops it', async () => {
    const src = new PassThrough();
    const seen: string[] = [];
    const dst = new PassThrough();
    dst.on('data', (b: Buffer) => seen.push(`out:${b.toString()}`));
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const done = pump(src, dst, {
      signal: new AbortController().signal,
      onChunk: (c) => {
        seen.push(`tap:${c.toString()}`);
        return c.toString() === 'a' ? gate : undefined;
      },
    });
    src.write('a');
    await sleep(10);
    src.write('b');
    await sleep(10);
    assert.deepEqual(seen, ['tap:a'], 'b waits for the tap to take a');
    release();
    await sleep(10);
    src.end();
    assert.equal(await done, 'end');
    assert.deepEqual(seen, ['tap:a', 'out:a', 'tap:b', 'out:b']);

    const src2 = new PassThrough();
    let error: unknown;
    const failing = pump(src2, new PassThrough(), {
      signal: new AbortController().signal,
      onChunk: () => Promise.reject(new Error('recorder down')),
      onError: (e) => (error = e),
    });
    src2.write('x');
    assert.equal(await failing, 'aborted');
    assert.match(String(error), /recorder down/);
  });

  it('stops when aborted or when the destination closes', async () => {
    const ac = new AbortController();
    const p = pump(new PassThrough(), new PassThrough(), { signal: ac.signal });
    ac.abort();
    assert.equal(await p, 'aborted');
    const dst = new PassThrough();
    const q = pump(new PassThrough(), dst, { signal: new AbortController().signal });
    dst.destroy();
    assert.equal(await q, 'closed');
  });
});

describe('relay books', () => {
  function fakeConnection(): ssh2.Connection {
    return Object.assign(new EventEmitter(), { end() {} }) as unknown as ssh2.Connection;
  }

  function setup(tap: SessionTap): { relay: Relay; audit: ProxyAuditEvent[]; client: ssh2.Connection } {
    const client = fakeConnection();
    const upstream = fakeConnection() as unknown as ssh2.Client;
    const audit: ProxyAuditEvent[] = [];
    const relay = new Relay({
      client,
      identity: { sessionId: 's1', user: 'alice', login: 'root', host: 'web01', clientAddress: '192.0.2.1', certSerial: 5n, certKeyId: 'alice req=1' },
      route: 'user-name',
      policy: { pty: true, portForwarding: false, agentForwarding: false, x11Forwarding: false },
      access: access('alice'),
      tap,
      upstream: Promise.resolve({ client: upstream, target: { name: 'web01.example.test', address: '127.0.0.1', port: 22, labels: {} } } as unknown as Upstream),
      deps: {
        audit: (name, fields) => audit.push({ name, time: 0, severity: 'info', fields: fields as ProxyAuditEvent['fields'] }),
        metrics: createProxyMetrics({ defaultMetrics: false }),
        log: () => {},
        now: Date.now,
        envAllowList: [],
      },
    });
    return { relay, audit, client };
  }

  it('calls the tap in order: start first (with the resolved host), every event and byte, end last', async () => {
    const calls: string[] = [];
    const slow = (s: string): Promise<void> => {
      calls.push(s);
      return sleep(5);
    };
    const tap: SessionTap = {
      start: (m: SessionMeta) => slow(`start ${m.host}`),
      output: (ch, stream, d) => slow(`out ${ch}/${stream} ${Buffer.from(d).toString()}`),
      input: (ch, d) => void calls.push(`in ${ch} ${Buffer.from(d).toString()}`),
      event: (e: ChannelEvent) => slow(`event ${e.type}`),
      end: (s) => void calls.push(`end ${s.bytesIn}/${s.bytesOut} ${s.reason}`),
    };
    const { relay, client, audit } = setup(tap);
    void relay.tapEvent({ type: 'open', channel: 0, kind: 'session' });
    void relay.tapOutput(0, 0, Buffer.from('hello'));
    void relay.tapInput(0, Buffer.from('ls'));
    relay.traffic(2, 5);
    await relay.tapEvent({ type: 'close', channel: 0 });
    client.emit('close');
    await sleep(20);
    assert.deepEqual(calls, ['start web01.example.test', 'event open', 'out 0/0 hello', 'in 0 ls', 'event close', 'end 2/5 client disconnected']);
    const end = audit.find((e) => e.name === 'session.end');
    assert.equal(end?.fields['host'], 'web01.example.test');
    assert.equal(end?.fields['bytesToClient'], 5);
  });

  it('a tap that fails ends the session as a recording failure', async () => {
    const tap: SessionTap = {
      start() {},
      output() {
        return Promise.reject(new ProxyError('ERR_TERMINATED', 'stream full'));
      },
      input() {},
      event() {},
      end() {},
    };
    const { relay, audit } = setup(tap);
    await sleep(5);
    await assert.rejects(Promise.resolve(relay.tapOutput(0, 0, Buffer.from('x'))), /stream full/);
    await sleep(5);
    const t = audit.find((e) => e.name === 'session.terminated');
    assert.equal(t?.fields['reason'], 'recording');
    assert.match(String(t?.fields['message']), /recording failed \(stream full\)/);
  });
});

describe('metrics', () => {
  it('exports the seed name with a closed result set, starting at zero', async () => {
    const m = createProxyMetrics({ defaultMetrics: false });
    m.certAuth('expired');
    m.certAuth('whatever' as never);
    const text = await m.text();
    assert.match(text, /^ssh_cert_auth_total\{result="expired"\} 1$/m);
    assert.match(text, /^ssh_cert_auth_total\{result="error"\} 1$/m);
    assert.match(text, /^ssh_cert_auth_total\{result="success"\} 0$/m);
    assert.doesNotMatch(text, /whatever/);
  });
});
