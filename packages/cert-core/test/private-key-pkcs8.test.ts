// PKCS#8, PKCS#1 and SEC1 private keys made by `openssl genpkey` / `openssl pkey` and by
// node:crypto's export, read into the same key those tools hold.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import * as nc from 'node:crypto';
import { hasTool, tempDir } from '@portcullis/harness';
import type { TempDir } from '@portcullis/harness';
import { nodeCrypto } from '../src/crypto/node.js';
import { nobleCrypto } from '../src/crypto/noble.js';
import { isCertError } from '../src/errors.js';
import { formatPrivateKey, inspectPrivateKey, parsePrivateKey } from '../src/keys/private-key.js';
import { decodePkcs8PrivateKey, readPemBlocks } from '../src/keys/pkcs8.js';
import { isSigningPrivateKey } from '../src/keys/generate.js';
import { formatPublicKey } from '../src/keys/line.js';
import { publicPart, signData } from '../src/keys/signature.js';
import { toBase64, utf8 } from '../src/wire/bytes.js';
import { bigintToBytes, hexToBytes } from '../src/wire/writer.js';
import type { PrivateKey, PublicKey } from '../src/keys/types.js';
import { CURVE_HASH } from '../src/keys/types.js';

const haveOpenssl = hasTool('openssl');
const haveKeygen = hasTool('ssh-keygen');

let dir: TempDir;
before(() => {
  dir = tempDir();
});
after(() => dir.remove());

/** Runs a tool with stdin closed and returns stdout. */
function tool(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TZ: 'UTC' } }).toString();
}

