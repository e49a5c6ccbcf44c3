// `ssh-keygen -k` spec files: our parser against ssh-keygen 9.2 on accepted and refused lines
// (strtoull base 0, keywords, comments, white space), and errors that name the line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { hasTool, tempDir } from '@portcullis/harness';
import { nodeCrypto } from '../src/crypto/node.js';
import { keySigner, publicPart } from '../src/keys/signature.js';
import { encodePublicKey, fingerprintSha256 } from '../src/keys/public-key.js';
import { formatCertificate, formatPublicKey } from '../src/keys/line.js';
import { signCertificate } from '../src/cert/certificate.js';
import { CertError } from '../src/errors.js';
import { toBase64 } from '../src/wire/bytes.js';
import { bytesToHex } from '../src/wire/writer.js';
import { KrlBuilder, encodeKrl, parseKrlSpec } from '../src/krl/index.js';
import type { KrlSpecEntry } from '../src/krl/index.js';

const HAVE = hasTool('ssh-keygen');
const U64 = 0xffffffffffffffffn;
const caPriv = nodeCrypto.generate('ssh-ed25519');
const ca = publicPart(caPriv);
const crypto = nodeCrypto;
// Two lines before the one under test: a comment and a line valid without a CA.
const PRELUDE = `# first\nhash: SHA256:${toBase64(new Uint8Array(32), false)}\n`;

function keygen(args: readonly string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile('ssh-keygen', args, { timeout: 30_000 }, (err, _o, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 255, stderr });
    });
  });
}

const serialsOf = (text: string): [bigint, bigint][] =>
  parseKrlSpec(text, { caKey: ca, crypto }).map((e) => {
    assert.equal(e.kind, 'serials');
    return e.kind === 'serials' ? [e.lo, e.hi] : [0n, 0n];
  });

function malformedAt(line: number): (e: unknown) => boolean {
  return (e) => e instanceof CertError && e.code === 'ERR_MALFORMED' && e.where === `krl spec line ${line}` && e.message.includes(`krl spec line ${line}`);
}

test('serial numbers are read as strtoull base 0', () => {
  assert.deepEqual(serialsOf('serial: 16\nserial: 0x10\nserial: 0X1f\nserial: 010\nserial: +7\n'), [[16n, 16n], [16n, 16n], [31n, 31n], [8n, 8n], [7n, 7n]]);
  assert.deepEqual(serialsOf('serial: 1-0x10\nserial: 18446744073709551615\nserial:5\n'), [[1n, 16n], [U64, U64], [5n, 5n]]);
  // A minus sign negates modulo 2^64, as strtoull does; white space may follow the dash.
  assert.deepEqual(serialsOf('serial: -5\nserial: 5- 7\n'), [[U64 - 4n, U64 - 4n], [5n, 7n]]);
});

test('comments, blank lines, case-insensitive keywords and trimming', () => {
  const entries = parseKrlSpec(
    ['# comment', '', '   \t', '  SERIAL:\t3 # three', 'Id:  alice smith  ', 'id: with#hash', 'iD:', 'serial: 4\t \t'].join('\n'),
    { caKey: ca, crypto },
  );
  assert.deepEqual(
    entries.map((e) => [e.line, e.kind, e.kind === 'keyId' ? e.keyId : e.kind === 'serials' ? e.lo : '']),
    [
      [4, 'serials', 3n],
      [5, 'keyId', 'alice smith'],
      [6, 'keyId', 'with'],
      [7, 'keyId', ''],
      [8, 'serials', 4n],
    ],
  );
  // A carriage return is not trimmed (ssh-keygen trims blanks and tabs only).
  assert.deepEqual(parseKrlSpec('id: x\r\n', { caKey: ca, crypto }).map((e) => e.kind === 'keyId' && e.keyId), ['x\r']);
  assert.throws(() => parseKrlSpec('serial: 5\r\n', { caKey: ca, crypto }), malformedAt(1));
  assert.deepEqual(parseKrlSpec('id: a', { caKey: 'none', crypto }), [{ line: 1, kind: 'keyId', ca: null, keyId: 'a' }]);
});

test('keys, hashes and certificates', () => {
  const k = nodeCrypto.generate('ecdsa-sha2-nistp256');
  const blob = encodePublicKey(publicPart(k));
  const cert = (serial: bigint) =>
    signCertificate(
      { key: publicPart(k), kind: 'host', serial, keyId: 'host-id', principals: ['h'], validAfter: 0n, validBefore: U64 },
      keySigner(nodeCrypto, caPriv),
      { crypto },
    );
  const spec = [
    `key: ${formatPublicKey(publicPart(k), 'c')}`,
    `SHA1: ${formatPublicKey(publicPart(k))}`,
    `sha256: ${formatCertificate(cert(3n))}`,
    `hash: ${fingerprintSha256(crypto, publicPart(k))}`,
    formatPublicKey(publicPart(k)),
    formatCertificate(cert(9n), 'cert'),
    formatCertificate(cert(0n)),
  ].join('\n');
  const e = parseKrlSpec(spec, { crypto });
  const sha1 = crypto.hash('sha1', blob);
  const sha256 = crypto.hash('sha256', blob);
  assert.deepEqual(e, [
    { line: 1, kind: 'key', key: publicPart(k) },
    { line: 2, kind: 'sha1', hash: sha1 },
    { line: 3, kind: 'sha256', hash: sha256 },
    { line: 4, kind: 'sha256', hash: sha256 },
    { line: 5, kind: 'key', key: publicPart(k) },
    { line: 6, kind: 'serials', ca, lo: 9n, hi: 9n },
    { line: 7, kind: 'keyId', ca, keyId: 'host-id' },
  ] satisfies KrlSpecEntry[]);
  const krl = new KrlBuilder().apply(e).build();
  assert.equal(krl.sha256.length, 1);
  assert.equal(krl.keys.length, 1);
});

