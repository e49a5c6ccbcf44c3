// The pure issuance decisions: what goes into a certificate, or which AuthError refuses it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { permissionsFromOptions, publicPart, NO_PERMISSIONS, optionString } from '@portcullis/cert-core';
import type { PublicKey } from '@portcullis/cert-core';
import { nodeCrypto } from '@portcullis/cert-core/node';
import { parseRoleYaml } from '../src/roles/schema.js';
import { combineRoles } from '../src/roles/policy.js';
import type { AccessPolicy } from '../src/roles/policy.js';
import {
  decideHostCertificate,
  decideJumpHostCertificate,
  decideUpstreamCertificate,
  decideUserCertificate,
  normalizeHostPrincipal,
  pinnedSourceAddress,
  refusalReason,
  withSerial,
} from '../src/ca/issue.js';
import type { CertificateDraft, Decision } from '../src/ca/issue.js';
import { loginSessionOfKeyId } from '../src/ca/client-certificate.js';

const NOW = Date.UTC(2026, 0, 2, 3, 4, 5, 678);
const NOW_S = BigInt(Math.floor(NOW / 1000));

function policy(yaml: string, username = 'alice'): AccessPolicy {
  return combineRoles([parseRoleYaml(yaml)], { username, claims: {} });
}

const dev = policy(`
kind: role
name: dev
spec:
  allow:
    logins: ['{{user.name}}', ubuntu]
    host_labels: { env: dev }
  options:
    max_cert_ttl: 10m
`);

const ed = publicPart(nodeCrypto.generate('ssh-ed25519'));

function value(d: Decision<CertificateDraft>): CertificateDraft {
  assert.ok(d.ok, d.ok ? '' : `refused: ${d.error.message}`);
  return d.value;
}

function refused(d: Decision<CertificateDraft>, code: string, reason: string, message?: RegExp): void {
  assert.equal(d.ok, false, 'expected a refusal');
  if (d.ok) return;
  assert.equal(d.error.code, code, d.error.message);
  assert.equal(refusalReason(d.error), reason);
  if (message) assert.match(d.error.message, message);
}

const base = { user: 'alice', policy: dev, publicKey: ed, requestId: 'r1', now: NOW, mfaVerified: false };

test('user certificate: principals exactly the logins, 5 min default, back-dated one minute', () => {
  const c = value(decideUserCertificate(base));
  assert.equal(c.kind, 'user');
  assert.deepEqual(c.principals, ['alice', 'ubuntu']);
  assert.equal(c.validAfter, NOW_S - 60n);
  assert.equal(c.validBefore, NOW_S + 300n);
  assert.equal(c.keyId, 'alice req=r1');
  assert.deepEqual(c.criticalOptions, []);
  const p = permissionsFromOptions(c.criticalOptions ?? [], c.extensions ?? []);
  assert.deepEqual(p, { ...NO_PERMISSIONS, pty: true });
  assert.equal(withSerial(c, 7n).serial, 7n);
});

test('user certificate: the key id names the login session it was minted under, which key ids read back', () => {
  const session = 'a1b2c3d4e5f60718' + '0'.repeat(48);
  const c = value(decideUserCertificate({ ...base, loginSession: session }));
  assert.equal(c.keyId, 'alice req=r1 sess=a1b2c3d4e5f60718');
  assert.equal(loginSessionOfKeyId(c.keyId), 'a1b2c3d4e5f60718');
  for (const none of ['alice req=r1', 'alice req=r1 via=bastion', 'alice sess=XYZ', 'alice req=r1 sess=a1b2c3d4e5f6071', 'sess=a1b2c3d4e5f60718']) {
    assert.equal(loginSessionOfKeyId(none), undefined, none);
  }
  refused(decideUserCertificate({ ...base, loginSession: 'not hex' }), 'ERR_BAD_REQUEST', 'bad_request', /loginSession/);
});

test('user certificate: requested lifetime is capped by the roles', () => {
  assert.equal(value(decideUserCertificate({ ...base, requestedTtl: 120 })).validBefore, NOW_S + 120n);
  assert.equal(value(decideUserCertificate({ ...base, requestedTtl: 86400 })).validBefore, NOW_S + 600n);
  refused(decideUserCertificate({ ...base, requestedTtl: 0 }), 'ERR_BAD_REQUEST', 'bad_request', /requestedTtl/);
  refused(decideUserCertificate({ ...base, requestedTtl: 1.5 }), 'ERR_BAD_REQUEST', 'bad_request');
});

test('user certificate: forwarding extensions only when a role allows them', () => {
  const open = policy(`
kind: role
name: open
spec:
  allow: { logins: [ubuntu] }
  options: { port_forwarding: true, agent_forwarding: true, x11_forwarding: true }
`);
  const c = value(decideUserCertificate({ ...base, policy: open }));
  assert.deepEqual(
    (c.extensions ?? []).map((e) => e.name),
    ['permit-X11-forwarding', 'permit-agent-forwarding', 'permit-port-forwarding', 'permit-pty'],
  );
  const agentOnly = { ...dev, agentForwarding: true };
  const d = value(decideUserCertificate({ ...base, policy: agentOnly }));
  assert.deepEqual((d.extensions ?? []).map((e) => e.name), ['permit-agent-forwarding', 'permit-pty']);
});

