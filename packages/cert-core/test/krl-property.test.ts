// Property tests: random revocations -> build -> encode -> parse answer every probe exactly as a
// naive model of OpenSSH's rules does; random mutations and truncations of valid KRLs, and
// random spec text, only ever throw CertError ERR_MALFORMED.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { nodeCrypto } from '../src/crypto/node.js';
import { keySigner, publicPart } from '../src/keys/signature.js';
import { encodePublicKey, publicKeysEqual } from '../src/keys/public-key.js';
import { signCertificate } from '../src/cert/certificate.js';
import type { Certificate } from '../src/cert/certificate.js';
import type { PublicKey } from '../src/keys/types.js';
import { formatPublicKey } from '../src/keys/line.js';
import { CertError } from '../src/errors.js';
import { KrlBuilder, compileKrl, encodeKrl, parseKrl, parseKrlSpec } from '../src/krl/index.js';
import type { Krl } from '../src/krl/index.js';

const U64 = 0xffffffffffffffffn;
const CA_PRIV = [nodeCrypto.generate('ssh-ed25519'), nodeCrypto.generate('ecdsa-sha2-nistp256'), nodeCrypto.generate('ssh-ed25519')];
const CAS = CA_PRIV.map(publicPart);
const SUBJECTS = [0, 1, 2, 3].map(() => publicPart(nodeCrypto.generate('ssh-ed25519')));
/** Keys that hash/explicit rules may revoke: subjects and CA keys alike. */
const POOL: PublicKey[] = [...SUBJECTS, ...CAS];
const BASE: Certificate = signCertificate(
  { key: SUBJECTS[0]!, kind: 'user', serial: 1n, keyId: 'x', principals: ['p'], validAfter: 0n, validBefore: U64 },
  keySigner(nodeCrypto, CA_PRIV[0]!),
  { crypto: nodeCrypto },
);
const IDS = ['alice', 'bob', '', 'ü', 'a b', 'alice2'];

const serial = fc.oneof(
  fc.bigInt({ min: 1n, max: 400n }),
  fc.bigInt({ min: U64 - 400n, max: U64 }),
  fc.bigInt({ min: 1n, max: U64 }),
);
const caIndex = fc.integer({ min: -1, max: CAS.length - 1 });
const content = fc.record({
  ranges: fc.array(
    fc.tuple(caIndex, serial, fc.oneof(fc.constant(0n), fc.bigInt({ min: 0n, max: 40n }), fc.bigInt({ min: 0n, max: 100000n }))).map(
      ([ca, lo, len]) => [ca, lo, lo + len > U64 ? U64 : lo + len] as const,
    ),
    { maxLength: 40 },
  ),
  // Long arithmetic runs: dense bitmaps, some over 16384 bits.
  strides: fc.array(fc.tuple(caIndex, fc.bigInt({ min: 1n, max: 1000n }), fc.integer({ min: 2, max: 3 }), fc.integer({ min: 1, max: 12000 })), { maxLength: 2 }),
  ids: fc.array(fc.tuple(caIndex, fc.constantFrom(...IDS)), { maxLength: 6 }),
  keys: fc.array(fc.nat(POOL.length - 1), { maxLength: 3 }),
  sha1: fc.array(fc.nat(POOL.length - 1), { maxLength: 3 }),
  sha256: fc.array(fc.nat(POOL.length - 1), { maxLength: 3 }),
  junkKeys: fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 2 }),
});
type Content = typeof content extends fc.Arbitrary<infer T> ? T : never;

const caOf = (i: number): PublicKey | null => (i < 0 ? null : CAS[i]!);
const hash = (alg: 'sha1' | 'sha256', k: PublicKey): Uint8Array => nodeCrypto.hash(alg, encodePublicKey(k));

function build(c: Content): Krl {
  const b = new KrlBuilder();
  for (const [ca, lo, hi] of c.ranges) b.revokeSerialRange(caOf(ca), lo, hi);
  for (const [ca, start, stride, count] of c.strides) b.revokeSerials(caOf(ca), Array.from({ length: count }, (_, i) => start + BigInt(i * stride)));
  for (const [ca, id] of c.ids) b.revokeKeyId(caOf(ca), id);
  for (const k of c.keys) b.revokeKey(POOL[k]!);
  for (const k of c.sha1) b.revokeSha1(hash('sha1', POOL[k]!));
  for (const k of c.sha256) b.revokeSha256(hash('sha256', POOL[k]!));
  for (const j of c.junkKeys) b.addBlob('keys', j);
  return b.build();
}

