import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { test } from 'node:test';
import { hasTool, startRedis, tempDir } from '@portcullis/harness';
import { AuditLog } from '../src/audit/log.js';
import { queryAuditEvents } from '../src/audit/query.js';
import { jsonLinesSink, openJsonLinesFile, redisStreamSink } from '../src/audit/sinks.js';
import { isAuthError } from '../src/errors.js';
import { createAuthMetrics } from '../src/metrics.js';
import { auditEventsKey } from '../src/store/keys.js';
import { connectRedis } from '@portcullis/store';
import { PassThrough } from 'node:stream';

const skip = !hasTool('redis-server') && 'redis-server is not installed';
const alice = { kind: 'user', name: 'alice' } as const;
const admin = { kind: 'user', name: 'root-admin' } as const;

function readLines(path: string): Array<Record<string, unknown>> {
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

test('audit: events land in the Redis stream and in a JSON lines file, and read back by time, user and code', { skip }, async (t) => {
  const tmp = tempDir();
  t.after(() => tmp.remove());
  const server = await startRedis({ dir: tmp.path });
  t.after(() => server.stop());
  const conn = await connectRedis({ url: server.url });
  t.after(() => conn.close());
  const file = await openJsonLinesFile(tmp.file('audit.jsonl'));
  const log = new AuditLog({ sinks: [file, redisStreamSink(conn.client)] });
  t.after(() => log.close());

  const r1 = await log.emit('user.login', alice, { method: 'oidc', mfa: 'totp' });
  assert.deepEqual(r1.failures, []);
  await log.emit('cert.issued', alice, { serial: 42n, principals: ['ubuntu'], key_id: 'alice', ttl_seconds: 300 });
  // Stream ids have millisecond resolution: keep the boundary clear of both neighbours.
  await new Promise((resolve) => setTimeout(resolve, 5));
  const middle = new Date();
  await new Promise((resolve) => setTimeout(resolve, 5));
  await log.emit('lock.created', admin, { user: 'alice', reason: 'offboarding' });
  await log.emit('cert.refused', alice, { reason: 'locked', password: 'should never appear' });

  // The stream, as redis-cli shows it
  const raw = await conn.client.xrange(auditEventsKey(), '-', '+');
  assert.equal(raw.length, 4);
  const [, firstFields] = raw[0] ?? ['', []];
  assert.deepEqual(firstFields.slice(0, 6), ['v', '1', 'code', 'PC1000I', 'name', 'user.login']);
  assert.ok(!JSON.stringify(raw).includes('should never appear'));

  // The file: same events, in order, 0600
  assert.equal(statSync(tmp.file('audit.jsonl')).mode & 0o777, 0o600);
  const lines = readLines(tmp.file('audit.jsonl'));
  assert.deepEqual(lines.map((l) => l['code']), ['PC1000I', 'PC2000I', 'PC4000I', 'PC2001W']);
  assert.deepEqual((lines[1]?.['fields'] as Record<string, unknown>)['serial'], '42');
  assert.equal(lines[3]?.['severity'], 'warning');
  assert.ok(!readFileSync(tmp.file('audit.jsonl'), 'utf8').includes('should never appear'));

  // Queries for the CLI
  const all = await queryAuditEvents(conn.client);
  assert.deepEqual(all.map((e) => e.name), ['user.login', 'cert.issued', 'lock.created', 'cert.refused']);
  assert.match(all[0]?.id ?? '', /^\d+-\d+$/);
  assert.deepEqual((await queryAuditEvents(conn.client, { user: 'alice' })).length, 4, 'acted or named in the user field');
  assert.deepEqual((await queryAuditEvents(conn.client, { user: 'root-admin' })).map((e) => e.name), ['lock.created']);
  assert.deepEqual((await queryAuditEvents(conn.client, { codes: ['PC2000I', 'cert.refused'] })).map((e) => e.code), ['PC2000I', 'PC2001W']);
  assert.deepEqual((await queryAuditEvents(conn.client, { from: middle })).map((e) => e.name), ['lock.created', 'cert.refused']);
  assert.deepEqual((await queryAuditEvents(conn.client, { to: middle })).map((e) => e.name), ['user.login', 'cert.issued']);
  assert.deepEqual((await queryAuditEvents(conn.client, { newestFirst: true, limit: 2 })).map((e) => e.name), ['cert.refused', 'lock.created']);

  // An entry some other writer put there does not break reading the rest.
  await conn.client.xadd(auditEventsKey(), '*', 'garbage', 'yes');
  assert.equal((await queryAuditEvents(conn.client)).length, 4);
});

test('audit: queries page through a long stream; MAXLEN ~ bounds it', { skip }, async (t) => {
  const tmp = tempDir();
  t.after(() => tmp.remove());
  const server = await startRedis({ dir: tmp.path });
  t.after(() => server.stop());
  const conn = await connectRedis({ url: server.url });
  t.after(() => conn.close());
  const out = new PassThrough();
  out.resume();
  const log = new AuditLog({ sinks: [jsonLinesSink(out), redisStreamSink(conn.client, { maxLen: 5_000 })] });
  await Promise.all(Array.from({ length: 1_234 }, (_, i) => log.emit('token.used', { kind: 'host', name: `web${i % 7}` }, { n: i })));
  const got = await queryAuditEvents(conn.client, { limit: 10_000 });
  assert.equal(got.length, 1_234);
  assert.deepEqual(new Set(got.map((e) => e.fields['n'])).size, 1_234);
  const newest = await queryAuditEvents(conn.client, { newestFirst: true, limit: 10_000 });
  assert.deepEqual(newest.map((e) => e.id), got.map((e) => e.id).reverse());
  assert.equal((await queryAuditEvents(conn.client, { user: 'web3', limit: 10_000 })).length, 176);

  const small = new AuditLog({ sinks: [redisStreamSink(conn.client, { maxLen: 100 })] });
  for (let i = 0; i < 1_000; i++) await small.emit('token.used', { kind: 'host', name: 'h' });
  const len = await conn.client.xlen(auditEventsKey());
  // "~" trims whole stream nodes (100 entries each by default), so the length is near, not at, 100.
  assert.ok(len >= 100 && len <= 300, `XLEN ${len}`);
});

test('audit: with Redis down the JSON line is still written, and the failure is counted, not thrown', { skip }, async (t) => {
  const tmp = tempDir();
  t.after(() => tmp.remove());
  const server = await startRedis({ dir: tmp.path });
  t.after(() => server.stop());
  const clientErrors: string[] = [];
  const conn = await connectRedis({ url: server.url }, { maxRetriesPerRequest: 1, onClientError: (m) => clientErrors.push(m) });
  t.after(() => conn.close());
  const metrics = createAuthMetrics({ defaultMetrics: false });
  const file = await openJsonLinesFile(tmp.file('audit.jsonl'));
  const log = new AuditLog({ sinks: [file, redisStreamSink(conn.client)], metrics, sinkTimeoutMs: 3_000 });
  t.after(() => log.close());

  assert.deepEqual((await log.emit('user.login', alice)).failures, []);
  await server.stop();

  const started = Date.now();
  const r = await log.emit('cert.refused', alice, { reason: 'unavailable' });
  assert.ok(Date.now() - started < 4_000, 'the caller is not held up for long');
  assert.deepEqual(r.failures.map((f) => f.sink), ['redis']);
  assert.deepEqual(readLines(tmp.file('audit.jsonl')).map((l) => l['name']), ['user.login', 'cert.refused']);
  assert.match(await metrics.text(), /^portcullis_audit_sink_failures_total\{sink="redis"\} 1$/m);
  assert.equal(log.failureCounts().get('redis'), 1);
  assert.equal(log.failureCounts().get('jsonl'), undefined);
  assert.match(clientErrors[0] ?? '', /^store: redis at redis:\/\/127\.0\.0\.1:\d+: connect ECONNREFUSED/);

  // A file that cannot be opened is a configuration error at startup.
  await assert.rejects(openJsonLinesFile(tmp.file('no/such/dir/audit.jsonl')), (e: unknown) => isAuthError(e, 'ERR_CONFIG') && /cannot open/.test(e.message));
});

test('audit: a broken JSON lines stream fails its writes without crashing the process', async () => {
  const out = new PassThrough();
  const sink = jsonLinesSink(out);
  out.destroy(new Error('EPIPE: the log shipper went away'));
  await new Promise((resolve) => setImmediate(resolve));
  const counted: string[] = [];
  const log = new AuditLog({ sinks: [sink], metrics: { auditSinkFailed: (s) => counted.push(s) } });
  const r = await log.emit('user.login', alice);
  assert.deepEqual(r.failures, [{ sink: 'jsonl', message: 'EPIPE: the log shipper went away' }]);
  assert.deepEqual(counted, ['jsonl']);
});