const REFUSED: [string, string][] = [
  ['serial without a CA', 'serial: 5'],
  ['serial 0', 'serial: 0'],
  ['range from 0', 'serial: 0-5'],
  ['equal range ends', 'serial: 5-5'],
  ['reversed range', 'serial: 6-5'],
  ['no number', 'serial: abc'],
  ['empty serial', 'serial:'],
  ['dash only', 'serial: -'],
  ['0x without digits', 'serial: 0x'],
  ['8 in octal', 'serial: 08'],
  ['overflow', 'serial: 18446744073709551616'],
  ['overflow in a range end', 'serial: 1-99999999999999999999999'],
  ['trailing text', 'serial: 5 6'],
  ['range with empty end', 'serial: 5-'],
  ['id without a CA', 'id: x'],
  ['hash of another algorithm', 'hash: SHA1:AAAA'],
  ['hash not base64', 'hash: SHA256:!!!!'],
  ['hash of 31 bytes', `hash: SHA256:${toBase64(new Uint8Array(31), false)}`],
  ['key: with garbage', 'key: not-a-key'],
  ['bare garbage', 'hello world'],
  ['a single word', 'ssh-ed25519'],
  ['key type and blob disagree', `ecdsa-sha2-nistp256 ${formatPublicKey(ca).split(' ')[1]}`],
  ['truncated key blob', `ssh-ed25519 ${toBase64(encodePublicKey(ca).subarray(0, 40))}`],
  ['unknown key type', 'ssh-foo AAAAB3NzaC1mb28='],
];

test('refused lines give ERR_MALFORMED naming the line number', () => {
  for (const [name, line] of REFUSED) {
    const caKey = name.includes('without a CA') ? undefined : ca;
    assert.throws(() => parseKrlSpec(`${PRELUDE}${line}\n`, caKey ? { caKey, crypto } : { crypto }), malformedAt(3), name);
  }
  // A certificate whose CA signature does not verify (ssh-keygen refuses to load it).
  const c = signCertificate(
    { key: ca, kind: 'user', serial: 1n, keyId: 'x', principals: ['p'], validAfter: 0n, validBefore: U64 },
    keySigner(nodeCrypto, caPriv),
    { crypto },
  );
  const raw = c.raw.slice();
  raw[raw.length - 1] = raw[raw.length - 1]! ^ 1;
  assert.throws(() => parseKrlSpec(`${c.certType} ${toBase64(raw)}\n`, { crypto }), malformedAt(1));
  assert.throws(() => parseKrlSpec(5 as never, { crypto }), TypeError);
  assert.throws(() => parseKrlSpec('', {} as never), TypeError);
});

test('ssh-keygen -k agrees: refused lines fail there, accepted ones give the same bytes', { skip: !HAVE && 'ssh-keygen missing' }, async () => {
  const dir = tempDir('krl-spec-');
  try {
    writeFileSync(dir.file('ca.pub'), formatPublicKey(ca) + '\n');
    const refused = await Promise.all(
      REFUSED.map(async ([name, line], i) => {
        const f = dir.file(`r${i}`);
        writeFileSync(f, `${PRELUDE}${line}\n`);
        const args = ['-q', '-k', '-f', dir.file(`r${i}.krl`), ...(name.includes('without a CA') ? [] : ['-s', dir.file('ca.pub')]), f];
        return { name, code: (await keygen(args)).code };
      }),
    );
    for (const r of refused) assert.notEqual(r.code, 0, `ssh-keygen accepted: ${r.name}`);

    const accepted = [
      'serial: -5\nserial: 5- 7\nserial: +0x10\nserial: 010-0x20\n',
      'SeRiAl:\t 99\nID: a b \nid:\nid: \t x#y\n# only a comment\n\n',
      'id: x\r\nserial: 3\n',
      'serial: 1-18446744073709551615\nserial: 18446744073709551615\n',
    ];
    for (const [i, spec] of accepted.entries()) {
      const f = dir.file(`a${i}`);
      writeFileSync(f, spec);
      const r = await keygen(['-q', '-k', '-f', dir.file(`a${i}.krl`), '-s', dir.file('ca.pub'), '-z', '7', '-C', 'c', f]);
      assert.equal(r.code, 0, r.stderr);
      const theirs = new Uint8Array(readFileSync(dir.file(`a${i}.krl`)));
      const date = new DataView(theirs.buffer, theirs.byteOffset).getBigUint64(20);
      const ours = encodeKrl(new KrlBuilder().apply(parseKrlSpec(spec, { caKey: ca, crypto })).build(), { version: 7n, generatedDate: date, comment: 'c', layout: 'openssh' });
      assert.equal(bytesToHex(ours), bytesToHex(theirs), JSON.stringify(spec));
    }
  } finally {
    dir.remove();
  }
});
