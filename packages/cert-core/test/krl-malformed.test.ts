// Malformed KRLs: each must fail the whole KRL with CertError ERR_MALFORMED, as OpenSSH 9.2's
// ssh_krl_from_blob does (sshd then treats every key as revoked). Every row is also given to the
// real `ssh-keygen -Q -f bad.krl` (exit 255 = unreadable), so the table itself is checked
// against OpenSSH. A second table lists edge cases both accept.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { hasTool, tempDir } from '@portcullis/harness';
import { nodeCrypto } from '../src/crypto/node.js';
import { keySigner, publicPart } from '../src/keys/signature.js';
import { encodePublicKey } from '../src/keys/public-key.js';
import { signCertificate } from '../src/cert/certificate.js';
import { SshWriter, mpintBytes } from '../src/wire/writer.js';
import { CertError } from '../src/errors.js';
import { KrlBuilder, encodeKrl, parseKrl } from '../src/krl/index.js';

const HAVE = hasTool('ssh-keygen');
const U64 = 0xffffffffffffffffn;
const MAGIC = [0x53, 0x53, 0x48, 0x4b, 0x52, 0x4c, 0x0a, 0x00];

interface Header {
  magic?: number[];
  format?: number;
  comment?: Uint8Array | string;
  reserved?: Uint8Array;
  flags?: bigint;
}

function header(h: Header = {}): SshWriter {
  const w = new SshWriter();
  w.raw(new Uint8Array(h.magic ?? MAGIC))
    .uint32(h.format ?? 1)
    .uint64(1n)
    .uint64(1_700_000_000n)
    .uint64(h.flags ?? 0n)
    .string(h.reserved ?? new Uint8Array(0))
    .string(h.comment ?? '');
  return w;
}

function krl(sections: Uint8Array[], h: Header = {}): Uint8Array {
  const w = header(h);
  for (const s of sections) w.raw(s);
  return w.finish();
}

function sec(type: number, body: Uint8Array): Uint8Array {
  return new SshWriter().byte(type).string(body).finish();
}

function cat(...parts: Uint8Array[]): Uint8Array {
  const w = new SshWriter();
  for (const p of parts) w.raw(p);
  return w.finish();
}

const ca = publicPart(nodeCrypto.generate('ssh-ed25519'));
const CA = encodePublicKey(ca);

function certs(subs: Uint8Array[], caBlob: Uint8Array = CA, reserved: Uint8Array = new Uint8Array(0)): Uint8Array {
  const w = new SshWriter().string(caBlob).string(reserved);
  for (const s of subs) w.raw(s);
  return sec(1, w.finish());
}

const u64s = (...v: bigint[]): Uint8Array => {
  const w = new SshWriter();
  for (const x of v) w.uint64(x);
  return w.finish();
};
const list = (...v: bigint[]): Uint8Array => sec(0x20, u64s(...v));
const range = (lo: bigint, hi: bigint): Uint8Array => sec(0x21, u64s(lo, hi));
const bitmapRaw = (offset: bigint, mpint: Uint8Array, extra: Uint8Array = new Uint8Array(0)): Uint8Array =>
  sec(0x22, new SshWriter().uint64(offset).string(mpint).raw(extra).finish());
const bitmap = (offset: bigint, bits: bigint): Uint8Array => bitmapRaw(offset, mpintBytes(bits));
const ids = (...v: (string | Uint8Array)[]): Uint8Array => {
  const w = new SshWriter();
  for (const x of v) w.string(x);
  return sec(0x23, w.finish());
};
const blobs = (type: number, ...v: Uint8Array[]): Uint8Array => {
  const w = new SshWriter();
  for (const x of v) w.string(x);
  return sec(type, w.finish());
};
const bytes = (n: number, fill = 1): Uint8Array => new Uint8Array(n).fill(fill);
const keyBlob = (type: string, ...fields: (Uint8Array | bigint)[]): Uint8Array => {
  const w = new SshWriter().string(type);
  for (const f of fields) typeof f === 'bigint' ? w.mpint(f) : w.string(f);
  return w.finish();
};

const userKey = publicPart(nodeCrypto.generate('ssh-ed25519'));
const caPriv = nodeCrypto.generate('ssh-ed25519');
const aCert = signCertificate(
  { key: userKey, kind: 'user', serial: 1n, keyId: 'x', principals: ['p'], validAfter: 0n, validBefore: U64 },
  keySigner(nodeCrypto, caPriv),
  { crypto: nodeCrypto },
);
const valid = encodeKrl(
  new KrlBuilder().revokeSerials(ca, [1n, 2n, 5n, 9n, 100n, 101n, 5000n]).revokeSerialRange(ca, 10000n, 20000n).revokeKeyId(ca, 'id').revokeKey(userKey).revokeSha1(bytes(20)).revokeSha256(bytes(32)).build(),
  { generatedDate: 1n },
);