test('user certificate: never without principals', () => {
  const none = policy(`
kind: role
name: none
spec:
  allow: { logins: [root] }
  deny: { logins: [root] }
`);
  refused(decideUserCertificate({ ...base, policy: none }), 'ERR_FORBIDDEN', 'no_logins', /no role of "alice" allows any login/);
  refused(decideUserCertificate({ ...base, policy: combineRoles([], { username: 'alice', claims: {} }) }), 'ERR_FORBIDDEN', 'no_roles');
});

test('user certificate: per-session MFA', () => {
  const strict = { ...dev, requireSessionMfa: true };
  refused(decideUserCertificate({ ...base, policy: strict }), 'ERR_MFA_REQUIRED', 'mfa_required');
  assert.ok(decideUserCertificate({ ...base, policy: strict, mfaVerified: true }).ok);
});

test('user certificate: source-address pinned when a role says so', () => {
  const pinned = { ...dev, pinSourceIp: true };
  const c = value(decideUserCertificate({ ...base, policy: pinned, sourceAddress: '::ffff:192.0.2.7' }));
  const opt = (c.criticalOptions ?? []).find((o) => o.name === 'source-address');
  assert.ok(opt);
  assert.equal(optionString(opt), '192.0.2.7/32');
  const v6 = value(decideUserCertificate({ ...base, policy: pinned, sourceAddress: '2001:DB8::1' }));
  assert.equal(optionString((v6.criticalOptions ?? [])[0]!), '2001:db8::1/128');
  refused(decideUserCertificate({ ...base, policy: pinned }), 'ERR_FORBIDDEN', 'source_address_required');
  refused(decideUserCertificate({ ...base, policy: pinned, sourceAddress: 'example.com' }), 'ERR_FORBIDDEN', 'source_address_required');
  // Not pinned: the address is ignored.
  assert.deepEqual(value(decideUserCertificate({ ...base, sourceAddress: '192.0.2.7' })).criticalOptions, []);
});

test('pinnedSourceAddress', () => {
  assert.equal(pinnedSourceAddress('10.0.0.1'), '10.0.0.1/32');
  assert.equal(pinnedSourceAddress('::1'), '::1/128');
  assert.equal(pinnedSourceAddress('fe80::1%eth0'), undefined);
  assert.equal(pinnedSourceAddress('10.0.0.0/8'), undefined);
});

test('user certificate: refused key types and sizes', () => {
  const rsa1024: PublicKey = { type: 'ssh-rsa', e: 65537n, n: (1n << 1023n) | 1n };
  refused(decideUserCertificate({ ...base, publicKey: rsa1024 }), 'ERR_BAD_REQUEST', 'bad_key', /1024-bit RSA key is too small/);
  const rsa2048 = publicPart(nodeCrypto.generate('ssh-rsa', { bits: 2048 }));
  assert.ok(decideUserCertificate({ ...base, publicKey: rsa2048 }).ok);
  const bogus = { type: 'ssh-dss', p: 1n } as unknown as PublicKey;
  refused(decideUserCertificate({ ...base, publicKey: bogus }), 'ERR_BAD_REQUEST', 'bad_key', /ssh-dss/);
  for (const t of ['ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521'] as const) {
    assert.ok(decideUserCertificate({ ...base, publicKey: publicPart(nodeCrypto.generate(t)) }).ok, t);
  }
  const sk: PublicKey = { type: 'sk-ssh-ed25519@openssh.com', publicKey: ed.type === 'ssh-ed25519' ? ed.publicKey : new Uint8Array(32), application: 'ssh:' };
  assert.ok(decideUserCertificate({ ...base, publicKey: sk }).ok);
  refused(decideHostCertificate({ hostname: 'h', publicKey: sk, now: NOW, requestId: 'r' }), 'ERR_BAD_REQUEST', 'bad_key', /security key/);
});

test('user certificate: the subject key is copied without extra fields', () => {
  const priv = nodeCrypto.generate('ssh-ed25519');
  const c = value(decideUserCertificate({ ...base, publicKey: priv }));
  assert.deepEqual(Object.keys(c.key).sort(), ['publicKey', 'type']);
});

test('key ids and request ids are checked', () => {
  refused(decideUserCertificate({ ...base, requestId: 'has space' }), 'ERR_BAD_REQUEST', 'bad_request', /requestId/);
  refused(decideUserCertificate({ ...base, requestId: '' }), 'ERR_BAD_REQUEST', 'bad_request');
  refused(decideUserCertificate({ ...base, user: 'al ice' }), 'ERR_BAD_REQUEST', 'bad_request', /"user"/);
  refused(decideUserCertificate({ ...base, user: 'a\nb' }), 'ERR_BAD_REQUEST', 'bad_request');
});

const upstreamBase = {
  user: 'alice',
  policy: dev,
  login: 'ubuntu',
  host: { name: 'web01', labels: { env: 'dev' } },
  publicKey: ed,
  now: NOW,
  requestId: 'up1',
  proxy: 'bastion-1',
};

