import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { AuthErrorCode } from '../src/errors.js';
import {
  type IssuanceFailureReason,
  ISSUANCE_FAILURE_REASONS,
  createAuthMetrics,
  issuanceFailureReason,
} from '../src/metrics.js';

test("metrics: the seed's names are exported, closed label sets start at zero", async () => {
  const m = createAuthMetrics();
  const text = await m.text();
  for (const name of [
    'ssh_ca_certificates_issued_total',
    'ssh_ca_issuance_failures_total',
    'ssh_revoked_certs_total',
    'ssh_ca_cert_age_seconds',
    'ssh_ca_host_cert_expiry_timestamp_seconds',
    'portcullis_auth_http_request_duration_seconds',
    'portcullis_audit_sink_failures_total',
    'portcullis_embedded_redis_restarts_total',
  ]) {
    assert.match(text, new RegExp(`^# TYPE ${name} `, 'm'), name);
  }
  assert.match(text, /^# TYPE ssh_revoked_certs_total gauge$/m);
  assert.match(text, /^ssh_ca_certificates_issued_total\{kind="user"\} 0$/m);
  assert.match(text, /^ssh_ca_certificates_issued_total\{kind="host"\} 0$/m);
  for (const reason of ISSUANCE_FAILURE_REASONS) assert.match(text, new RegExp(`^ssh_ca_issuance_failures_total\\{reason="${reason}"\\} 0$`, 'm'));
  assert.match(text, /^process_cpu_user_seconds_total /m, 'default process metrics');
  assert.match(m.contentType, /^text\/plain/);
  assert.doesNotMatch(await createAuthMetrics({ defaultMetrics: false }).text(), /process_cpu/);
});

test('metrics: counters and gauges move; no label takes request data', async () => {
  const m = createAuthMetrics({ defaultMetrics: false });
  m.certificateIssued('user');
  m.certificateIssued('user');
  m.certificateIssued('host');
  m.issuanceFailed('locked');
  m.setRevokedCertificates(7);
  m.auditSinkFailed('redis');
  m.embeddedRedisRestarted();
  const text = await m.text();
  assert.match(text, /^ssh_ca_certificates_issued_total\{kind="user"\} 2$/m);
  assert.match(text, /^ssh_ca_certificates_issued_total\{kind="host"\} 1$/m);
  assert.match(text, /^ssh_ca_issuance_failures_total\{reason="locked"\} 1$/m);
  assert.match(text, /^ssh_revoked_certs_total 7$/m);
  assert.match(text, /^portcullis_audit_sink_failures_total\{sink="redis"\} 1$/m);
  assert.match(text, /^portcullis_embedded_redis_restarts_total 1$/m);
  assert.doesNotMatch(text, /principal|key_id|user="/);

  // Typed callers cannot pass anything else; untyped ones are stopped at run time.
  assert.throws(() => m.certificateIssued('alice' as 'user'), TypeError);
  assert.throws(() => m.issuanceFailed('principal alice not allowed' as IssuanceFailureReason), TypeError);
});

test('metrics: every AuthError code maps to a failure reason in the closed set', () => {
  const codes: AuthErrorCode[] = [
    'ERR_BAD_REQUEST', 'ERR_UNAUTHENTICATED', 'ERR_FORBIDDEN', 'ERR_MFA_REQUIRED', 'ERR_MFA_INVALID', 'ERR_NOT_FOUND',
    'ERR_CONFLICT', 'ERR_EXPIRED', 'ERR_RATE_LIMITED', 'ERR_LOCKED', 'ERR_UNAVAILABLE', 'ERR_CONFIG',
  ];
  for (const c of codes) assert.ok(ISSUANCE_FAILURE_REASONS.includes(issuanceFailureReason(c)), c);
  assert.equal(issuanceFailureReason('ERR_LOCKED'), 'locked');
  assert.equal(issuanceFailureReason(undefined), 'internal');
});

test('metrics: host certificate age is computed at scrape time; hosts are capped and removable', async () => {
  let nowMs = Date.parse('2026-03-01T00:00:00Z');
  const m = createAuthMetrics({ defaultMetrics: false, now: () => nowMs, maxHosts: 2 });
  const validAfter = nowMs / 1000 - 60;
  m.setHostCertificate('web01', { validAfter, validBefore: validAfter + 30 * 86400 });
  m.setHostCertificate('web02', { validAfter, validBefore: validAfter + 86400 });
  m.setHostCertificate('web03', { validAfter, validBefore: validAfter + 86400 });
  let text = await m.text();
  assert.match(text, /^ssh_ca_cert_age_seconds\{host="web01"\} 60$/m);
  assert.match(text, new RegExp(`^ssh_ca_host_cert_expiry_timestamp_seconds\\{host="web02"\\} ${validAfter + 86400}$`, 'm'));
  assert.doesNotMatch(text, /web03/);
  assert.match(text, /^portcullis_metrics_hosts_dropped_total 1$/m);

  nowMs += 3_600_000;
  m.removeHostCertificate('web02');
  text = await m.text();
  assert.match(text, /^ssh_ca_cert_age_seconds\{host="web01"\} 3660$/m);
  assert.doesNotMatch(text, /web02/);
  // Renewal replaces the series rather than adding one.
  m.setHostCertificate('web01', { validAfter: nowMs / 1000, validBefore: nowMs / 1000 + 86400 });
  assert.match(await m.text(), /^ssh_ca_cert_age_seconds\{host="web01"\} 0$/m);
});

test('metrics: HTTP latency by route template, with unmatched routes and odd methods folded', async () => {
  const m = createAuthMetrics({ defaultMetrics: false });
  m.observeHttpRequest({ method: 'post', route: '/v1/certs/user', status: 200, seconds: 0.004 });
  m.observeHttpRequest({ method: 'GET', route: undefined, status: 404, seconds: 0.001 });
  m.observeHttpRequest({ method: 'BREW', route: 'not-a-template', status: 999, seconds: 0.001 });
  const text = await m.text();
  assert.match(text, /^portcullis_auth_http_request_duration_seconds_bucket\{le="0\.005",method="POST",route="\/v1\/certs\/user",status="200"\} 1$/m);
  assert.match(text, /^portcullis_auth_http_request_duration_seconds_count\{method="GET",route="unmatched",status="404"\} 1$/m);
  assert.match(text, /^portcullis_auth_http_request_duration_seconds_count\{method="OTHER",route="unmatched",status="0"\} 1$/m);
});
