import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AUDIT_EVENTS, type AuditEventName, auditEventName, auditSeverity } from '../src/audit/codes.js';
import { REDACTED, SYSTEM_ACTOR, createAuditEvent, isSecretFieldName, redactAuditFields } from '../src/audit/event.js';
import { AuditLog } from '../src/audit/log.js';
import { matchesAuditQuery, parseAuditStreamEntry } from '../src/audit/query.js';
import { type AuditSink, auditJsonLine, auditStreamEntry } from '../src/audit/sinks.js';

const T = new Date('2026-03-01T12:00:00.123Z');
const alice = { kind: 'user', name: 'alice', address: '192.0.2.10' } as const;

test('audit codes: unique, well-formed, severity matching the name', () => {
  const names = Object.keys(AUDIT_EVENTS) as AuditEventName[];
  const codes = names.map((n) => AUDIT_EVENTS[n].code);
  assert.equal(new Set(codes).size, codes.length, 'a code is used twice');
  assert.equal(new Set(codes.map((c) => c.slice(0, 6))).size, codes.length, 'two codes differ only in severity');
  for (const n of names) {
    const { code, description } = AUDIT_EVENTS[n];
    assert.match(code, /^PC\d{4}[IWE]$/, n);
    assert.match(n, /^[a-z_]+\.[a-z_]+$/, n);
    assert.ok(description.length > 10, n);
    assert.equal(auditEventName(code), n);
    // Refusals and failures are never filed as plain information.
    if (/failed|refused|exceeded|terminated|breakglass/.test(n)) assert.notEqual(auditSeverity(code), 'info', n);
  }
  // The ones the issue names exist.
  for (const n of ['cert.issued', 'cert.refused', 'user.login', 'user.login_failed', 'mfa.failed', 'host.enrolled', 'token.created', 'token.used', 'cert.revoked', 'lock.created', 'lock.removed', 'session.start', 'session.end', 'session.refused', 'admin.action']) {
    assert.ok(n in AUDIT_EVENTS, n);
  }
  assert.equal(auditEventName('PC0000I'), undefined);
  assert.equal(auditSeverity('PC9002E'), 'error');
});