/** OpenSSH's rules evaluated directly on the drawn content (krl.c ssh_krl_check_key). */
function naive(c: Content, probe: PublicKey | Certificate): boolean {
  const keyRevoked = (k: PublicKey): boolean =>
    [...c.keys, ...c.sha1, ...c.sha256].some((i) => publicKeysEqual(POOL[i]!, k));
  if (!('certType' in probe)) return keyRevoked(probe);
  const inScope = (ca: number): boolean => ca < 0 || publicKeysEqual(CAS[ca]!, probe.signatureKey);
  if (keyRevoked(probe.key) || keyRevoked(probe.signatureKey)) return true;
  if (c.ids.some(([ca, id]) => inScope(ca) && id === probe.keyId)) return true;
  if (probe.serial === 0n) return false;
  if (c.ranges.some(([ca, lo, hi]) => inScope(ca) && lo <= probe.serial && probe.serial <= hi)) return true;
  return c.strides.some(([ca, start, stride, count]) => {
    if (!inScope(ca) || probe.serial < start) return false;
    const d = probe.serial - start;
    return d % BigInt(stride) === 0n && d / BigInt(stride) < BigInt(count);
  });
}

/** Probes at every range boundary, plus random ones, for each CA and for an unknown CA. */
function probes(c: Content, extra: readonly { s: bigint; id: string; subject: number; ca: number }[]): (PublicKey | Certificate)[] {
  const serials = new Set<bigint>([0n, 1n, U64]);
  for (const [, lo, hi] of c.ranges) for (const s of [lo - 1n, lo, hi, hi + 1n]) if (s >= 0n && s <= U64) serials.add(s);
  for (const [, start, stride, count] of c.strides) {
    const end = start + BigInt(stride * (count - 1));
    for (const s of [start - 1n, start, start + 1n, end - 1n, end, end + 1n, start + BigInt(stride * 8191), start + BigInt(stride * 8192) + 1n]) serials.add(s);
  }
  const out: (PublicKey | Certificate)[] = [...POOL];
  let i = 0;
  for (const s of serials) {
    const ca = i++ % (CAS.length + 1);
    out.push({ ...BASE, serial: s, keyId: IDS[i % IDS.length]!, key: SUBJECTS[i % SUBJECTS.length]!, signatureKey: ca < CAS.length ? CAS[ca]! : SUBJECTS[3]! });
  }
  for (const p of extra) out.push({ ...BASE, serial: p.s, keyId: IDS[p.id.length % IDS.length]!, key: SUBJECTS[p.subject]!, signatureKey: CAS[p.ca]! });
  return out;
}

const probe = fc.record({ s: fc.oneof(serial, fc.constant(0n)), id: fc.string({ maxLength: 5 }), subject: fc.nat(SUBJECTS.length - 1), ca: fc.nat(CAS.length - 1) });

test('encode -> parse gives the same KRL and the same answer as the naive rules for every probe', () => {
  fc.assert(
    fc.property(content, fc.array(probe, { maxLength: 10 }), (c, extra) => {
      const krl = build(c);
      const safe = parseKrl(encodeKrl(krl, { generatedDate: 5n, version: 2n, comment: 'p' }));
      assert.deepEqual(strip(safe), strip(krl));
      assert.equal(safe.header.comment, 'p');
      const before = compileKrl(krl, nodeCrypto);
      const after = compileKrl(safe, nodeCrypto);
      for (const p of probes(c, extra)) {
        const want = naive(c, p);
        assert.equal(before.check(p) !== undefined, want);
        assert.deepEqual(after.check(p), before.check(p));
      }
      // The exact ssh-keygen layout round-trips too, unless it made a bitmap OpenSSH cannot read.
      const exact = encodeKrl(krl, { generatedDate: 5n, layout: 'openssh' });
      try {
        assert.deepEqual(strip(parseKrl(exact)), strip(krl));
      } catch (e) {
        assert.ok(e instanceof CertError && /exceeds 2048/.test(e.message) && c.strides.some(([, , , n]) => n > 5000), String(e));
      }
      // Canonical: encoding what was parsed gives the same bytes.
      const again = encodeKrl(safe, { generatedDate: 5n, version: 2n, comment: 'p' });
      assert.deepEqual(again, encodeKrl(krl, { generatedDate: 5n, version: 2n, comment: 'p' }));
    }),
    { numRuns: 150 },
  );
});

