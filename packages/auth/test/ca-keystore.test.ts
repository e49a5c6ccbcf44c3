// The CA key store on disk: modes, OpenSSH format that ssh-keygen reads, several trusted keys
// per kind for rotation, and no private key material in anything it returns, throws or logs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { inspect } from 'node:util';
import { join } from 'node:path';
import { hasTool, runOk, run, tempDir } from '@portcullis/harness';
import { parsePrivateKey, parsePublicKeyText, publicKeysEqual, signCertificate, verifyCertificateSignature, keyBits, utf8, verifySignature } from '@portcullis/cert-core';
import type { SigningPrivateKey } from '@portcullis/cert-core';
import { nodeCrypto } from '@portcullis/cert-core/node';
import { isAuthError } from '../src/errors.js';
import { CaKeystore } from '../src/ca/keystore.js';

const skip = hasTool('ssh-keygen') ? false : 'needs ssh-keygen';
const mode = (p: string): number => statSync(p).mode & 0o777;

/** Every way the secret half of `key` could be spelled in a string. */
function secretSpellings(key: SigningPrivateKey): string[] {
  const secrets: Uint8Array[] = [];
  if (key.type === 'ssh-ed25519') secrets.push(key.seed);
  else {
    const hex = key.d.toString(16);
    secrets.push(Buffer.from(hex.length % 2 === 0 ? hex : `0${hex}`, 'hex'));
  }
  const out: string[] = ['BEGINOPENSSHPRIVATEKEY'];
  for (const b of secrets) {
    const buf = Buffer.from(b);
    out.push(buf.toString('hex').slice(0, 32), buf.toString('base64').slice(0, 24), buf.toString('base64url').slice(0, 24), [...b.subarray(0, 12)].join(','));
  }
  if (key.type !== 'ssh-ed25519') out.push(key.d.toString(10).slice(0, 30));
  return out;
}

