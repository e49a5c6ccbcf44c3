import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nodeCrypto } from '../src/crypto/node.js';
import { CertError } from '../src/errors.js';
import { keySigner, publicPart } from '../src/keys/signature.js';
import { parseCertificate, signCertificate } from '../src/cert/certificate.js';
import { DEFAULT_USER_EXTENSIONS, flagOption, optionString } from '../src/cert/options.js';
import type { CertOption } from '../src/cert/options.js';
import {
  DEFAULT_USER_PERMISSIONS,
  NO_PERMISSIONS,
  optionsFromPermissions,
  permissionsFromOptions,
} from '../src/check/permissions.js';
import type { Permissions } from '../src/check/permissions.js';

// Every field set away from its NO_PERMISSIONS value. `Required<Permissions>` makes adding a
// field to Permissions without adding it here a type error, and the tests below then fail
// until optionsFromPermissions / permissionsFromOptions map it.
const EVERYTHING: Required<Permissions> = {
  pty: true,
  portForwarding: true,
  agentForwarding: true,
  x11Forwarding: true,
  userRc: true,
  noTouchRequired: true,
  verifyRequired: true,
  forceCommand: '/usr/bin/rsync --server',
  sourceAddress: '10.0.0.0/8,192.168.1.1,2001:db8::/32',
  unknownExtensions: ['login@portcullis.example', 'z-last@example.com'],
};

function roundTrip(p: Permissions): Permissions {
  const { criticalOptions, extensions } = optionsFromPermissions(p);
  return permissionsFromOptions(criticalOptions, extensions);
}

test('round trip: every field survives issuance and reading back', () => {
  assert.deepEqual(roundTrip(EVERYTHING), EVERYTHING);
  assert.deepEqual(roundTrip(NO_PERMISSIONS), NO_PERMISSIONS);
  assert.deepEqual(roundTrip(DEFAULT_USER_PERMISSIONS), DEFAULT_USER_PERMISSIONS);
});

test('round trip: each field on its own maps to exactly one option and back', () => {
  const seen = new Set<string>();
  for (const field of Object.keys(EVERYTHING) as (keyof Permissions)[]) {
    const one = { ...NO_PERMISSIONS, [field]: EVERYTHING[field] } as Permissions;
    const { criticalOptions, extensions } = optionsFromPermissions(one);
    const names = [...criticalOptions, ...extensions].map((o) => o.name);
    // A field that maps to nothing would make `one` read back as NO_PERMISSIONS.
    assert.ok(names.length >= 1, `field ${field} maps to no option`);
    assert.deepEqual(permissionsFromOptions(criticalOptions, extensions), one, `field ${field}`);
    for (const n of names) {
      assert.ok(!seen.has(n), `option ${n} is produced by two fields`);
      seen.add(n);
    }
  }
});

test('issuance output matches ssh-keygen: defaults, bytewise order, nested strings', () => {
  const { criticalOptions, extensions } = optionsFromPermissions(DEFAULT_USER_PERMISSIONS);
  assert.deepEqual(criticalOptions, []);
  assert.deepEqual(extensions.map((e) => e.name), DEFAULT_USER_EXTENSIONS);
  const all = optionsFromPermissions(EVERYTHING);
  assert.deepEqual(all.criticalOptions.map((o) => o.name), ['force-command', 'source-address', 'verify-required']);
  // strcmp order: "permit-X11-forwarding" sorts before "permit-agent-forwarding".
  assert.deepEqual(all.extensions.map((o) => o.name), [
    'login@portcullis.example',
    'no-touch-required',
    'permit-X11-forwarding',
    'permit-agent-forwarding',
    'permit-port-forwarding',
    'permit-pty',
    'permit-user-rc',
    'z-last@example.com',
  ]);
  const fc = all.criticalOptions[0]!;
  // 00000017 "/usr/bin/rsync --server" inside the data: two length prefixes on the wire.
  assert.equal(fc.data.length, 4 + EVERYTHING.forceCommand.length);
  assert.equal(optionString(fc), EVERYTHING.forceCommand);
});

test('issued options go into a certificate and read back through the parser', () => {
  const crypto = nodeCrypto;
  const ca = crypto.generate('ssh-ed25519');
  const { criticalOptions, extensions } = optionsFromPermissions(EVERYTHING);
  const cert = signCertificate(
    { key: publicPart(crypto.generate('ssh-ed25519')), kind: 'user', serial: 1n, keyId: 'k', principals: ['a'], validAfter: 0n, validBefore: 10n, criticalOptions, extensions },
    keySigner(crypto, ca),
    { crypto },
  );
  const back = parseCertificate(cert.raw);
  assert.ok(back.canonical);
  assert.deepEqual(permissionsFromOptions(back.criticalOptions, back.extensions), EVERYTHING);
});

test('issuance refuses what sshd could not read back', () => {
  const refused = (p: Partial<Permissions>) =>
    assert.throws(() => optionsFromPermissions({ ...NO_PERMISSIONS, ...p }), (e: unknown) => e instanceof CertError && e.code === 'ERR_REFUSED');
  refused({ forceCommand: 'a\0b' });
  refused({ sourceAddress: 'not an address' });
  refused({ sourceAddress: '' });
  refused({ unknownExtensions: ['permit-pty'] });
  refused({ unknownExtensions: ['x@example.com', 'x@example.com'] });
  refused({ unknownExtensions: [''] });
  assert.throws(() => optionsFromPermissions(null as unknown as Permissions), TypeError);
  assert.throws(() => optionsFromPermissions({ ...NO_PERMISSIONS, forceCommand: 1 as unknown as string }), TypeError);
});

test('reading: known flags with data are corrupt, unknown extensions are listed once', () => {
  const flag = (name: string, data: number[] = []): CertOption => ({ name, data: Uint8Array.from(data) });
  assert.throws(
    () => permissionsFromOptions([], [flag('permit-pty', [0, 0, 0, 0])]),
    (e: unknown) => e instanceof CertError && e.code === 'ERR_MALFORMED' && /permit-pty/.test(e.message),
  );
  // Unknown extensions carry any data; duplicates of known ones are harmless (sshd accepts).
  const p = permissionsFromOptions([], [flag('x@e', [1, 2, 3]), flag('permit-pty'), flag('permit-pty'), flag('x@e')]);
  assert.deepEqual(p, { ...NO_PERMISSIONS, pty: true, unknownExtensions: ['x@e'] });
  // no-touch-required is an extension; as a critical option it is unknown.
  assert.throws(
    () => permissionsFromOptions([flag('no-touch-required')], []),
    (e: unknown) => e instanceof CertError && e.code === 'ERR_UNKNOWN_CRITICAL_OPTION',
  );
  assert.deepEqual(permissionsFromOptions([], DEFAULT_USER_EXTENSIONS.map(flagOption)), DEFAULT_USER_PERMISSIONS);
  assert.throws(() => permissionsFromOptions([], [], { supportedCriticalOptions: 'force-command' as unknown as string[] }), TypeError);
});