const MALFORMED: [string, Uint8Array][] = [
  ['empty input', new Uint8Array(0)],
  ['short magic', new Uint8Array(MAGIC.slice(0, 6))],
  ['bad magic', krl([], { magic: [...MAGIC.slice(0, 7), 1] })],
  ['format version 2', krl([], { format: 2 })],
  ['format version 0', krl([], { format: 0 })],
  ['header cut inside the dates', valid.subarray(0, 25)],
  ['header cut before the comment', valid.subarray(0, 40)],
  ['comment with an inner NUL', krl([], { comment: new Uint8Array([0x61, 0, 0x62]) })],
  ['unknown section 0', krl([sec(0, new Uint8Array(0))])],
  ['unknown section 6', krl([sec(6, new Uint8Array(0))])],
  ['signature section (4)', krl([sec(4, CA), new SshWriter().string(bytes(64)).finish()])],
  ['extension section (255, >= 9.4 only)', krl([sec(255, new SshWriter().string('x@example.com').boolean(false).string('').finish())])],
  ['section length past the end', cat(krl([]), new Uint8Array([1, 0, 0, 0, 9, 0, 0]))],
  ['a lone section type byte', cat(krl([]), new Uint8Array([2]))],
  ['truncated valid KRL', valid.subarray(0, valid.length - 3)],
  ['valid KRL plus one byte', cat(valid, new Uint8Array([0]))],
  ['CA key that is not a key', krl([certs([list(1n)], new SshWriter().string('not a key').finish())])],
  ['CA key of an unknown type', krl([certs([list(1n)], keyBlob('ssh-foo', bytes(32)))])],
  ['CA key: Ed25519 of 31 bytes', krl([certs([list(1n)], keyBlob('ssh-ed25519', bytes(31)))])],
  ['CA key with trailing bytes', krl([certs([list(1n)], cat(CA, bytes(1)))])],
  ['CA key: RSA of 512 bits', krl([certs([list(1n)], keyBlob('ssh-rsa', 65537n, (1n << 511n) + 1n))])],
  ['CA key: ECDSA point not on the curve', krl([certs([list(1n)], keyBlob('ecdsa-sha2-nistp256', new TextEncoder().encode('nistp256'), cat(new Uint8Array([4]), bytes(64, 7))))])],
  ['certificates section without reserved', krl([sec(1, new SshWriter().string(CA).finish())])],
  ['unknown subsection 0x24', krl([certs([sec(0x24, new Uint8Array(0))])])],
  ['unknown subsection 0x39 (extension, >= 9.4 only)', krl([certs([sec(0x39, new SshWriter().string('x').boolean(false).string('').finish())])])],
  ['serial list of 7 bytes', krl([certs([sec(0x20, bytes(7))])])],
  ['serial list with 0', krl([certs([list(3n, 0n, 4n)])])],
  ['range with lo 0', krl([certs([range(0n, 5n)])])],
  ['range lo > hi', krl([certs([range(6n, 5n)])])],
  ['range with 8 leftover bytes', krl([certs([sec(0x21, u64s(1n, 2n, 3n))])])],
  ['range of one u64', krl([certs([sec(0x21, u64s(1n))])])],
  ['bitmap bit 0 at offset 0', krl([certs([bitmap(0n, 0b101n)])])],
  ['bitmap wrapping past 2^64', krl([certs([bitmap(U64, 0b11n)])])],
  ['bitmap wrapping, unset top bits too', krl([certs([bitmap(U64 - 7n, 1n << 8n)])])],
  ['bitmap mpint of 2049 bytes', krl([certs([bitmapRaw(1n, cat(new Uint8Array([1]), bytes(2048, 0)))])])],
  ['bitmap mpint of 2050 bytes (leading zeros)', krl([certs([bitmapRaw(1n, cat(new Uint8Array([0, 0, 1]), bytes(2047, 0)))])])],
  ['bitmap mpint negative', krl([certs([bitmapRaw(1n, new Uint8Array([0x80]))])])],
  ['bitmap with leftover bytes', krl([certs([bitmapRaw(1n, new Uint8Array([1]), bytes(2))])])],
  ['bitmap without its mpint', krl([certs([sec(0x22, u64s(1n))])])],
  ['key id with an inner NUL', krl([certs([ids('a\0b')])])],
  ['key id section cut', krl([certs([sec(0x23, new Uint8Array([0, 0, 0, 5, 0x61]))])])],
  ['subsection length past the section', krl([certs([new Uint8Array([0x20, 0, 0, 1, 0])])])],
  ['SHA1 of 19 bytes', krl([blobs(3, bytes(19))])],
  ['SHA1 of 32 bytes', krl([blobs(3, bytes(32))])],
  ['SHA256 of 31 bytes', krl([blobs(5, bytes(31))])],
  ['SHA256 of 33 bytes', krl([blobs(5, bytes(32), bytes(33))])],
  ['SHA256 of 0 bytes', krl([blobs(5, new Uint8Array(0))])],
  ['explicit key section cut', krl([sec(2, new Uint8Array([0, 0, 0, 9, 1, 2]))])],
];