test('audit events: field names that read like secrets are redacted, attributes of them are not', () => {
  const secret = [
    'password', 'newPassword', 'password_hash', 'passphrase', 'secret', 'client_secret', 'clientSecret',
    'token', 'sessionToken', 'session_token', 'join-token', 'refresh_token', 'id_token', 'accessToken',
    'private_key', 'privateKey', 'PrivateKeyPEM', 'key', 'key_material', 'keyMaterial', 'signing_key',
    'totp', 'totp_code', 'TOTPCode', 'otp', 'mfa_code', 'code', 'auth_code', 'device_code', 'recovery_code',
    'cookie', 'authorization', 'credentials', 'api_key', 'apiKey', 'code_verifier', 'pkce_verifier', 'seed', '',
  ];
  const harmless = [
    'user', 'principals', 'serial', 'key_id', 'keyId', 'key_fingerprint', 'key_type', 'public_key',
    'token_type', 'token_id', 'tokenTtl', 'token_expires', 'password_set', 'mfa_required', 'totp_enrolled',
    'reason', 'exit_code', 'status_code', 'host', 'login', 'valid_before', 'requester', 'target', 'roles',
  ];
  for (const n of secret) assert.ok(isSecretFieldName(n), `${n} should be secret`);
  for (const n of harmless) assert.ok(!isSecretFieldName(n), `${n} should be allowed`);

  const { fields, redacted } = redactAuditFields({
    user: 'alice',
    password: 'hunter2',
    session_token: 'pcs_abc',
    note: '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEA\n-----END OPENSSH PRIVATE KEY-----',
    header: 'Bearer abc.def',
    claims: ['ok', 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl'],
    key_id: 'alice@portcullis',
    mfa_required: true,
  });
  assert.deepEqual(fields, {
    user: 'alice',
    password: REDACTED,
    session_token: REDACTED,
    note: REDACTED,
    header: REDACTED,
    claims: REDACTED,
    key_id: 'alice@portcullis',
    mfa_required: true,
  });
  assert.deepEqual(redacted.sort(), ['claims', 'header', 'note', 'password', 'session_token']);
});

test('audit events: built purely from name, actor, fields and time; values normalized', () => {
  const e = createAuditEvent(
    'cert.issued',
    alice,
    {
      serial: 18446744073709551615n,
      principals: ['ubuntu', 'deploy'],
      valid_after: new Date('2026-03-01T11:59:00Z'),
      ttl_seconds: 300,
      nan: Number.NaN,
      skipped: undefined,
      token: 'never stored',
    },
    T,
  );
  assert.deepEqual(e, {
    code: 'PC2000I',
    name: 'cert.issued',
    time: '2026-03-01T12:00:00.123Z',
    actor: alice,
    fields: {
      serial: '18446744073709551615',
      principals: ['ubuntu', 'deploy'],
      valid_after: '2026-03-01T11:59:00.000Z',
      ttl_seconds: 300,
      nan: null,
      token: REDACTED,
    },
  });
  assert.throws(() => createAuditEvent('cert.made_up' as AuditEventName, alice, {}, T), TypeError);
  assert.throws(() => createAuditEvent('cert.issued', alice, {}, new Date(Number.NaN)), TypeError);
});

test('audit events: stream entry and JSON line round-trip; bad entries are skipped, not thrown', () => {
  const e = createAuditEvent('lock.created', SYSTEM_ACTOR, { user: 'bob', lock_id: 'l1', expires: T }, T);
  const back = parseAuditStreamEntry('1772366400123-0', auditStreamEntry(e));
  assert.deepEqual(back, { id: '1772366400123-0', ...e });
  const line = auditJsonLine(e);
  assert.ok(line.endsWith('\n') && !line.slice(0, -1).includes('\n'));
  assert.deepEqual(JSON.parse(line), { time: e.time, code: 'PC4000I', name: 'lock.created', severity: 'info', actor: SYSTEM_ACTOR, fields: e.fields });

  const entry = auditStreamEntry(e);
  const broken = (i: number, v: string): string[] => entry.map((x, j) => (j === i ? v : x));
  assert.equal(parseAuditStreamEntry('1-0', broken(1, '2')), undefined, 'unknown format version');
  assert.equal(parseAuditStreamEntry('1-0', broken(3, 'PC0001I')), undefined, 'unknown code');
  assert.equal(parseAuditStreamEntry('1-0', broken(5, 'cert.issued')), undefined, 'code and name disagree');
  assert.equal(parseAuditStreamEntry('1-0', broken(9, '{not json')), undefined);
  assert.equal(parseAuditStreamEntry('1-0', broken(11, '[]')), undefined);
  assert.equal(parseAuditStreamEntry('1-0', []), undefined);

  assert.ok(matchesAuditQuery(e, { user: 'bob' }), 'the user field matches');
  assert.ok(matchesAuditQuery(e, { user: 'auth' }), 'the actor matches');
  assert.ok(!matchesAuditQuery(e, { user: 'carol' }));
  assert.ok(matchesAuditQuery(e, { codes: ['PC4000I'] }));
  assert.ok(matchesAuditQuery(e, { codes: ['cert.issued', 'lock.created'] }));
  assert.ok(!matchesAuditQuery(e, { codes: ['cert.issued'], user: 'bob' }));
});

function memorySink(name: string, behave: 'ok' | 'throw' | 'reject' | 'hang' = 'ok'): AuditSink & { got: string[] } {
  const got: string[] = [];
  return {
    name,
    got,
    write(event) {
      if (behave === 'throw') throw new Error(`${name} exploded`);
      if (behave === 'reject') return Promise.reject(new Error(`${name} is down`));
      if (behave === 'hang') return new Promise(() => undefined);
      got.push(event.name);
      return Promise.resolve();
    },
  };
}

test('AuditLog: every sink gets the event; failures are counted and returned, never thrown', async () => {
  const counted: string[] = [];
  const reported: string[] = [];
  const good = memorySink('jsonl');
  const log = new AuditLog({
    sinks: [good, memorySink('redis', 'reject'), memorySink('sync', 'throw'), memorySink('slow', 'hang')],
    now: () => T,
    sinkTimeoutMs: 100,
    metrics: { auditSinkFailed: (s) => counted.push(s) },
    onSinkFailure: (f) => {
      reported.push(`${f.sink}: ${f.message}`);
      throw new Error('a broken reporter is ignored');
    },
  });
  const r = await log.emit('user.login_failed', { kind: 'anonymous', name: 'bob', address: '198.51.100.7' }, { reason: 'bad password' });
  assert.deepEqual(good.got, ['user.login_failed']);
  assert.equal(r.event.time, T.toISOString());
  assert.deepEqual(r.failures, [
    { sink: 'redis', message: 'redis is down' },
    { sink: 'sync', message: 'sync exploded' },
    { sink: 'slow', message: 'no answer within 100 ms' },
  ]);
  assert.deepEqual(counted, ['redis', 'sync', 'slow']);
  assert.equal(reported.length, 3);
  await log.emit('user.login', alice);
  assert.deepEqual([...log.failureCounts()], [['redis', 2], ['sync', 2], ['slow', 2]]);

  assert.throws(() => new AuditLog({ sinks: [] }), TypeError);
  assert.throws(() => new AuditLog({ sinks: [memorySink('a'), memorySink('a')] }), TypeError);
});