function expectCode(f: () => unknown, code: string, message?: RegExp): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(isCertError(e), `expected CertError ${code}, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (message) assert.match(e.message, message);
    return true;
  });
}

/** The public key node:crypto sees in a PEM private key, in our vocabulary. */
function nodePublic(pem: string): PublicKey {
  const jwk = nc.createPublicKey(pem).export({ format: 'jwk' });
  const b = (s: string | undefined) => new Uint8Array(Buffer.from(s!, 'base64url'));
  const big = (s: string | undefined) => BigInt('0x' + Buffer.from(s!, 'base64url').toString('hex'));
  if (jwk.kty === 'OKP') return { type: 'ssh-ed25519', publicKey: b(jwk.x) };
  if (jwk.kty === 'RSA') return { type: 'ssh-rsa', e: big(jwk.e), n: big(jwk.n) };
  const curve = ({ 'P-256': 'nistp256', 'P-384': 'nistp384', 'P-521': 'nistp521' } as const)[jwk.crv as 'P-256'];
  const point = new Uint8Array([4, ...b(jwk.x), ...b(jwk.y)]);
  return { type: `ecdsa-sha2-${curve}`, curve, point } as PublicKey;
}

/** Signs with our parsed key and verifies with node:crypto holding the original PEM. */
function signsLikeOriginal(key: PrivateKey, pem: string): void {
  assert.ok(isSigningPrivateKey(key));
  for (const crypto of [nodeCrypto, nobleCrypto]) {
    const data = utf8(`signed by ${crypto.name}`);
    const sig = signData(crypto, key, data);
    const pub = nc.createPublicKey(pem);
    const ok =
      key.type === 'ssh-ed25519'
        ? nc.verify(null, data, pub, sig.bytes)
        : key.type === 'ssh-rsa'
          ? nc.verify('sha512', data, pub, sig.bytes)
          : nc.verify(CURVE_HASH[key.curve], data, { key: pub, dsaEncoding: 'ieee-p1363' }, sig.bytes);
    assert.ok(ok, `${key.type} via ${crypto.name}`);
  }
}

const OPENSSL_KEYS: readonly [string, string[]][] = [
  ['ed25519', ['-algorithm', 'ed25519']],
  ['p256', ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256']],
  ['p384', ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-384']],
  ['p521', ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-521']],
  ['rsa', ['-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048']],
];

test('openssl genpkey PKCS#8 keys, and their -traditional PKCS#1/SEC1 forms, parse to the same key', { skip: !haveOpenssl && 'openssl missing' }, () => {
  for (const [name, args] of OPENSSL_KEYS) {
    const file = dir.file(`${name}.pem`);
    // openssl genpkey <args> -out <name>.pem
    tool('openssl', ['genpkey', ...args, '-out', file]);
    const pem = readFileSync(file, 'utf8');
    assert.match(pem, /^-----BEGIN PRIVATE KEY-----/);
    const parsed = parsePrivateKey(pem);
    assert.equal(parsed.format, 'pkcs8');
    assert.equal(parsed.comment, '');
    assert.deepEqual(publicPart(parsed.key), nodePublic(pem), name);
    signsLikeOriginal(parsed.key, pem);
    assert.deepEqual(inspectPrivateKey(pem), { format: 'pkcs8', encrypted: false });
    if (name !== 'ed25519') {
      // openssl pkey -in <name>.pem -traditional: PKCS#1 for RSA, SEC1 for EC.
      const trad = tool('openssl', ['pkey', '-in', file, '-traditional']);
      const back = parsePrivateKey(trad);
      assert.equal(back.format, name === 'rsa' ? 'pkcs1' : 'sec1');
      assert.deepEqual(back.key, parsed.key);
    }
  }
});

test('openssl ecparam -genkey output (EC PARAMETERS block first) parses', { skip: !haveOpenssl && 'openssl missing' }, () => {
  // openssl ecparam -name secp384r1 -genkey
  const pem = tool('openssl', ['ecparam', '-name', 'secp384r1', '-genkey']);
  assert.match(pem, /BEGIN EC PARAMETERS[\s\S]*BEGIN EC PRIVATE KEY/);
  const parsed = parsePrivateKey(pem);
  assert.equal(parsed.key.type, 'ecdsa-sha2-nistp384');
  assert.deepEqual(publicPart(parsed.key), nodePublic(pem));
});

test('a converted PEM key written as OpenSSH is the key ssh-keygen sees in the PEM', { skip: !(haveOpenssl && haveKeygen) && 'tools missing' }, () => {
  for (const name of ['p256', 'p384', 'p521', 'rsa']) {
    const file = dir.file(`${name}.pem`);
    const parsed = parsePrivateKey(readFileSync(file, 'utf8'));
    const ours = dir.file(`${name}-openssh`);
    writeFileSync(ours, formatPrivateKey(parsed.key, { crypto: nodeCrypto, comment: name }), { mode: 0o600 });
    // ssh-keygen -y -f <name>.pem reads the PEM with OpenSSL.
    const fromPem = tool('ssh-keygen', ['-y', '-f', file]).trim();
    assert.equal(fromPem, formatPublicKey(publicPart(parsed.key)));
    assert.equal(tool('ssh-keygen', ['-y', '-f', ours]).trim(), `${fromPem} ${name}`);
  }
});

test('encrypted PKCS#8 and legacy encrypted PEM are ERR_UNSUPPORTED', { skip: !haveOpenssl && 'openssl missing' }, () => {
  const file = dir.file('enc-src.pem');
  tool('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', file]);
  // openssl pkey -in enc-src.pem -aes256 -passout pass:secret
  const pkcs8 = tool('openssl', ['pkey', '-in', file, '-aes256', '-passout', 'pass:secret']);
  assert.match(pkcs8, /BEGIN ENCRYPTED PRIVATE KEY/);
  expectCode(() => parsePrivateKey(pkcs8, { passphrase: 'secret' }), 'ERR_UNSUPPORTED', /encrypted/);
  assert.deepEqual(inspectPrivateKey(pkcs8), { format: 'pkcs8', encrypted: true });
  // openssl pkey -in enc-src.pem -traditional -aes256 -passout pass:secret
  const legacy = tool('openssl', ['pkey', '-in', file, '-traditional', '-aes256', '-passout', 'pass:secret']);
  assert.match(legacy, /Proc-Type: 4,ENCRYPTED/);
  expectCode(() => parsePrivateKey(legacy), 'ERR_UNSUPPORTED', /encrypted/);
  assert.deepEqual(inspectPrivateKey(legacy), { format: 'sec1', encrypted: true });
});

test("node:crypto's pkcs8, pkcs1 and sec1 exports parse to the same key", () => {
  const cases: [string, nc.KeyPairKeyObjectResult][] = [
    ['ed25519', nc.generateKeyPairSync('ed25519')],
    ['P-256', nc.generateKeyPairSync('ec', { namedCurve: 'P-256' })],
    ['P-384', nc.generateKeyPairSync('ec', { namedCurve: 'P-384' })],
    ['P-521', nc.generateKeyPairSync('ec', { namedCurve: 'P-521' })],
    ['rsa', nc.generateKeyPairSync('rsa', { modulusLength: 2048 })],
  ];
  for (const [name, { privateKey }] of cases) {
    const pkcs8 = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const parsed = parsePrivateKey(pkcs8).key;
    assert.deepEqual(publicPart(parsed), nodePublic(pkcs8), name);
    signsLikeOriginal(parsed, pkcs8);
    // The DER form, as WebCrypto's exportKey('pkcs8') gives it.
    const der = new Uint8Array(privateKey.export({ type: 'pkcs8', format: 'der' }));
    assert.deepEqual(decodePkcs8PrivateKey(der), parsed);
    if (name === 'rsa' || name.startsWith('P-')) {
      const legacy = privateKey.export({ type: name === 'rsa' ? 'pkcs1' : 'sec1', format: 'pem' }).toString();
      assert.deepEqual(parsePrivateKey(legacy).key, parsed, `${name} legacy`);
    }
  }
});

// --- hand-built DER: each structure once right, then broken one way at a time -------------

function tlv(tag: number, ...parts: (Uint8Array | number[])[]): Uint8Array {
  const body = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    body.set(p, o);
    o += p.length;
  }
  const len = body.length;
  const head = len < 128 ? [len] : len < 256 ? [0x81, len] : [0x82, len >> 8, len & 255];
  return new Uint8Array([tag, ...head, ...body]);
}
const seq = (...p: (Uint8Array | number[])[]) => tlv(0x30, ...p);
const int = (v: bigint) => {
  let hex = v.toString(16);
  if (hex.length % 2) hex = '0' + hex;
  if (parseInt(hex.slice(0, 2), 16) & 0x80) hex = '00' + hex;
  return tlv(0x02, hexToBytes(hex));
};
const octets = (b: Uint8Array | number[]) => tlv(0x04, b);
const OID_ED25519 = [0x06, 0x03, 0x2b, 0x65, 0x70];
const OID_X25519 = [0x06, 0x03, 0x2b, 0x65, 0x6e];
const OID_EC = [0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256 = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384 = [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_RSA = [0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_RSA_PSS = [0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];

const pem = (label: string, der: Uint8Array) => `-----BEGIN ${label}-----\n${toBase64(der).replace(/.{64}/g, '$&\n')}\n-----END ${label}-----\n`;

test('hand-built DER: the valid forms parse, every broken one is a CertError with the right code', () => {
  const seed = new Uint8Array(32).fill(9);
  const ed = (inner: Uint8Array, version = 0n, extra: Uint8Array[] = []) =>
    seq(int(version), seq(OID_ED25519), octets(inner), ...extra);
  const goodEd = ed(octets(seed));
  const edKey = decodePkcs8PrivateKey(goodEd);
  assert.equal(edKey.type, 'ssh-ed25519');
  // RFC 8410 section 10.3 example: OneAsymmetricKey v2 with the public key attached.
  const edPub = edKey.type === 'ssh-ed25519' ? edKey.publicKey : new Uint8Array();
  assert.deepEqual(decodePkcs8PrivateKey(ed(octets(seed), 1n, [tlv(0x81, [0], edPub)])), edKey);

  const ecJwk = () => nc.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  const pointOf = (j: nc.JsonWebKey) => new Uint8Array([4, ...Buffer.from(j.x!, 'base64url'), ...Buffer.from(j.y!, 'base64url')]);
  const ec = ecJwk();
  const d = new Uint8Array(Buffer.from(ec.d!, 'base64url'));
  const point = pointOf(ec);
  const sec1 = (...fields: Uint8Array[]) => seq(int(1n), octets(d), ...fields);
  const withParams = (oid: number[]) => tlv(0xa0, oid);
  const withPoint = (p: Uint8Array) => tlv(0xa1, tlv(0x03, [0], p));
  assert.equal(parsePrivateKey(pem('EC PRIVATE KEY', sec1(withParams(OID_P256), withPoint(point)))).key.type, 'ecdsa-sha2-nistp256');
  const ecPkcs8 = (inner: Uint8Array, params: number[] = OID_P256) => seq(int(0n), seq(OID_EC, params), octets(inner));
  assert.equal(decodePkcs8PrivateKey(ecPkcs8(sec1())).type, 'ecdsa-sha2-nistp256');

  const rsa = nc.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const big = (s: string | undefined) => BigInt('0x' + Buffer.from(s!, 'base64url').toString('hex'));
  const [n, e, dd, p, q, dp, dq, qi] = [rsa.n, rsa.e, rsa.d, rsa.p, rsa.q, rsa.dp, rsa.dq, rsa.qi].map(big) as bigint[];
  const pkcs1 = (over: Partial<Record<'version' | 'qi' | 'q', bigint>> = {}) =>
    seq(int(over.version ?? 0n), int(n!), int(e!), int(dd!), int(p!), int(over.q ?? q!), int(dp!), int(dq!), int(over.qi ?? qi!));
  assert.equal(parsePrivateKey(pem('RSA PRIVATE KEY', pkcs1())).key.type, 'ssh-rsa');

  const mutate = (b: Uint8Array, at: number, v: number) => {
    const c = b.slice();
    c[at] = v;
    return c;
  };
  const cases: [string, string, string][] = [
    ['trailing byte after the structure', pem('PRIVATE KEY', new Uint8Array([...goodEd, 0])), 'ERR_MALFORMED'],
    ['indefinite length', pem('PRIVATE KEY', mutate(goodEd, 1, 0x80)), 'ERR_MALFORMED'],
    ['long-form length under 128', pem('PRIVATE KEY', new Uint8Array([0x30, 0x81, goodEd[1]!, ...goodEd.subarray(2)])), 'ERR_MALFORMED'],
    ['length past the end', pem('PRIVATE KEY', mutate(goodEd, 1, 0x7f)), 'ERR_MALFORMED'],
    ['version 2', pem('PRIVATE KEY', ed(octets(seed), 2n)), 'ERR_MALFORMED'],
    ['31-byte Ed25519 seed', pem('PRIVATE KEY', ed(octets(seed.subarray(1)))), 'ERR_MALFORMED'],
    ['seed not wrapped in an OCTET STRING', pem('PRIVATE KEY', ed(seed)), 'ERR_MALFORMED'],
    ['Ed25519 with the wrong public key', pem('PRIVATE KEY', ed(octets(seed), 1n, [tlv(0x81, [0], new Uint8Array(32))])), 'ERR_MALFORMED'],
    ['X25519', pem('PRIVATE KEY', seq(int(0n), seq(OID_X25519), octets(octets(seed)))), 'ERR_UNSUPPORTED'],
    ['RSA-PSS', pem('PRIVATE KEY', seq(int(0n), seq(OID_RSA_PSS), octets(pkcs1()))), 'ERR_UNSUPPORTED'],
    ['RSA without NULL parameters', pem('PRIVATE KEY', seq(int(0n), seq(OID_RSA), octets(pkcs1()))), 'ERR_MALFORMED'],
    ['multi-prime RSA', pem('RSA PRIVATE KEY', pkcs1({ version: 1n })), 'ERR_UNSUPPORTED'],
    ['RSA coefficient not q^-1 mod p', pem('RSA PRIVATE KEY', pkcs1({ qi: qi! + 1n })), 'ERR_MALFORMED'],
    ['RSA q not a factor', pem('RSA PRIVATE KEY', pkcs1({ q: q! + 2n })), 'ERR_MALFORMED'],
    ['negative INTEGER', pem('RSA PRIVATE KEY', seq(tlv(0x02, [0xff]))), 'ERR_MALFORMED'],
    ['INTEGER with a superfluous zero', pem('RSA PRIVATE KEY', seq(tlv(0x02, [0, 0]))), 'ERR_MALFORMED'],
    ['SEC1 without a curve', pem('EC PRIVATE KEY', sec1()), 'ERR_MALFORMED'],
    ['SEC1 with another key\'s public point', pem('EC PRIVATE KEY', sec1(withParams(OID_P256), withPoint(pointOf(ecJwk())))), 'ERR_MALFORMED'],
    ['SEC1 with a public point off the curve', pem('EC PRIVATE KEY', sec1(withParams(OID_P256), withPoint(mutate(point, 64, point[64]! ^ 1)))), 'ERR_MALFORMED'],
    ['SEC1 curve contradicting PKCS#8', pem('PRIVATE KEY', ecPkcs8(sec1(withParams(OID_P384)), OID_P256)), 'ERR_MALFORMED'],
    ['EC scalar zero', pem('EC PRIVATE KEY', seq(int(1n), octets([0]), withParams(OID_P256))), 'ERR_MALFORMED'],
    ['EC scalar of the group order', pem('EC PRIVATE KEY', seq(int(1n), octets(bigintToBytes(0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n, 32)), withParams(OID_P256))), 'ERR_MALFORMED'],
    ['unknown curve', pem('EC PRIVATE KEY', sec1(withParams([0x06, 0x03, 0x2b, 0x65, 0x6f]))), 'ERR_UNSUPPORTED'],
    ['DSA key', pem('DSA PRIVATE KEY', seq(int(0n))), 'ERR_UNSUPPORTED'],
    ['END label differs', `-----BEGIN PRIVATE KEY-----\n${toBase64(goodEd)}\n-----END RSA PRIVATE KEY-----\n`, 'ERR_MALFORMED'],
    ['no END line', `-----BEGIN PRIVATE KEY-----\n${toBase64(goodEd)}\n`, 'ERR_MALFORMED'],
    ['bad base64', `-----BEGIN PRIVATE KEY-----\n${toBase64(goodEd).slice(1)}\n-----END PRIVATE KEY-----\n`, 'ERR_MALFORMED'],
    ['text inside the body', `-----BEGIN PRIVATE KEY-----\n${toBase64(goodEd)}\nhello world\n-----END PRIVATE KEY-----\n`, 'ERR_MALFORMED'],
    ['two keys in one file', pem('PRIVATE KEY', goodEd) + pem('PRIVATE KEY', goodEd), 'ERR_MALFORMED'],
    ['no key at all', 'just some text\n', 'ERR_MALFORMED'],
    ['a public key', pem('PUBLIC KEY', goodEd), 'ERR_MALFORMED'],
    ['unknown header', `-----BEGIN PRIVATE KEY-----\nFoo: bar\n\n${toBase64(goodEd)}\n-----END PRIVATE KEY-----\n`, 'ERR_MALFORMED'],
  ];
  for (const [what, text, code] of cases) {
    assert.throws(
      () => parsePrivateKey(text),
      (err: unknown) => {
        assert.ok(isCertError(err), `${what}: ${String(err)}`);
        assert.equal(err.code, code, `${what}: ${err.message}`);
        return true;
      },
    );
  }
  // Tolerated: CRLF line ends, a description before the armour, EC PARAMETERS blocks.
  const crlf = pem('PRIVATE KEY', goodEd).replace(/\n/g, '\r\n');
  assert.deepEqual(parsePrivateKey(`Key for host x\r\n${crlf}`).key, edKey);
  assert.equal(readPemBlocks(pem('EC PARAMETERS', new Uint8Array(OID_P256)) + crlf).length, 2);
});