test('first start: directory 0700, key files 0600 in OpenSSH format, public keys 0644', { skip }, async () => {
  const dir = tempDir('portcullis-ca-');
  try {
    const logs: string[] = [];
    const ks = CaKeystore.open({ stateDir: join(dir.path, 'state'), crypto: nodeCrypto, log: (m) => logs.push(m) });
    assert.equal(mode(ks.dir), 0o700);
    assert.equal(mode(join(ks.dir, 'index.json')), 0o600);
    const files = readdirSync(ks.dir).sort();
    assert.equal(files.length, 7, files.join(' '));
    for (const kind of ['user', 'upstream', 'host'] as const) {
      const info = ks.active(kind);
      assert.equal(info.publicKey.type, 'ssh-ed25519');
      const path = ks.keyPath(info.id);
      assert.equal(mode(path), 0o600);
      assert.equal(mode(`${path}.pub`), 0o644);
      // ssh-keygen -y -f KEY prints the public key of a private key file it can read.
      const r = await runOk('ssh-keygen', ['-y', '-f', path]);
      assert.ok(publicKeysEqual(parsePublicKeyText(r.stdout).key, info.publicKey));
      const fp = await runOk('ssh-keygen', ['-l', '-f', path]);
      assert.match(fp.stdout, new RegExp(info.fingerprint.replace(/[+/]/g, '\\$&')));
    }
    assert.equal(new Set(['user', 'upstream', 'host'].map((k) => ks.active(k as 'user').id)).size, 3, 'three distinct keys');
    assert.equal(logs.length, 3);
    assert.match(logs[0]!, /created user CA [0-9a-f]{16} \(SHA256:/);
  } finally {
    dir.remove();
  }
});

test('targets trust the upstream CA only: TrustedUserCAKeys never holds a user CA key', () => {
  const dir = tempDir('portcullis-ca-');
  try {
    const ks = CaKeystore.open({ stateDir: dir.path, crypto: nodeCrypto });
    ks.stage('user');
    const trusted = ks.trustedUserCaKeys();
    assert.equal(trusted, ks.authorizedKeys('upstream'));
    assert.match(trusted, /^ssh-ed25519 AAAA\S+ portcullis-upstream-ca-[0-9a-f]{16}\n$/);
    for (const k of ks.keys('user')) assert.ok(!trusted.includes(k.id) && !ks.authorizedKeys('upstream').includes(k.fingerprint));
    const userBlobs = ks.keys('user').map((k) => ks.authorizedKeys('user').split('\n').find((l) => l.includes(k.id))!.split(' ')[1]!);
    for (const b of userBlobs) assert.ok(!trusted.includes(b), 'a user CA key in TrustedUserCAKeys');
  } finally {
    dir.remove();
  }
});

test('a store made before the upstream CA existed gets one at open, audited, and keeps its user and host keys', () => {
  const dir = tempDir('portcullis-ca-');
  try {
    const first = CaKeystore.open({ stateDir: dir.path, crypto: nodeCrypto });
    const user = first.active('user').id;
    const host = first.active('host').id;
    // Make it look like a store of the previous release: no upstream entry in the index.
    const indexPath = join(first.dir, 'index.json');
    const index = JSON.parse(readFileSync(indexPath, 'utf8')) as { version: 1; keys: { kind: string }[] };
    writeFileSync(indexPath, JSON.stringify({ ...index, keys: index.keys.filter((k) => k.kind !== 'upstream') }));
    const changes: string[] = [];
    const logs: string[] = [];
    const ks = CaKeystore.open({ stateDir: dir.path, crypto: nodeCrypto, onChange: (c) => changes.push(`${c.event} ${c.action} ${c.kind}`), log: (m) => logs.push(m) });
    assert.deepEqual(changes, ['ca.created created upstream']);
    assert.ok(logs.some((l) => /has no upstream CA yet; creating it/.test(l)), logs.join('\n'));
    assert.equal(ks.active('user').id, user);
    assert.equal(ks.active('host').id, host);
    assert.notEqual(ks.active('upstream').id, user);
    assert.equal(CaKeystore.open({ stateDir: dir.path, crypto: nodeCrypto }).active('upstream').id, ks.active('upstream').id, 'written once');
  } finally {
    dir.remove();
  }
});

test('reopening loads the same keys, and the signer signs with the active key', () => {
  const dir = tempDir('portcullis-ca-');
  try {
    const a = CaKeystore.open({ stateDir: dir.path, crypto: nodeCrypto });
    const b = CaKeystore.open({ stateDir: dir.path, crypto: nodeCrypto, user: { algorithm: 'rsa' } });
    assert.equal(b.active('user').id, a.active('user').id, 'an existing key is kept whatever the spec says');
    assert.equal(b.active('host').id, a.active('host').id);
    const signer = b.signer('user');
    assert.ok(publicKeysEqual(signer.publicKey, a.active('user').publicKey));
    const data = utf8('hello');
    assert.ok(verifySignature(nodeCrypto, signer.publicKey, signer.sign(data), data));
    const cert = signCertificate(
      { key: b.active('host').publicKey, kind: 'user', serial: 1n, keyId: 'k', principals: ['p'], validAfter: 0n, validBefore: 10n },
      signer,
      { crypto: nodeCrypto },
    );
    assert.ok(verifyCertificateSignature(nodeCrypto, cert));
  } finally {
    dir.remove();
  }
});

test('algorithms: ecdsa-p256/384 and rsa >= 3072 selectable; smaller RSA and unknown names refused', { skip }, async () => {
  const dir = tempDir('portcullis-ca-');
  try {
    const ks = CaKeystore.open({ stateDir: dir.file('a'), crypto: nodeCrypto, user: { algorithm: 'ecdsa-p384' }, host: { algorithm: 'rsa', rsaBits: 3072 } });
    assert.equal(ks.active('user').publicKey.type, 'ecdsa-sha2-nistp384');
    assert.equal(ks.active('host').publicKey.type, 'ssh-rsa');
    assert.equal(keyBits(ks.active('host').publicKey), 3072);
    await runOk('ssh-keygen', ['-y', '-f', ks.keyPath(ks.active('host').id)]);
    const p256 = CaKeystore.open({ stateDir: dir.file('b'), crypto: nodeCrypto, user: { algorithm: 'ecdsa-p256' } });
    assert.equal(p256.active('user').publicKey.type, 'ecdsa-sha2-nistp256');
    assert.throws(() => CaKeystore.open({ stateDir: dir.file('c'), crypto: nodeCrypto, host: { algorithm: 'rsa', rsaBits: 2048 } }), (e) => isAuthError(e, 'ERR_CONFIG') && /3072/.test(e.message));
    assert.throws(() => CaKeystore.open({ stateDir: dir.file('d'), crypto: nodeCrypto, user: { algorithm: 'dsa' as 'rsa' } }), (e) => isAuthError(e, 'ERR_CONFIG') && /user.algorithm "dsa"/.test(e.message));
    assert.throws(() => CaKeystore.open({ stateDir: dir.file('e'), crypto: nodeCrypto, user: { algorithm: 'ed25519', rsaBits: 4096 } }), (e) => isAuthError(e, 'ERR_CONFIG'));
  } finally {
    dir.remove();
  }
});

test('loose file modes stop the start, naming the file', () => {
  const dir = tempDir('portcullis-ca-');
  try {
    const ks = CaKeystore.open({ stateDir: dir.path, crypto: nodeCrypto });
    const key = ks.keyPath(ks.active('user').id);
    chmodSync(key, 0o644);
    assert.throws(() => CaKeystore.open({ stateDir: dir.path, crypto: nodeCrypto }), (e) => isAuthError(e, 'ERR_CONFIG') && e.message.includes(key) && /0644/.test(e.message));
    chmodSync(key, 0o600);
    chmodSync(ks.dir, 0o755);
    assert.throws(() => CaKeystore.open({ stateDir: dir.path, crypto: nodeCrypto }), (e) => isAuthError(e, 'ERR_CONFIG') && /CA directory/.test(e.message));
    chmodSync(ks.dir, 0o700);
    assert.ok(CaKeystore.open({ stateDir: dir.path, crypto: nodeCrypto }));
  } finally {
    dir.remove();
  }
});

test('a damaged store stops the start with a message that names what is wrong', () => {
  const dir = tempDir('portcullis-ca-');
  try {
    const ks = CaKeystore.open({ stateDir: dir.path, crypto: nodeCrypto });
    const index = join(ks.dir, 'index.json');
    const good = readFileSync(index, 'utf8');
    // Another key in place of the listed one.
    const userKey = ks.keyPath(ks.active('user').id);
    const hostText = readFileSync(ks.keyPath(ks.active('host').id), 'utf8');
    const userText = readFileSync(userKey, 'utf8');
    writeFileSync(userKey, hostText);
    assert.throws(() => CaKeystore.open({ stateDir: dir.path, crypto: nodeCrypto }), (e) => isAuthError(e, 'ERR_CONFIG') && /does not hold the key/.test(e.message));
    writeFileSync(userKey, userText);
    writeFileSync(index, '{"version": 2}');
    assert.throws(() => CaKeystore.open({ stateDir: dir.path, crypto: nodeCrypto }), (e) => isAuthError(e, 'ERR_CONFIG') && /index.json/.test(e.message));
    const twoActive = JSON.parse(good) as { keys: { status: string }[] };
    for (const k of twoActive.keys) k.status = 'standby';
    writeFileSync(index, JSON.stringify(twoActive));
    assert.throws(() => CaKeystore.open({ stateDir: dir.path, crypto: nodeCrypto }), (e) => isAuthError(e, 'ERR_CONFIG') && /0 active user CA keys/.test(e.message));
  } finally {
    dir.remove();
  }
});

test('no private key material in any string the keystore returns, throws or logs', () => {
  const dir = tempDir('portcullis-ca-');
  try {
    const logs: string[] = [];
    const open = () => CaKeystore.open({ stateDir: dir.path, crypto: nodeCrypto, log: (m) => logs.push(m) });
    const ks = open();
    ks.stage('user', { algorithm: 'ecdsa-p256' });
    const strings: string[] = [
      ...logs,
      ks.trustedUserCaKeys(),
      ks.authorizedKeys('user'),
      ks.knownHostsLines(),
      ks.knownHostsLines(['*.example.com', '[bastion]:3022']),
      JSON.stringify(ks),
      JSON.stringify(ks.keys()),
      inspect(ks, { depth: Infinity, showHidden: true }),
      inspect(ks.keys(), { depth: Infinity, showHidden: true }),
      inspect(ks.signer('user'), { depth: Infinity, showHidden: true }),
      inspect(ks.signer('host'), { depth: Infinity, showHidden: true }),
      String(ks),
    ];
    for (const k of ks.keys()) strings.push(ks.keyPath(k.id), k.fingerprint, k.id);
    for (const bad of [() => ks.activate('nope'), () => ks.retire(ks.active('user').id), () => ks.import('user', 'not a key')]) {
      try {
        bad();
        assert.fail('should throw');
      } catch (e) {
        strings.push(String(e), inspect(e));
      }
    }
    // Blanks removed, so a byte list util.inspect spreads over padded columns still matches.
    const all = strings.join('\n').replace(/\s+/g, '');
    for (const k of ks.keys()) {
      const secret = parsePrivateKey(readFileSync(ks.keyPath(k.id), 'utf8')).key as SigningPrivateKey;
      const spellings = secretSpellings(secret);
      for (const s of spellings) assert.ok(!all.includes(s), `secret spelling found: ${s.slice(0, 12)}…`);
      // The check itself finds a leak: the key object as inspect prints it would be caught.
      assert.ok(spellings.some((s) => inspect(secret).replace(/\s+/g, '').includes(s)));
    }
    // The public halves are there, as they should be.
    assert.ok(all.includes(ks.active('user').fingerprint));
  } finally {
    dir.remove();
  }
});

test('a passphrase encrypts the key files; without it they do not open', { skip }, async () => {
  const dir = tempDir('portcullis-ca-');
  try {
    const ks = CaKeystore.open({ stateDir: dir.path, crypto: nodeCrypto, passphrase: 'correct horse' });
    const path = ks.keyPath(ks.active('user').id);
    const refused = await run('ssh-keygen', ['-y', '-P', '', '-f', path]);
    assert.notEqual(refused.code, 0);
    await runOk('ssh-keygen', ['-y', '-P', 'correct horse', '-f', path]);
    assert.equal(CaKeystore.open({ stateDir: dir.path, crypto: nodeCrypto, passphrase: 'correct horse' }).active('user').id, ks.active('user').id);
    assert.throws(() => CaKeystore.open({ stateDir: dir.path, crypto: nodeCrypto }), (e) => isAuthError(e, 'ERR_CONFIG') && e.message.includes(path));
  } finally {
    dir.remove();
  }
});

test('rotation: stage a standby key (trusted, not signing), activate it, retire the old one', { skip }, async () => {
  const dir = tempDir('portcullis-ca-');
  try {
    const changes: string[] = [];
    const ks = CaKeystore.open({ stateDir: dir.path, crypto: nodeCrypto, onChange: (c) => changes.push(`${c.event} ${c.action} ${c.kind}`) });
    assert.deepEqual(changes, ['ca.created created user', 'ca.created created upstream', 'ca.created created host']);
    const old = ks.active('user');
    const next = ks.stage('user');
    assert.deepEqual(changes.slice(3), ['ca.created staged user', 'ca.trust_changed staged user']);
    assert.equal(next.status, 'standby');
    assert.equal(ks.authorizedKeys('user').trim().split('\n').length, 2);
    assert.ok(ks.authorizedKeys('user').startsWith('ssh-ed25519 '));
    assert.ok(publicKeysEqual(ks.signer('user').publicKey, old.publicKey));
    // The staged key survives a restart as standby.
    const again = CaKeystore.open({ stateDir: dir.path, crypto: nodeCrypto });
    assert.deepEqual(again.keys('user').map((k) => [k.id, k.status]), [[old.id, 'active'], [next.id, 'standby']]);
    again.activate(next.id);
    assert.ok(publicKeysEqual(again.signer('user').publicKey, next.publicKey));
    assert.equal(CaKeystore.open({ stateDir: dir.path, crypto: nodeCrypto }).active('user').id, next.id);
    assert.throws(() => again.retire(next.id), (e) => isAuthError(e, 'ERR_CONFLICT'));
    again.retire(old.id);
    assert.equal(again.authorizedKeys('user').trim().split('\n').length, 1);
    assert.equal(CaKeystore.open({ stateDir: dir.path, crypto: nodeCrypto }).keys('user').length, 1);
    // Host CA lines: @cert-authority with the patterns given.
    const lines = again.knownHostsLines(['*.example.com']);
    assert.match(lines, /^@cert-authority \*\.example\.com ssh-ed25519 AAAA\S+ portcullis-host-ca-[0-9a-f]{16}\n$/);

    // An existing CA made with ssh-keygen can be imported as a standby key.
    await runOk('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'user-ca@example.com', '-f', dir.file('user_ca')]);
    const imported = again.import('user', readFileSync(dir.file('user_ca'), 'utf8'));
    assert.equal(imported.status, 'standby');
    assert.ok(publicKeysEqual(imported.publicKey, parsePublicKeyText(readFileSync(dir.file('user_ca.pub'), 'utf8')).key));
    assert.equal(mode(again.keyPath(imported.id)), 0o600);
    assert.throws(() => again.import('user', readFileSync(dir.file('user_ca'), 'utf8')), (e) => isAuthError(e, 'ERR_CONFLICT'));
    await runOk('ssh-keygen', ['-q', '-t', 'rsa', '-b', '2048', '-N', '', '-f', dir.file('small_ca')]);
    assert.throws(() => again.import('host', readFileSync(dir.file('small_ca'), 'utf8')), (e) => isAuthError(e, 'ERR_CONFIG') && /2048-bit RSA/.test(e.message));
  } finally {
    dir.remove();
  }
});
