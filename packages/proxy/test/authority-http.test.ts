// The HTTP AuthorityClient's pieces without auth: response readers (pure), the pinned HTTPS
// client against a local TLS server (pin refusal before any byte, keep-alive, a stale socket),
// and notice polling against a scripted server. The contract against the real auth service is
// test/e2e/authority-http.test.ts.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Server } from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';
import { formatCertificate, publicPart } from '@portcullis/cert-core';
import { runOk, tempDir } from '@portcullis/harness';
import type { TempDir } from '@portcullis/harness';
import { HttpAuthority, PinnedHttps, authorityRequests, defaultDialAddress, failureOf, isProxyError, lockCovers, lockEndMessage, loginSessionOfKeyId, noticesBetween, readAccess, readHost, readIssued, readKrl, readLocks } from '../src/index.js';
import type { AuthorityNotice, HttpAnswer, LockNotice } from '../src/index.js';
import { StandInAuthority, newKey } from './support/authority.js';

const answer = (status: number, body: unknown, headers: Record<string, string> = {}): HttpAnswer => ({
  status,
  headers,
  body: Buffer.from(typeof body === 'string' ? body : JSON.stringify(body)),
});
const refusal = (code: string, message: string): { error: { code: string; message: string } } => ({ error: { code, message } });
const CREDENTIAL = 'c'.repeat(43);

describe('authority-http: requests name the client certificate', () => {
  const client = { serial: 18446744073709551615n, keyId: 'alice req=r1 sess=0123456789abcdef', fingerprint: `SHA256:${'a/+B'.repeat(10)}abc` };

  it('the access check carries serial, key id and fingerprint in the query (uint64 exact, escaped); without them it asks by user', () => {
    assert.equal(authorityRequests.access('alice').path, '/v1/proxy/access/alice');
    const q = new URL(`https://x${authorityRequests.access('alice', client).path}`).searchParams;
    assert.equal(q.get('serial'), '18446744073709551615');
    assert.equal(q.get('key_id'), client.keyId);
    assert.equal(q.get('fingerprint'), client.fingerprint);
  });

  it('the upstream request carries the client certificate', () => {
    const c = authorityRequests.upstream({ user: 'alice', login: 'root', host: 'web01', publicKey: publicPart(newKey()), client });
    assert.deepEqual((c.json as { client: unknown }).client, { serial: '18446744073709551615', key_id: client.keyId, fingerprint: client.fingerprint });
  });
});