const ACCEPTED: [string, Uint8Array, (k: ReturnType<typeof parseKrl>) => boolean][] = [
  ['header only', krl([]), (k) => k.certificates.length === 0],
  ['flags and reserved set', krl([], { flags: 5n, reserved: bytes(3) }), (k) => k.header.flags === 5n],
  ['comment with a final NUL (dropped)', krl([], { comment: new Uint8Array([0x61, 0]) }), (k) => k.header.comment === 'a'],
  ['comment not UTF-8', krl([], { comment: new Uint8Array([0xff, 0xfe]) }), (k) => k.header.commentBytes.length === 2],
  ['bitmap at offset 0 without bit 0', krl([certs([bitmap(0n, 0b110n)])]), (k) => k.certificates[0]!.serials.lo[0] === 1n],
  ['empty bitmap (no section created)', krl([certs([bitmap(5n, 0n)])]), (k) => k.certificates.length === 0],
  ['bitmap of 16384 bits (2049 bytes, leading zero)', krl([certs([bitmap(1n, 1n << 16383n)])]), (k) => k.certificates[0]!.serials.lo[0] === 16384n],
  ['bitmap mpint with superfluous leading zeros', krl([certs([bitmapRaw(1n, new Uint8Array([0, 0, 1]))])]), (k) => k.certificates[0]!.serials.hi[0] === 1n],
  ['bitmap at 2^64-1 with bit 0 only', krl([certs([bitmap(U64, 1n)])]), (k) => k.certificates[0]!.serials.hi[0] === U64],
  ['range lo == hi', krl([certs([range(7n, 7n)])]), (k) => k.certificates[0]!.serials.lo[0] === 7n],
  ['serial 2^64-1 in a list', krl([certs([list(U64)])]), (k) => k.certificates[0]!.serials.hi[0] === U64],
  ['key id with a final NUL (dropped)', krl([certs([ids(new Uint8Array([0x62, 0]))])]), (k) => k.certificates[0]!.keyIds[0]!.length === 1],
  ['empty key id', krl([certs([ids('')])]), (k) => k.certificates[0]!.keyIds[0]!.length === 0],
  ['certificates section with no subsections', krl([certs([])]), (k) => k.certificates.length === 0],
  ['certificates reserved not empty', krl([certs([list(1n)], CA, bytes(4))]), (k) => k.certificates.length === 1],
  ['explicit key blob that is not a key', krl([blobs(2, bytes(5))]), (k) => k.keys.length === 1],
  ['two sections for one CA merge', krl([certs([list(5n)]), certs([list(4n)], new Uint8Array(0)), certs([range(1n, 3n)])]), (k) => k.certificates.length === 2 && String([...k.certificates[0]!.serials.hi]) === '3,5'],
  ['empty sections of each kind', krl([blobs(2), blobs(3), blobs(5)]), (k) => k.keys.length === 0],
];

function keygen(args: readonly string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile('ssh-keygen', args, { timeout: 30_000 }, (err, _o, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 255, stderr });
    });
  });
}

test('malformed KRLs fail with CertError ERR_MALFORMED', () => {
  for (const [name, bytes] of MALFORMED) {
    assert.throws(
      () => parseKrl(bytes),
      (e: unknown) => e instanceof CertError && e.code === 'ERR_MALFORMED' && e.message.startsWith('cert-core: '),
      name,
    );
  }
});

test('edge cases OpenSSH accepts are accepted', () => {
  for (const [name, bytes, check] of ACCEPTED) {
    assert.ok(check(parseKrl(bytes)), name);
  }
});

test('a certificate as a CA key is refused (9.2 would parse it; it can never match)', () => {
  assert.throws(() => parseKrl(krl([certs([list(1n)], aCert.raw)])), (e: unknown) => e instanceof CertError && e.code === 'ERR_MALFORMED');
});

test('ssh-keygen 9.2 agrees with both tables', { skip: !HAVE && 'ssh-keygen missing' }, async () => {
  const dir = tempDir('krl-malformed-');
  try {
    const rows = [...MALFORMED.map(([n, b]) => [n, b, 255] as const), ...ACCEPTED.map(([n, b]) => [n, b, 0] as const)];
    const results = await Promise.all(
      rows.map(async ([name, bytes, want], i) => {
        const f = dir.file(`k${i}.krl`);
        writeFileSync(f, bytes);
        const r = await keygen(['-Q', '-f', f]);
        return { name, want, got: r.code, stderr: r.stderr };
      }),
    );
    for (const r of results) assert.equal(r.got, r.want, `${r.name}: ssh-keygen exit ${r.got} ${r.stderr}`);
  } finally {
    dir.remove();
  }
});
