import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseRoleYaml } from '../src/roles/schema.js';
import { canLogin, canReachHost, combineRoles } from '../src/roles/policy.js';
import { AuthError } from '../src/errors.js';

const dev = parseRoleYaml(`
kind: role
name: dev
spec:
  allow:
    logins: ['{{user.name}}', ubuntu, '{{claims.unix}}']
    host_labels: { env: [dev, staging] }
  options:
    max_cert_ttl: 10m
    port_forwarding: true
`);
const ops = parseRoleYaml(`
kind: role
name: ops
spec:
  allow:
    logins: [root, ubuntu]
    host_labels: { '*': '*' }
  deny:
    logins: [root]
    host_labels: { env: prod, team: 'pay*' }
  options:
    max_cert_ttl: 3m
    require_session_mfa: true
    record_session: strict
`);
const alice = { username: 'alice', claims: { unix: ['al', 'bad login', 'x,y'] } };

test('defaults fill a minimal role', () => {
  const r = parseRoleYaml('kind: role\nname: min\nspec: {}\n');
  assert.equal(r.spec.options.max_cert_ttl, 300);
  assert.equal(r.spec.options.record_session, 'best-effort');
  assert.deepEqual(r.spec.allow.logins, []);
});

test('roles combine: union of logins minus denied, shortest TTL, ORed flags, strict wins', () => {
  const p = combineRoles([dev, ops], alice);
  assert.deepEqual(p.logins, ['al', 'alice', 'ubuntu']);
  assert.equal(p.maxCertTtl, 180);
  assert.equal(p.portForwarding, true);
  assert.equal(p.requireSessionMfa, true);
  assert.equal(p.recordSession, 'strict');
  assert.deepEqual(p.roles, ['dev', 'ops']);
});

test('host selection: allow by labels, deny first, empty allow matches nothing', () => {
  const p = combineRoles([dev], alice);
  assert.equal(canReachHost(p, { env: 'dev' }), true);
  assert.equal(canReachHost(p, { env: 'prod' }), false);
  assert.equal(canReachHost(p, {}), false);
  const q = combineRoles([dev, ops], alice);
  assert.equal(canReachHost(q, { env: 'prod', team: 'web' }), true);
  assert.equal(canReachHost(q, { env: 'prod', team: 'payments' }), false);
  assert.equal(canLogin(q, 'root', { env: 'dev' }), false);
  assert.equal(canLogin(q, 'ubuntu', { env: 'dev' }), true);
  const none = parseRoleYaml('kind: role\nname: none\nspec: { allow: { logins: [x] } }\n');
  assert.equal(canReachHost(combineRoles([none], alice), { env: 'dev' }), false);
});

test('bad role YAML is refused with the offending key named', () => {
  const bad = (text: string, re: RegExp) =>
    assert.throws(() => parseRoleYaml(text), (e: unknown) => e instanceof AuthError && e.code === 'ERR_CONFIG' && re.test(e.message));
  bad('kind: role\nname: x\nspec: { allow: { logins: [root], hosts: [a] } }\n', /spec\.allow\.hosts: unknown key/);
  bad('kind: role\nname: x\nspec: { options: { max_cert_ttl: forever } }\n', /spec\.options\.max_cert_ttl: "forever" is not a duration/);
  bad('kind: role\nname: x\nspec: { allow: { logins: ["a,b"] } }\n', /spec\.allow\.logins\[0\]/);
  bad('kind: role\nname: X Y\nspec: {}\n', /name:/);
  bad('kind: role\nname: x\nname: y\nspec: {}\n', /YAML error at line 3/);
  bad('kind: role\nname: x\nspec: { options: { record_session: off } }\n', /record_session/);
});
