import { CertError, malformed } from '../errors.js';
import { SshReader } from '../wire/reader.js';
import { SshWriter } from '../wire/writer.js';
import { encodePublicKey, parsePublicKey } from '../keys/public-key.js';
import { KrlBuilder } from './builder.js';
import type { DecodedKrl } from './model.js';
import {
  CERT_KEY_ID,
  CERT_SERIAL_BITMAP,
  CERT_SERIAL_LIST,
  CERT_SERIAL_RANGE,
  KRL_FORMAT_VERSION,
  KRL_MAGIC,
  MAX_BITMAP_MPINT_BYTES,
  SECTION_CERTIFICATES,
  SECTION_EXPLICIT_KEY,
  SECTION_FINGERPRINT_SHA1,
  SECTION_FINGERPRINT_SHA256,
  SECTION_SIGNATURE,
  UINT64_MAX,
} from './model.js';

const lossyUtf8 = new TextDecoder('utf-8');

/**
 * Parses a KRL as strictly as OpenSSH 9.2's ssh_krl_from_blob: any defect fails the whole KRL
 * with ERR_MALFORMED, because sshd treats an unreadable RevokedKeys file as "everything is
 * revoked" and a lenient parser here would disagree with it. Refused: bad magic or format
 * version; an unknown section or subsection (including signature and extension sections);
 * leftover bytes anywhere; serial 0 in a list, range or bitmap; a reversed range; a bitmap
 * that wraps past 2^64 or whose mpint exceeds 2048 bytes; a hash of the wrong length; a CA
 * key that does not parse; a NUL inside the comment or a key id.
 *
 * Bytes without the magic fail with `where` = `krl.magic`: sshd reads such a RevokedKeys file
 * as a list of public keys instead, and a caller that wants the same can tell this case apart.
 */
export function parseKrl(bytes: Uint8Array): DecodedKrl {
  if (!(bytes instanceof Uint8Array)) throw new TypeError('cert-core: parseKrl expects a Uint8Array');
  if (bytes.length < KRL_MAGIC.length || KRL_MAGIC.some((b, i) => bytes[i] !== b)) malformed('krl.magic', 'not a KRL (missing "SSHKRL\\n\\0")');
  const r = new SshReader(bytes, 'krl');
  r.raw(KRL_MAGIC.length, 'magic');
  const format = r.uint32('formatVersion');
  if (format !== KRL_FORMAT_VERSION) r.fail('formatVersion', `unsupported KRL format version ${format}, expected ${KRL_FORMAT_VERSION}`);
  const version = r.uint64('version');
  const generatedDate = r.uint64('generatedDate');
  const flags = r.uint64('flags');
  r.string('reserved');
  const commentBytes = cString(r, 'comment').slice();

  const b = new KrlBuilder();
  for (let i = 0; r.remaining > 0; i++) {
    const where = `sections[${i}]`;
    const type = r.byte(`${where}.type`);
    const data = new SshReader(r.string(`${where}.data`), `krl.${where}`);
    switch (type) {
      case SECTION_CERTIFICATES:
        readCertificates(data, b, `krl.${where}`);
        break;
      case SECTION_EXPLICIT_KEY:
        readBlobs(data, b, 'keys', 0);
        break;
      case SECTION_FINGERPRINT_SHA1:
        readBlobs(data, b, 'sha1', 20);
        break;
      case SECTION_FINGERPRINT_SHA256:
        readBlobs(data, b, 'sha256', 32);
        break;
      case SECTION_SIGNATURE:
        r.fail(`${where}.type`, 'signature sections are not supported (never implemented by OpenSSH, removed in 9.4)');
        break;
      default:
        r.fail(`${where}.type`, `unknown section type ${type}`);
    }
    data.end();
  }
  const krl = b.build();
  return Object.freeze({
    ...krl,
    header: Object.freeze({ version, generatedDate, flags, comment: lossyUtf8.decode(commentBytes), commentBytes }),
  });
}

/**
 * sshbuf_get_cstring: any bytes, a NUL allowed only as the very last byte (and then dropped).
 */
function cString(r: SshReader, field: string): Uint8Array {
  const s = r.string(field);
  const z = s.indexOf(0);
  if (z >= 0 && z < s.length - 1) r.fail(field, `NUL byte at offset ${z} inside a string`);
  return z === s.length - 1 ? s.subarray(0, z) : s;
}

function readBlobs(r: SshReader, b: KrlBuilder, which: 'keys' | 'sha1' | 'sha256', size: number): void {
  for (let i = 0; r.remaining > 0; i++) {
    const blob = r.string(`[${i}]`);
    if (size !== 0 && blob.length !== size) r.fail(`[${i}]`, `${which} hash of ${blob.length} bytes, expected ${size}`);
    b.addBlob(which, blob);
  }
}