describe('authority-http: reading auth\'s answers', () => {
  it('maps access: 200 to UserAccess, 403 and 423 to ERR_ACCESS_DENIED with auth\'s words, the rest to unavailable', () => {
    const a = readAccess(
      answer(200, {
        user: 'alice', roles: ['dev'], logins: ['root'], port_forwarding: true, agent_forwarding: false, x11_forwarding: false,
        record_session: 'strict', record_input: true, idle_timeout: 1800,
      }),
      'alice',
    );
    assert.deepEqual(a, {
      user: 'alice', roles: ['dev'], logins: ['root'], portForwarding: true, agentForwarding: false, x11Forwarding: false,
      recordSession: 'strict', recordInput: true, idleTimeout: 1800,
    });
    const locked = (): unknown => readAccess(answer(423, refusal('ERR_LOCKED', 'user "alice" is locked: incident 42')), 'alice');
    assert.throws(locked, (e) => isProxyError(e, 'ERR_ACCESS_DENIED') && e.message === 'user "alice" is locked: incident 42');
    assert.throws(() => readAccess(answer(403, refusal('ERR_FORBIDDEN', 'ca: user "bob" is disabled')), 'bob'), (e) => isProxyError(e, 'ERR_ACCESS_DENIED') && e.message === 'user "bob" is disabled');
    assert.throws(() => readAccess(answer(503, refusal('ERR_UNAVAILABLE', 'redis down')), 'bob'), (e) => isProxyError(e, 'ERR_AUTHORITY_UNAVAILABLE') && /503 ERR_UNAVAILABLE: redis down/.test(e.message));
    assert.throws(() => readAccess(answer(401, refusal('ERR_UNAUTHENTICATED', 'no')), 'bob'), (e) => isProxyError(e, 'ERR_AUTHORITY_UNAVAILABLE') && /enroll the proxy again/.test(e.message));
    // A malformed yes is never a yes.
    assert.throws(() => readAccess(answer(200, { user: 'alice', roles: [], logins: 'root' }), 'alice'), (e) => isProxyError(e, 'ERR_AUTHORITY_UNAVAILABLE'));
    assert.throws(() => readAccess(answer(200, '<html>'), 'alice'), (e) => isProxyError(e, 'ERR_AUTHORITY_UNAVAILABLE'));
  });

  it('maps hosts: unknown and ambiguous names, a proxy is not a target', () => {
    const h = readHost(answer(200, { name: 'web01.example.com', type: 'host', names: ['web01.example.com'], labels: { env: 'prod' } }), 'web01');
    assert.equal(h.name, 'web01.example.com');
    assert.deepEqual(defaultDialAddress(h), { address: 'web01.example.com', port: 22 });
    const withAddress = readHost(answer(200, { name: 'web02', type: 'host', names: ['web02'], labels: {}, address: '10.0.0.7', port: 2222 }), 'web02');
    assert.deepEqual(defaultDialAddress(withAddress), { address: '10.0.0.7', port: 2222 });
    assert.throws(() => readHost(answer(404, refusal('ERR_NOT_FOUND', 'x')), 'nope'), (e) => isProxyError(e, 'ERR_HOST_NOT_FOUND') && /"nope" is not registered/.test(e.message));
    assert.throws(
      () => readHost(answer(409, refusal('ERR_CONFLICT', 'hosts: "db" is ambiguous; did you mean db.eu, db.us?')), 'db'),
      (e) => isProxyError(e, 'ERR_HOST_AMBIGUOUS') && e.message === '"db" is ambiguous; did you mean db.eu, db.us?',
    );
    assert.throws(() => readHost(answer(200, { name: 'bastion', type: 'proxy', names: [], labels: {} }), 'bastion'), (e) => isProxyError(e, 'ERR_HOST_NOT_FOUND'));
  });

  it('reads the KRL with its ETag, 304 as unchanged', () => {
    assert.equal(readKrl(answer(304, '')), 'unchanged');
    const r = readKrl({ status: 200, headers: { etag: '"v7"' }, body: Buffer.from([1, 2, 3]) });
    assert.ok(r !== 'unchanged');
    assert.equal(r.etag, '"v7"');
    assert.deepEqual([...r.bytes], [1, 2, 3]);
    assert.throws(() => readKrl(answer(200, 'x')), (e) => isProxyError(e, 'ERR_AUTHORITY_UNAVAILABLE'));
  });

  it('accepts an issued certificate only of the kind asked for, for the key sent', () => {
    const auth = new StandInAuthority([]);
    const key = newKey();
    const user = auth.userCertificate('alice', { principals: ['root'] });
    const host = auth.hostCertificate(key, ['web01']);
    const body = (c: typeof host): unknown => ({ certificate: formatCertificate(c), serial: c.serial.toString() });
    const issued = readIssued(answer(200, body(host)), 'jump', 'host', publicPart(key));
    assert.equal(issued.serial, host.serial);
    assert.equal(issued.validBefore, host.validBefore);
    assert.throws(() => readIssued(answer(200, body(user)), 'jump', 'host', user.key), (e) => isProxyError(e, 'ERR_AUTHORITY_UNAVAILABLE') && /user certificate/.test(e.message));
    assert.throws(() => readIssued(answer(200, body(host)), 'jump', 'host', publicPart(newKey())), (e) => /another key/.test((e as Error).message));
    assert.throws(() => readIssued(answer(403, refusal('ERR_FORBIDDEN', 'ca: "alice" may not log in as "root"')), 'up', 'user', user.key), (e) => isProxyError(e, 'ERR_ACCESS_DENIED'));
    assert.throws(() => readIssued(answer(404, refusal('ERR_NOT_FOUND', 'hosts: no enrolled host')), 'up', 'user', user.key), (e) => isProxyError(e, 'ERR_HOST_NOT_FOUND'));
  });

  it('reads locks, leaving out a kind it does not know (a newer auth) instead of failing the list', () => {
    const locks = readLocks(answer(200, { locks: [
      { id: 'a', target: { kind: 'session', name: '0123456789abcdef' }, message: 'logged out' },
      { id: 'b', target: { kind: 'team', name: 'x' }, message: '' },
      { id: 'c', target: { kind: 'user', name: 'bob' } },
    ] }));
    assert.deepEqual(locks, [
      { id: 'a', target: { kind: 'session', name: '0123456789abcdef' }, message: 'logged out' },
      { id: 'c', target: { kind: 'user', name: 'bob' }, message: '' },
    ]);
    assert.throws(() => readLocks(answer(200, { locks: [{ id: 'a', target: { kind: 'user' } }] })), (e) => isProxyError(e, 'ERR_AUTHORITY_UNAVAILABLE'));
  });

  it('a session lock covers the live sessions whose certificate names that login session, and only those', () => {
    const id = { user: 'alice', login: 'root', host: 'web01', certKeyId: 'alice req=01J0ABC sess=0123456789abcdef' };
    assert.equal(loginSessionOfKeyId(id.certKeyId), '0123456789abcdef');
    assert.equal(loginSessionOfKeyId('alice req=x'), undefined);
    assert.equal(loginSessionOfKeyId('sess=0123456789abcdef'), undefined, 'the first field is the user');
    assert.equal(loginSessionOfKeyId('alice sess=0123456789ABCDEF'), undefined);
    assert.equal(lockCovers({ kind: 'session', name: '0123456789abcdef' }, id), true);
    assert.equal(lockCovers({ kind: 'session', name: 'fedcba9876543210' }, id), false);
    assert.equal(lockCovers({ kind: 'session', name: '0123456789abcdef' }, { ...id, certKeyId: 'alice req=x' }), false);
    assert.equal(lockCovers({ kind: 'user', name: 'alice' }, id), true);
    assert.equal(lockCovers({ kind: 'role', name: 'dev' }, id), false, 'role locks are left to the access re-check');
    assert.equal(lockEndMessage({ kind: 'session', name: '0123456789abcdef' }, 'logged out'), 'your login session 0123456789abcdef was revoked: logged out');
    assert.equal(lockEndMessage({ kind: 'user', name: 'carol' }, 'incident 42'), 'user "carol" was locked: incident 42');
  });

  it('turns polls into notices: new locks, a changed KRL; the first poll only learns', () => {
    const lock = (id: string, name: string): LockNotice => ({ id, target: { kind: 'user', name }, message: `why ${id}` });
    assert.deepEqual(noticesBetween({ lockIds: undefined, krlEtag: undefined }, [lock('a', 'alice')], '"1"'), []);
    const seen = { lockIds: new Set(['a']), krlEtag: '"1"' };
    assert.deepEqual(noticesBetween(seen, [lock('a', 'alice')], '"1"'), []);
    const n: AuthorityNotice[] = noticesBetween(seen, [lock('a', 'alice'), lock('b', 'bob')], '"2"');
    assert.deepEqual(n, [{ kind: 'lock', target: { kind: 'user', name: 'bob' }, message: 'why b' }, { kind: 'revocation' }]);
    // A failed poll (undefined) says nothing.
    assert.deepEqual(noticesBetween(seen, undefined, undefined), []);
  });

  it('names the status and code of an unexpected answer', () => {
    const e = failureOf(answer(500, 'oops'), 'doing x');
    assert.equal(e.code, 'ERR_AUTHORITY_UNAVAILABLE');
    assert.match(e.message, /doing x: auth answered 500 HTTP_500/);
  });
});

