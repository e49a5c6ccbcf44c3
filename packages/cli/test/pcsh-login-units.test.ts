import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { describe, test } from 'node:test';
import { tempDir } from '@portcullis/harness';
import { transportError } from '../src/common/auth-api.js';
import { CliError } from '../src/common/errors.js';
import { reportError } from '../src/common/main.js';
import { formatSpan, formatTable, formatUntil, parseDurationArg, parseLabelArgs, parseTimeArg } from '../src/common/output.js';
import { ProfileStore, profileNameFor } from '../src/common/profile.js';
import { normalizeAuthUrl } from '../src/pcsh/login.js';

/* The pure parts under the commands: argument parsing, formatting, error lines, the profile store's files. */

describe('pcsh building blocks', () => {
  test('--auth: scheme and auth port filled in; an explicit :443 is kept', () => {
    assert.equal(normalizeAuthUrl('bastion.example.com'), 'https://bastion.example.com:3025');
    assert.equal(normalizeAuthUrl('https://bastion.example.com:443'), 'https://bastion.example.com:443');
    assert.equal(normalizeAuthUrl('https://[::1]:3025/'), 'https://[::1]:3025');
    assert.throws(() => normalizeAuthUrl('http://x'), (e: unknown) => e instanceof CliError && e.code === 'ERR_USAGE');
    assert.equal(profileNameFor('https://[::1]:3025'), '__1');
  });

  test('durations, times and labels from arguments', () => {
    assert.equal(parseDurationArg('1h30m', '--ttl'), 5400);
    assert.equal(parseDurationArg('90', '--ttl'), 90);
    assert.throws(() => parseDurationArg('0s', '--ttl'), /--ttl: expected a duration/);
    assert.throws(() => parseDurationArg('soon', '--ttl'), /got "soon"/);
    assert.equal(parseTimeArg('2h', '--since', 10_000_000).getTime(), 10_000_000 - 7_200_000);
    assert.equal(parseTimeArg('2025-06-01T00:00:00', '--from', 0).toISOString(), '2025-06-01T00:00:00.000Z');
    assert.deepEqual(parseLabelArgs(['env=prod,team=web', 'tier=1']), { env: 'prod', team: 'web', tier: '1' });
    assert.throws(() => parseLabelArgs(['env=']), /expected NAME=VALUE, got "env="/);
  });

  test('tables, spans and expiry hints', () => {
    assert.equal(formatTable(['A', 'Long'], [['xx', 'y'], ['z', '']]), 'A   Long\n--  ----\nxx  y\nz\n');
    assert.equal(formatSpan(272_000), '4m32s');
    assert.equal(formatSpan(90_061_000), '1d1h');
    assert.equal(formatUntil(60_000, 0), '1970-01-01T00:01:00Z (in 1m)');
    assert.equal(formatUntil(0, 180_000), '1970-01-01T00:00:00Z (expired 3m ago)');
  });

  test('errors: one line with the CliError exit code; the stack only with PORTCULLIS_DEBUG=1', () => {
    let out = '';
    const sink = { write: (s: string) => ((out += s), true) } as unknown as NodeJS.WritableStream;
    assert.equal(reportError('pcsh', new CliError('ERR_NOT_FOUND', 'no host web9\nat all'), sink, {}), 5);
    assert.equal(out, 'pcsh: no host web9 at all\n');
    out = '';
    assert.equal(reportError('pcsh', new Error('boom'), sink, {}), 1);
    assert.equal(out, 'pcsh: unexpected error: boom (PORTCULLIS_DEBUG=1 shows more)\n');
    out = '';
    reportError('pcsh', new Error('boom'), sink, { PORTCULLIS_DEBUG: '1' });
    assert.match(out, /^pcsh: unexpected error: boom\nError: boom\n\s+at /);
  });

  test('transport failures say what to do', () => {
    const t = { url: 'https://auth.example.com:3025' };
    const refused = transportError(t, Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }));
    assert.deepEqual([refused.code, refused.message], ['ERR_UNREACHABLE', 'cannot reach auth at auth.example.com:3025: connection refused']);
    const pin = transportError(t, new Error('the server at auth.example.com:3025 presented certificate AA:BB, not the pinned CC:DD'));
    assert.equal(pin.code, 'ERR_AUTH');
    assert.match(pin.message, /presented TLS certificate AA:BB, not the pinned CC:DD.*--fingerprint AA:BB$/);
  });

  test('profile store: private modes, known_hosts sections per profile, secrets forgotten on logout', () => {
    const dir = tempDir('pcsh-store-');
    try {
      const store = new ProfileStore(dir.file('home'));
      store.save({ name: 'a', authUrl: 'https://a:3025', token: 't'.repeat(43), user: 'u' });
      store.setCurrent('a');
      assert.equal(statSync(dir.file('home')).mode & 0o777, 0o700);
      assert.equal(statSync(dir.file('home/profiles/a.json')).mode & 0o777, 0o600);
      store.writeKnownHosts('a', ['@cert-authority * ssh-ed25519 AAAA a-ca']);
      store.writeKnownHosts('b', ['@cert-authority * ssh-ed25519 BBBB b-ca']);
      store.writeKnownHosts('a', ['@cert-authority * ssh-ed25519 CCCC a-ca2']);
      const kh = readFileSync(store.knownHostsPath(), 'utf8');
      assert.doesNotMatch(kh, /AAAA/);
      assert.match(kh, /BBBB/);
      assert.match(kh, /CCCC/);
      store.forgetSecrets('a');
      assert.equal(store.load('a')?.token, undefined);
      assert.equal(store.load('a')?.authUrl, 'https://a:3025');
      assert.equal(store.resolve(undefined).name, 'a');
      assert.throws(() => store.resolve('../etc'), /profile name: expected/);
    } finally {
      dir.remove();
    }
  });
});