function strip(k: Krl): unknown {
  return {
    certificates: k.certificates.map((s) => ({ ca: s.caBlob, lo: [...s.serials.lo], hi: [...s.serials.hi], ids: s.keyIds })),
    keys: k.keys,
    sha1: k.sha1,
    sha256: k.sha256,
  };
}

const mutation = fc.oneof(
  fc.record({ op: fc.constant('flip' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ op: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 9 }) }),
  fc.record({ op: fc.constant('delete' as const), at: fc.nat(), n: fc.integer({ min: 1, max: 9 }) }),
  fc.record({ op: fc.constant('length' as const), at: fc.nat(), value: fc.constantFrom(0, 1, 0x7fffffff, 0xffffffff, 0x800) }),
);

function mutate(b: Uint8Array, ms: readonly (typeof mutation extends fc.Arbitrary<infer T> ? T : never)[]): Uint8Array {
  let x = b.slice();
  for (const m of ms) {
    const at = x.length === 0 ? 0 : m.at % x.length;
    switch (m.op) {
      case 'flip':
        if (x.length > 0) x[at] = m.value;
        break;
      case 'truncate':
        x = x.slice(0, at);
        break;
      case 'insert':
        x = new Uint8Array([...x.subarray(0, at), ...m.bytes, ...x.subarray(at)]);
        break;
      case 'delete':
        x = new Uint8Array([...x.subarray(0, at), ...x.subarray(at + m.n)]);
        break;
      case 'length':
        if (at + 4 <= x.length) new DataView(x.buffer).setUint32(at, m.value);
        break;
    }
  }
  return x;
}

test('mutated and truncated KRLs parse or throw CertError ERR_MALFORMED, nothing else', () => {
  fc.assert(
    fc.property(content, fc.array(mutation, { minLength: 1, maxLength: 4 }), fc.boolean(), (c, ms, exact) => {
      const bytes = mutate(encodeKrl(build({ ...c, strides: [] }), { generatedDate: 9n, comment: 'm', layout: exact ? 'openssh' : 'safe' }), ms);
      let parsed;
      try {
        parsed = parseKrl(bytes);
      } catch (e) {
        assert.ok(e instanceof CertError && e.code === 'ERR_MALFORMED', `${(e as Error).name}: ${(e as Error).message}`);
        return;
      }
      // Whatever survives is a well-formed KRL that re-encodes and parses again.
      parseKrl(encodeKrl(parsed, { generatedDate: 1n }));
      compileKrl(parsed, nodeCrypto).check(BASE);
    }),
    { numRuns: 600 },
  );
});

test('random spec text parses or throws CertError ERR_MALFORMED, nothing else', () => {
  const words = fc.constantFrom('serial:', 'SERIAL:', 'id:', 'key:', 'sha1:', 'sha256:', 'hash:', 'SHA256:', '#', '-', '0x', '0', '7', '18446744073709551615', ' ', '\t', '\r', '\0', 'ssh-ed25519', 'AAAA', formatPublicKey(SUBJECTS[0]!));
  const line = fc.array(fc.oneof(words, fc.string({ maxLength: 6 })), { maxLength: 6 }).map((w) => w.join(''));
  fc.assert(
    fc.property(fc.array(line, { maxLength: 6 }), fc.constantFrom<PublicKey | 'none' | undefined>(CAS[0]!, 'none', undefined), (lines, caKey) => {
      const text = lines.join('\n');
      try {
        const entries = parseKrlSpec(text, caKey === undefined ? { crypto: nodeCrypto } : { caKey, crypto: nodeCrypto });
        new KrlBuilder().apply(entries).build();
      } catch (e) {
        assert.ok(e instanceof CertError && e.code === 'ERR_MALFORMED' && /krl spec line \d+/.test(e.message), `${(e as Error).name}: ${(e as Error).message}`);
      }
    }),
    { numRuns: 1000 },
  );
});
