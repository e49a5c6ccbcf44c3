import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CliError } from '../src/common/errors.js';
import { parseIdleLimit, parseSpeed } from '../src/pcsh/play.js';
import { parseProxyAddress, parseTunnelTarget, proxyAddressFor } from '../src/pcsh/proxy-ssh.js';

// What pcsh reads from ssh's %r@%h:%p, --proxy and the play flags.

const usage = (f: () => unknown): void => assert.throws(f, (e: unknown) => e instanceof CliError && e.code === 'ERR_USAGE');

test('tunnel targets as ssh passes them', () => {
  assert.deepEqual(parseTunnelTarget('root@web01:22'), { login: 'root', host: 'web01', port: 22 });
  assert.deepEqual(parseTunnelTarget('web01'), { login: undefined, host: 'web01', port: 22 });
  assert.deepEqual(parseTunnelTarget('a@b@web01:2222'), { login: 'a@b', host: 'web01', port: 2222 });
  assert.deepEqual(parseTunnelTarget('root@[::1]:22'), { login: 'root', host: '::1', port: 22 });
  usage(() => parseTunnelTarget('root@web01:99999'));
  usage(() => parseTunnelTarget('root@'));
});

test('the proxy address: flag, then PCSH_PROXY, then the auth host on 3022', () => {
  const profile = { name: 'p', authUrl: 'https://bastion.example.com:3025' };
  assert.deepEqual(proxyAddressFor(profile, undefined, {}), { host: 'bastion.example.com', port: 3022 });
  assert.deepEqual(proxyAddressFor(profile, undefined, { PCSH_PROXY: '10.0.0.1:2200' }), { host: '10.0.0.1', port: 2200 });
  assert.deepEqual(proxyAddressFor(profile, 'b2', { PCSH_PROXY: '10.0.0.1:2200' }), { host: 'b2', port: 3022 });
  assert.deepEqual(parseProxyAddress('[::1]:3022'), { host: '::1', port: 3022 });
  usage(() => parseProxyAddress('a b'));
  usage(() => parseProxyAddress('host:0'));
});

test('play speed and idle skipping', () => {
  assert.equal(parseSpeed(undefined), 1);
  assert.equal(parseSpeed('max'), Infinity);
  assert.equal(parseSpeed('2.5'), 2.5);
  usage(() => parseSpeed('0'));
  usage(() => parseSpeed('fast'));
  assert.equal(parseIdleLimit(true), 2000);
  assert.equal(parseIdleLimit('0.5'), 500);
  assert.equal(parseIdleLimit(undefined), undefined);
  usage(() => parseIdleLimit('-1'));
});