test('upstream certificate: one login, a minute of use plus five of clock skew either way, only where canLogin says yes', () => {
  const c = value(decideUpstreamCertificate(upstreamBase));
  assert.deepEqual(c.principals, ['ubuntu']);
  // A target up to 5 minutes off either way still accepts it.
  assert.equal(c.validAfter, NOW_S - 300n);
  assert.equal(c.validBefore, NOW_S + 60n + 300n);
  assert.equal(c.keyId, 'alice req=up1 via=bastion-1');
  assert.deepEqual(c.criticalOptions, []);
  refused(decideUpstreamCertificate({ ...upstreamBase, login: 'root' }), 'ERR_FORBIDDEN', 'login_not_allowed', /may not log in as "root" on "web01"/);
  refused(decideUpstreamCertificate({ ...upstreamBase, host: { name: 'db1', labels: { env: 'prod' } } }), 'ERR_FORBIDDEN', 'login_not_allowed');
  refused(decideUpstreamCertificate({ ...upstreamBase, login: 'a,b' }), 'ERR_BAD_REQUEST', 'bad_request');
  refused(decideUpstreamCertificate({ ...upstreamBase, proxy: 'two words' }), 'ERR_BAD_REQUEST', 'bad_request');
});

test('host certificate: names and addresses, 30 days by default, no wildcards', () => {
  const c = value(decideHostCertificate({ hostname: 'Web01.Example.com.', names: ['web01', '10.0.0.5', 'web01.example.com', '2001:DB8::5'], publicKey: ed, now: NOW, requestId: 'h1' }));
  assert.equal(c.kind, 'host');
  assert.deepEqual(c.principals, ['web01.example.com', 'web01', '10.0.0.5', '2001:db8::5']);
  assert.equal(c.validBefore, NOW_S + 30n * 86400n);
  assert.equal(c.validAfter, NOW_S - 60n);
  assert.equal(c.keyId, 'host=web01.example.com req=h1');
  assert.equal(c.extensions, undefined);
  assert.equal(value(decideHostCertificate({ hostname: 'a', publicKey: ed, now: NOW, requestId: 'h', lifetimeDays: 7 })).validBefore, NOW_S + 7n * 86400n);
  for (const bad of ['*', '*.example.com', 'we?b', 'a b', '', '-a', '10.0.0', 'a..b']) {
    refused(decideHostCertificate({ hostname: 'ok', names: [bad], publicKey: ed, now: NOW, requestId: 'h' }), 'ERR_BAD_REQUEST', 'bad_request');
  }
  refused(decideHostCertificate({ hostname: 'ok', publicKey: ed, now: NOW, requestId: 'h', lifetimeDays: 0 }), 'ERR_BAD_REQUEST', 'bad_request');
  refused(decideHostCertificate({ hostname: 'ok', publicKey: ed, now: NOW, requestId: 'h', lifetimeDays: 366 }), 'ERR_BAD_REQUEST', 'bad_request');
});

test('normalizeHostPrincipal', () => {
  assert.equal(normalizeHostPrincipal('HOST.example.COM'), 'host.example.com');
  assert.equal(normalizeHostPrincipal('127.0.0.1'), '127.0.0.1');
  assert.equal(normalizeHostPrincipal('::1'), '::1');
  assert.equal(normalizeHostPrincipal('1.2.3'), undefined);
  assert.equal(normalizeHostPrincipal('[::1]:22'), undefined);
});

test('jump host certificate: the target names, minutes long', () => {
  const c = value(decideJumpHostCertificate({ host: { name: 'web01', names: ['web01', '10.0.0.5'] }, publicKey: ed, now: NOW, requestId: 'j1' }));
  assert.deepEqual(c.principals, ['web01', '10.0.0.5']);
  assert.equal(c.validBefore, NOW_S + 600n);
  refused(decideJumpHostCertificate({ host: { name: 'web01' }, publicKey: ed, now: NOW, requestId: 'j', lifetimeSeconds: 7200 }), 'ERR_BAD_REQUEST', 'bad_request');
});

test('jump host certificate: the name the client typed is a principal too (its ssh checks that one)', () => {
  const host = { name: 'web01.example.com', names: ['web01.example.com', '10.0.0.5'] };
  const c = value(decideJumpHostCertificate({ host, requested: 'WEB01', publicKey: ed, now: NOW, requestId: 'j2' }));
  // The inventory name stays first: the key id names it.
  assert.deepEqual(c.principals, ['web01.example.com', 'web01', '10.0.0.5']);
  assert.equal(c.keyId, 'host=web01.example.com req=j2');
  const exact = value(decideJumpHostCertificate({ host, requested: '10.0.0.5', publicKey: ed, now: NOW, requestId: 'j3' }));
  assert.deepEqual(exact.principals, ['web01.example.com', '10.0.0.5']);
});

test('decisions are pure: same input, same output', () => {
  assert.deepEqual(decideUserCertificate(base), decideUserCertificate(base));
  assert.throws(() => decideUserCertificate({ ...base, now: Number.NaN }), TypeError);
});
