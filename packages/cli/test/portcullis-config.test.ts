import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CliError } from '../src/common/errors.js';
import type { Certificate } from '@portcullis/cert-core';
import { parseStartConfig, proxyNames } from '../src/portcullis/config.js';
import { proxyCertificateDue } from '../src/portcullis/start.js';

// The start config's decisions, without starting anything.

const refused = (f: () => unknown, message: RegExp): void =>
  assert.throws(f, (e: unknown) => e instanceof CliError && e.code === 'ERR_CONFIG' && message.test(e.message));

test('defaults: every service, a state directory per service, loopback names for the proxy', () => {
  const c = parseStartConfig({ state_dir: 'state', proxy: { name: 'bastion' } }, { env: {}, baseDir: '/etc/portcullis' });
  assert.deepEqual(c.services, ['auth', 'proxy', 'web']);
  assert.equal(c.state_dir, '/etc/portcullis/state');
  assert.equal(c.proxy.listen, '0.0.0.0:3022');
  assert.deepEqual(proxyNames(c), { name: 'bastion', names: ['localhost', '127.0.0.1'] });
});

test('unknown and malformed keys are named', () => {
  refused(() => parseStartConfig({ proxy: { listn: 'x' } }, { env: {} }), /^config: unknown key proxy\.listn$/);
  refused(() => parseStartConfig({ servces: [] }, { env: {} }), /unknown key servces/);
  refused(() => parseStartConfig({ services: ['auth', 'ftp'] }, { env: {} }), /^config: services\.1: /);
  refused(() => parseStartConfig({ web: { auth: { url: 'http://x', fingerprint: 'AB' } } }, { env: {} }), /^config: web\.auth\.url: /);
  refused(() => parseStartConfig([1, 2], { env: {} }), /mapping/);
});

test('a service started alone must be told where auth and Redis are', () => {
  refused(() => parseStartConfig({}, { env: {}, roles: 'proxy' }), /proxy\.auth: required/);
  refused(() => parseStartConfig({ proxy: { auth: { url: 'https://a:3025', fingerprint: 'AB' } } }, { env: {}, roles: 'proxy' }), /proxy\.redis: required/);
  const c = parseStartConfig({ proxy: { auth: { url: 'https://a:3025', fingerprint: 'AB' }, redis: { url: 'redis://r' } } }, { env: {}, roles: 'proxy' });
  assert.deepEqual(c.services, ['proxy']);
  refused(() => parseStartConfig({}, { env: {}, roles: 'auth,nope' }), /^config: --roles: /);
});

test('environment overrides win over the file and are reported', () => {
  const c = parseStartConfig(
    { state_dir: '/a', proxy: { listen: '0.0.0.0:3022' } },
    { env: { PORTCULLIS_STATE_DIR: '/b', PORTCULLIS_PROXY_LISTEN: '127.0.0.1:2222', PORTCULLIS_SERVICES: 'auth, proxy', REDIS_URL: 'redis://r:6379' } },
  );
  assert.equal(c.state_dir, '/b');
  assert.equal(c.proxy.listen, '127.0.0.1:2222');
  assert.deepEqual(c.services, ['auth', 'proxy']);
  assert.deepEqual(c.auth['redis'], { url: 'redis://r:6379' });
  assert.deepEqual([...c.envOverrides].sort(), ['PORTCULLIS_PROXY_LISTEN', 'PORTCULLIS_SERVICES', 'PORTCULLIS_STATE_DIR', 'REDIS_URL']);
});

test("the proxy's host certificate is renewed from the middle of its life, or when missing", () => {
  const cert = { validAfter: 1_000n, validBefore: 3_000n } as Certificate;
  assert.equal(proxyCertificateDue(cert, 1_999_000), false);
  assert.equal(proxyCertificateDue(cert, 2_000_000), true);
  assert.equal(proxyCertificateDue(cert, 4_000_000), true);
  assert.equal(proxyCertificateDue(undefined, 0), true);
});
