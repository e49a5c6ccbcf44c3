import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { tempDir } from '@portcullis/harness';
import { isAuthError } from '../src/errors.js';
import { loadAuthConfig, parseAuthConfig } from '../src/config/load.js';

const dir = tempDir('portcullis-config-');
after(() => dir.remove());

function refusedWith(fn: () => unknown, ...patterns: RegExp[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isAuthError(e, 'ERR_CONFIG'), `expected ERR_CONFIG, got ${String(e)}`);
    for (const p of patterns) assert.match(e.message, p);
    return true;
  });
}

const ROLE = {
  kind: 'role',
  name: 'dev',
  spec: { allow: { logins: ['ubuntu', '{{user.name}}'], host_labels: { env: 'dev' } }, options: { max_cert_ttl: '10m' } },
};

describe('auth config', () => {
  test('defaults: 127.0.0.1:3025, embedded redis under the state dir, five-minute certificates, stdout audit', () => {
    const c = parseAuthConfig({ state_dir: 'state' }, { baseDir: dir.path, env: {} });
    assert.equal(c.state_dir, join(dir.path, 'state'));
    assert.deepEqual(c.listen, { host: '127.0.0.1', port: 3025 });
    assert.deepEqual(c.redis, { embedded: { stateDir: join(dir.path, 'state', 'redis') } });
    assert.equal(c.certificates.user_ttl, 300);
    assert.equal(c.certificates.host_ttl, 30 * 86400);
    assert.deepEqual(c.audit, { sink: 'stdout' });
    assert.deepEqual(c.ca.user, { algorithm: 'ed25519' });
    assert.equal(c.rate_limits.login.per_user, 10);
    assert.equal(c.rate_limits.totp.window, 300);
    assert.equal(c.oidc, undefined);
    assert.deepEqual(c.roles, []);
  });

  test('listen forms: host:port, [v6]:port, :port and an object', () => {
    const l = (listen: unknown) => parseAuthConfig({ state_dir: '/s', listen }, { env: {} }).listen;
    assert.deepEqual(l('0.0.0.0:443'), { host: '0.0.0.0', port: 443 });
    assert.deepEqual(l('[::1]:3025'), { host: '::1', port: 3025 });
    assert.deepEqual(l(':3025'), { host: '0.0.0.0', port: 3025 });
    assert.deepEqual(l({ port: 4000 }), { host: '127.0.0.1', port: 4000 });
    refusedWith(() => l('localhost'), /listen: "localhost" is not host:port/);
    refusedWith(() => l('1.2.3.4:70000'), /listen:/);
  });

  test('unknown keys are refused and named, at any depth', () => {
    refusedWith(() => parseAuthConfig({ state_dir: '/s', lisen: 'x' }, { env: {} }), /lisen: unknown key/);
    refusedWith(() => parseAuthConfig({ state_dir: '/s', tls: { cert: 'a' } }, { env: {} }), /tls\.cert: unknown key/);
    refusedWith(() => parseAuthConfig({ state_dir: '/s', rate_limits: { login: { per_usr: 3 } } }, { env: {} }), /rate_limits\.login\.per_usr: unknown key/);
    refusedWith(
      () => parseAuthConfig({ state_dir: '/s', roles: [{ ...ROLE, spec: { ...ROLE.spec, allow: { logins: ['x'], hosts: {} } } }] }, { env: {} }),
      /roles\[0\]\.spec\.allow\.hosts: unknown key/,
    );
  });

  test('values are checked and the key is named', () => {
    refusedWith(() => parseAuthConfig({}, { env: {} }), /state_dir:/);
    refusedWith(() => parseAuthConfig({ state_dir: '/s', certificates: { user_ttl: 'soon' } }, { env: {} }), /certificates\.user_ttl: "soon" is not a duration/);
    refusedWith(() => parseAuthConfig({ state_dir: '/s', certificates: { host_ttl: '36h' } }, { env: {} }), /certificates\.host_ttl: expected whole days/);
    refusedWith(() => parseAuthConfig({ state_dir: '/s', ca: { user: { algorithm: 'dsa' } } }, { env: {} }), /ca\.user\.algorithm:/);
    refusedWith(() => parseAuthConfig({ state_dir: '/s', ca: { host: { algorithm: 'rsa', rsa_bits: 2048 } } }, { env: {} }), /ca\.host\.rsa_bits:/);
    refusedWith(() => parseAuthConfig({ state_dir: '/s', tls: { cert_file: '/c.pem' } }, { env: {} }), /tls\.key_file: cert_file and key_file go together/);
    refusedWith(() => parseAuthConfig({ state_dir: '/s', audit: { sink: 'file' } }, { env: {} }), /audit\.path: required when sink is file/);
    refusedWith(() => parseAuthConfig({ state_dir: '/s', public_url: 'http://bastion:3025' }, { env: {} }), /public_url:/);
    refusedWith(() => parseAuthConfig({ state_dir: '/s', roles: [ROLE, ROLE] }, { env: {} }), /roles\[1\]\.name: role dev is defined twice/);
  });

  test('redis: one of embedded, url, sentinel, cluster, with errors inside the chosen branch', () => {
    const r = (redis: unknown) => parseAuthConfig({ state_dir: '/s', redis }, { env: {} }).redis;
    assert.deepEqual(r({ url: 'redis://10.0.0.1:6379' }), { url: 'redis://10.0.0.1:6379' });
    assert.deepEqual(r({ embedded: { port: 6390 } }), { embedded: { stateDir: '/s/redis', port: 6390 } });
    assert.deepEqual(r({ sentinel: { sentinels: [{ host: 'a', port: 26379 }], name: 'mymaster' } }), {
      sentinel: { sentinels: [{ host: 'a', port: 26379 }], name: 'mymaster' },
    });
    refusedWith(() => r({ url: 'http://x' }), /redis\.url: expected a redis:\/\/, rediss:\/\/ or unix:\/\/ URL/);
    refusedWith(() => r({ cluster: { nodes: [] } }), /redis\.cluster\.nodes:/);
    refusedWith(() => r({ sentinel: { sentinels: [{ host: 'a', port: 1 }], name: 'm', pasword: 'x' } }), /redis\.sentinel: unknown key "pasword"/);
    refusedWith(() => r({ url: 'redis://a', cluster: {} }), /redis: expected exactly one of embedded, url, sentinel, cluster/);
  });

  test('environment overrides win over the file and are checked like it', () => {
    const env = { REDIS_URL: 'redis://127.0.0.1:7000', PORTCULLIS_STATE_DIR: '/var/lib/pc', PORTCULLIS_LISTEN: '0.0.0.0:8443' };
    const c = parseAuthConfig({ state_dir: '/s', redis: { embedded: {} } }, { env });
    assert.deepEqual(c.redis, { url: 'redis://127.0.0.1:7000' });
    assert.equal(c.state_dir, '/var/lib/pc');
    assert.deepEqual(c.listen, { host: '0.0.0.0', port: 8443 });
    assert.deepEqual([...c.envOverrides].sort(), ['PORTCULLIS_LISTEN', 'PORTCULLIS_STATE_DIR', 'REDIS_URL']);
    refusedWith(() => parseAuthConfig({ state_dir: '/s' }, { env: { PORTCULLIS_LISTEN: 'nope' } }), /with PORTCULLIS_LISTEN from the environment/, /listen:/);
    refusedWith(() => parseAuthConfig({ state_dir: '/s' }, { env: { PORTCULLIS_OIDC_CLIENT_SECRET: 's' } }), /no oidc section/);
  });

  test('oidc settings, with the client secret from a file or the environment', () => {
    writeFileSync(join(dir.path, 'oidc-secret'), 'from-a-file\n', { mode: 0o600 });
    const oidc = {
      issuer: 'https://idp.example.com',
      client_id: 'portcullis',
      client_secret_file: 'oidc-secret',
      login_ttl: '5m',
      role_mapping: [{ value: 'eng', roles: ['dev'] }, { claim: 'dept', value: 'ops', roles: ['ops', 'dev'] }],
    };
    const c = parseAuthConfig({ state_dir: '/s', oidc }, { baseDir: dir.path, env: {} });
    assert.equal(c.oidc?.clientSecret, 'from-a-file');
    assert.equal(c.oidc?.loginTtlMs, 300_000);
    assert.deepEqual(c.oidc?.roleMapping, [{ value: 'eng', roles: ['dev'] }, { claim: 'dept', value: 'ops', roles: ['ops', 'dev'] }]);
    const e = parseAuthConfig({ state_dir: '/s', oidc }, { baseDir: dir.path, env: { PORTCULLIS_OIDC_CLIENT_SECRET: 'from-env' } });
    assert.equal(e.oidc?.clientSecret, 'from-env');
    refusedWith(() => parseAuthConfig({ state_dir: '/s', oidc: { ...oidc, issuer: 'not a url' } }, { env: {} }), /oidc\.issuer:/);
    refusedWith(() => parseAuthConfig({ state_dir: '/s', oidc: { ...oidc, client_secret_file: 'missing' } }, { baseDir: dir.path, env: {} }), /oidc\.client_secret_file: cannot read/);
  });

  test('roles inline and from a directory; the file name must match the role', () => {
    const rolesDir = join(dir.path, 'roles');
    mkdirSync(rolesDir);
    writeFileSync(join(rolesDir, 'ops.yaml'), 'kind: role\nname: ops\nspec:\n  allow:\n    logins: [root]\n    host_labels: {"*": "*"}\n');
    const c = parseAuthConfig({ state_dir: '/s', roles: [ROLE], roles_dir: 'roles' }, { baseDir: dir.path, env: {} });
    assert.deepEqual(c.roles.map((r) => r.name), ['dev', 'ops']);
    assert.equal(c.roles[0]!.spec.options.max_cert_ttl, 600);

    writeFileSync(join(rolesDir, 'misnamed.yaml'), 'kind: role\nname: other\nspec: {}\n');
    refusedWith(() => parseAuthConfig({ state_dir: '/s', roles_dir: 'roles' }, { baseDir: dir.path, env: {} }), /misnamed\.yaml: the role is named other/);
    writeFileSync(join(rolesDir, 'misnamed.yaml'), 'kind: role\nname: misnamed\nspec: { allow: { logins: [1] } }\n');
    refusedWith(() => parseAuthConfig({ state_dir: '/s', roles_dir: 'roles' }, { baseDir: dir.path, env: {} }), /misnamed\.yaml: invalid role: spec\.allow\.logins\[0\]/);
  });

  test('a YAML file: duplicate keys and syntax errors say where', () => {
    const path = join(dir.path, 'auth.yaml');
    writeFileSync(path, 'state_dir: /s\nlisten: 127.0.0.1:1\nlisten: 127.0.0.1:2\n');
    refusedWith(() => loadAuthConfig(path, { env: {} }), /auth\.yaml: YAML error at line 3/);
    writeFileSync(path, 'state_dir: /s\naudit: {sink: file, path: audit.jsonl}\n');
    const c = loadAuthConfig(path, { env: {} });
    assert.equal(c.audit.path, join(dir.path, 'audit.jsonl'));
    writeFileSync(path, 'state_dir: /s\nfoo: 1\n');
    refusedWith(() => loadAuthConfig(path, { env: {} }), new RegExp(`${path.replace(/[.]/g, '\\.')}: invalid auth config: foo: unknown key`));
    refusedWith(() => loadAuthConfig(join(dir.path, 'nope.yaml'), { env: {} }), /does not exist/);
  });
});