/**
 * The CA key as OpenSSH would re-serialise it after parsing, so sections for the same CA merge
 * and lookups compare canonical blobs. DSA CA keys (still readable by 9.2) are kept; nothing
 * here can verify a DSA-signed certificate, so they never match.
 */
function canonicalCaBlob(blob: Uint8Array, where: string): Uint8Array {
  const r = new SshReader(blob, where);
  const type = r.text('type');
  if (type === 'ssh-dss') {
    const w = new SshWriter().string(type);
    for (const f of ['p', 'q', 'g', 'y']) w.mpint(r.mpint(f, 2049));
    r.end();
    return w.finish();
  }
  try {
    return encodePublicKey(parsePublicKey(blob, where));
  } catch (e) {
    if (e instanceof CertError && e.code !== 'ERR_MALFORMED') malformed(e.where ?? where, e.message.replace(/^cert-core: /, ''));
    throw e;
  }
}

function readCertificates(r: SshReader, b: KrlBuilder, context: string): void {
  const keyBlob = r.string('caKey');
  r.string('reserved');
  const ca = keyBlob.length === 0 ? null : canonicalCaBlob(keyBlob, `${context}.caKey`);
  for (let i = 0; r.remaining > 0; i++) {
    const where = `subsections[${i}]`;
    const type = r.byte(`${where}.type`);
    const s = new SshReader(r.string(`${where}.data`), `${context}.${where}`);
    switch (type) {
      case CERT_SERIAL_LIST:
        for (let j = 0; s.remaining > 0; j++) {
          const serial = s.uint64(`[${j}]`);
          if (serial === 0n) s.fail(`[${j}]`, 'serial 0 cannot be revoked by serial');
          b.addSerialRangeBlob(ca, serial, serial);
        }
        break;
      case CERT_SERIAL_RANGE: {
        const lo = s.uint64('lo');
        const hi = s.uint64('hi');
        if (lo === 0n) s.fail('lo', 'serial 0 cannot be revoked by serial');
        if (lo > hi) s.fail('hi', `reversed range ${lo}-${hi}`);
        b.addSerialRangeBlob(ca, lo, hi);
        break;
      }
      case CERT_SERIAL_BITMAP:
        readBitmap(s, b, ca);
        break;
      case CERT_KEY_ID:
        for (let j = 0; s.remaining > 0; j++) b.addKeyIdBlob(ca, cString(s, `[${j}]`));
        break;
      default:
        r.fail(`${where}.type`, `unknown certificate subsection type 0x${type.toString(16)}`);
    }
    s.end();
  }
}

function readBitmap(s: SshReader, b: KrlBuilder, ca: Uint8Array | null): void {
  const offset = s.uint64('offset');
  const raw = s.string('bitmap');
  if (raw.length > 0 && (raw[0]! & 0x80) !== 0) s.fail('bitmap', 'negative mpint');
  // sshbuf_get_bignum2_bytes_direct: at most 2048 bytes, 2049 when the first is a zero.
  if (raw.length > MAX_BITMAP_MPINT_BYTES + 1 || (raw.length === MAX_BITMAP_MPINT_BYTES + 1 && raw[0] !== 0)) {
    s.fail('bitmap', `bitmap of ${raw.length} bytes exceeds ${MAX_BITMAP_MPINT_BYTES}`);
  }
  let start = 0;
  while (start < raw.length && raw[start] === 0) start++;
  const body = raw.subarray(start);
  if (body.length === 0) return;
  const nbits = (body.length - 1) * 8 + (32 - Math.clz32(body[0]!));
  if (offset + BigInt(nbits - 1) > UINT64_MAX) s.fail('bitmap', `bitmap at offset ${offset} of ${nbits} bits wraps past 2^64`);
  if (offset === 0n && (body[body.length - 1]! & 1) !== 0) s.fail('bitmap', 'serial 0 cannot be revoked by serial');
  // Runs of set bits become ranges, so a dense bitmap costs one entry, not thousands.
  let runStart = -1;
  for (let bit = 0; bit <= nbits; bit++) {
    const set = bit < nbits && (body[body.length - 1 - (bit >> 3)]! & (1 << (bit & 7))) !== 0;
    if (set && runStart < 0) runStart = bit;
    else if (!set && runStart >= 0) {
      b.addSerialRangeBlob(ca, offset + BigInt(runStart), offset + BigInt(bit - 1));
      runStart = -1;
    }
  }
}