describe('authority-http: the pinned HTTPS client', () => {
  let dir: TempDir;
  let server: Server;
  let url = '';
  let fingerprint = '';
  const sockets = new Set<string>();
  const seenAuthorization: string[] = [];
  let locks: LockNotice[] = [];
  let krlVersion = 1;
  let handler: (req: IncomingMessage, res: ServerResponse) => void;

  before(async () => {
    dir = tempDir('portcullis-pinned-');
    // A self-signed P-256 certificate, as auth generates at its first start.
    await runOk('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
      '-keyout', dir.file('key.pem'), '-out', dir.file('cert.pem')]);
    const cert = readFileSync(dir.file('cert.pem'));
    fingerprint = new X509Certificate(cert).fingerprint256;
    handler = (req, res) => {
      seenAuthorization.push(String(req.headers.authorization ?? ''));
      res.setHeader('content-type', 'application/json');
      if (req.url === '/v1/proxy/locks') {
        res.end(JSON.stringify({ locks: locks.map((l) => ({ id: l.id, target: l.target, message: l.message, created_at: new Date().toISOString() })) }));
      } else if (req.url === '/v1/krl') {
        const etag = `"krl-${krlVersion}"`;
        res.setHeader('etag', etag);
        if (req.headers['if-none-match'] === etag) {
          res.statusCode = 304;
          res.end();
        } else {
          res.end(Buffer.from('krl bytes'));
        }
      } else {
        res.end(JSON.stringify({ path: req.url }));
      }
    };
    server = createServer({ key: readFileSync(dir.file('key.pem')), cert, keepAliveTimeout: 60_000 }, (req, res) => handler(req, res));
    server.on('secureConnection', (s) => sockets.add(`${s.remotePort}`));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    const a = server.address();
    url = `https://127.0.0.1:${typeof a === 'object' && a !== null ? a.port : 0}`;
  });

  after(() => {
    server?.closeAllConnections();
    server?.close();
    dir?.remove();
  });

  it('refuses a server whose certificate is not the pinned one, before sending anything', async () => {
    const before = seenAuthorization.length;
    const wrong = new PinnedHttps({ url, fingerprint: 'AB'.repeat(32) });
    await assert.rejects(wrong.request({ method: 'GET', path: '/v1/x', headers: { authorization: 'Bearer secret' } }), /not the pinned/);
    wrong.close();
    assert.equal(seenAuthorization.length, before, 'no request reached the server');
    assert.throws(() => new PinnedHttps({ url: url.replace('https', 'http'), fingerprint }), /https/);
    assert.throws(() => new PinnedHttps({ url, fingerprint: 'abc' }), /SHA-256/);
  });

  it('keeps one connection for a run of requests and survives the server closing it', async () => {
    const http = new PinnedHttps({ url, fingerprint: fingerprint.toLowerCase().replace(/:/g, '') });
    sockets.clear();
    for (let i = 0; i < 5; i++) assert.equal(JSON.parse((await http.request({ method: 'GET', path: `/v1/n/${i}` })).body.toString()).path, `/v1/n/${i}`);
    assert.equal(sockets.size, 1);
    // The server drops idle connections (auth's keep-alive timeout): the next request still works.
    server.closeIdleConnections();
    await sleep(50);
    const r = await http.request({ method: 'POST', path: '/v1/after', json: { a: 1 } });
    assert.equal(r.status, 200);
    http.close();
  });

  it('polls locks and the KRL for notices while someone listens, with the service credential', async () => {
    const authority = new HttpAuthority({ url, fingerprint, credential: CREDENTIAL, noticePollMs: 50 });
    locks = [{ id: 'l1', target: { kind: 'host', name: 'web01' }, message: 'old' }];
    const got: AuthorityNotice[] = [];
    const stop = authority.onNotice((n) => got.push(n));
    await sleep(200);
    assert.deepEqual(got, [], 'what exists at the first poll is only learned');
    locks = [...locks, { id: 'l2', target: { kind: 'user', name: 'alice' }, message: 'incident' }];
    krlVersion++;
    const deadline = Date.now() + 2_000;
    while (got.length < 2 && Date.now() < deadline) await sleep(20);
    assert.deepEqual(got, [{ kind: 'lock', target: { kind: 'user', name: 'alice' }, message: 'incident' }, { kind: 'revocation' }]);
    assert.ok(seenAuthorization.includes(`Bearer ${CREDENTIAL}`));
    stop();
    const n = seenAuthorization.length;
    await sleep(200);
    assert.ok(seenAuthorization.length <= n + 2, 'polling stops with the last listener');
    authority.close();
  });
});
