import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { SshReader } from '../src/wire/reader.js';
import { SshWriter, mpintBytes, bytesToHex, hexToBytes } from '../src/wire/writer.js';
import { fromBase64, toBase64 } from '../src/wire/bytes.js';
import { CertError } from '../src/errors.js';

test('round trip of every wire type', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 255 }),
      fc.boolean(),
      fc.integer({ min: 0, max: 0xffffffff }),
      fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
      fc.uint8Array({ maxLength: 64 }),
      fc.bigInt({ min: 0n, max: 1n << 300n }),
      fc.array(fc.stringMatching(/^[a-z0-9@.-]{1,12}$/), { maxLength: 5 }),
      (b, bool, u32, u64, str, mp, names) => {
        const w = new SshWriter(1);
        w.byte(b).boolean(bool).uint32(u32).uint64(u64).string(str).mpint(mp).nameList(names);
        const r = new SshReader(w.finish());
        assert.equal(r.byte('b'), b);
        assert.equal(r.boolean('bool'), bool);
        assert.equal(r.uint32('u32'), u32);
        assert.equal(r.uint64('u64'), u64);
        assert.deepEqual(r.string('str'), str);
        assert.equal(r.mpint('mp'), mp);
        assert.deepEqual(r.nameList('names'), names);
        r.end();
      },
    ),
  );
});

test('mpint encodings follow RFC 4251 examples', () => {
  // RFC 4251 section 5: 0 -> empty, 0x80 -> 00 80, 0x9a378f9b2e332a7 -> 09 a3 78 f9 b2 e3 32 a7.
  assert.equal(bytesToHex(mpintBytes(0n)), '');
  assert.equal(bytesToHex(mpintBytes(0x80n)), '0080');
  assert.equal(bytesToHex(mpintBytes(0x9a378f9b2e332a7n)), '09a378f9b2e332a7');
  assert.throws(() => new SshReader(hexToBytes('00000001ff')).mpint('m'), (e: unknown) => e instanceof CertError && e.code === 'ERR_MALFORMED');
  // Leading zeros are accepted, as OpenSSH does.
  assert.equal(new SshReader(hexToBytes('000000030000ff')).mpint('m'), 255n);
});

test('a length beyond the input fails before any allocation, naming the field', () => {
  const r = new SshReader(hexToBytes('ffffffff0102'), 'certificate');
  assert.throws(
    () => r.string('principals'),
    (e: unknown) =>
      e instanceof CertError && e.code === 'ERR_MALFORMED' && e.where === 'certificate.principals' && /4294967295/.test(e.message),
  );
});

test('text refuses invalid UTF-8 and NUL; end refuses trailing bytes; name-list refuses empty names', () => {
  const bad = (hex: string, f: (r: SshReader) => unknown) =>
    assert.throws(() => f(new SshReader(hexToBytes(hex))), (e: unknown) => e instanceof CertError && e.code === 'ERR_MALFORMED');
  bad('00000001ff', (r) => r.text('t'));
  bad('000000026100', (r) => r.text('t'));
  bad('0000000161' + '00', (r) => (r.text('t'), r.end()));
  bad('00000003612c62' + '', (r) => r.nameList('n').concat(r.nameList('m')));
  bad('00000002612c', (r) => r.nameList('n'));
});

test('every read on random bytes yields CertError or a value, never another exception', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 40 }), fc.array(fc.integer({ min: 0, max: 7 }), { maxLength: 10 }), (bytes, ops) => {
      const r = new SshReader(bytes);
      try {
        for (const op of ops) {
          [() => r.byte('x'), () => r.uint32('x'), () => r.uint64('x'), () => r.string('x'), () => r.text('x'), () => r.mpint('x'), () => r.nameList('x'), () => r.end()][op]!();
        }
      } catch (e) {
        assert.ok(e instanceof CertError, String(e));
      }
    }),
  );
});

test('base64 matches Buffer and rejects non-canonical input', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 100 }), (b) => {
      const s = toBase64(b);
      assert.equal(s, Buffer.from(b).toString('base64'));
      assert.deepEqual(fromBase64(s), b);
    }),
  );
  assert.equal(fromBase64('QQ=='.replace('Q=', 'R=')), undefined);
  assert.equal(fromBase64('a$bc'), undefined);
  assert.equal(fromBase64('abcde'), undefined);
});
