import { CertError } from '../errors.js';
import { SshWriter } from '../wire/writer.js';
import { utf8 } from '../wire/bytes.js';
import type { Krl, KrlCertificateSection, SerialRanges } from './model.js';
import {
  CERT_KEY_ID,
  CERT_SERIAL_BITMAP,
  CERT_SERIAL_LIST,
  CERT_SERIAL_RANGE,
  KRL_FORMAT_VERSION,
  KRL_MAGIC,
  MAX_BITMAP_BITS,
  SECTION_CERTIFICATES,
  SECTION_EXPLICIT_KEY,
  SECTION_FINGERPRINT_SHA1,
  SECTION_FINGERPRINT_SHA256,
} from './model.js';

/**
 * - `safe` (default): ssh-keygen's layout, except that a serial bitmap never spans more than
 *   16384 bits. ssh-keygen writes larger ones (serials 1,3,5,...,40001 make one bitmap of 40001
 *   bits) that no OpenSSH can read back; as sshd's RevokedKeys such a file blocks every
 *   public-key login.
 * - `openssh`: byte for byte what `ssh-keygen -k` writes for the same content. For golden tests.
 */
export type KrlLayout = 'safe' | 'openssh';

export interface KrlEncodeOptions {
  /** The KRL's version number (`ssh-keygen -z`); default 0. */
  readonly version?: bigint;
  /** Seconds since the epoch. Required: the encoder reads no clock. */
  readonly generatedDate: bigint;
  /** Default empty. Must not contain NUL (OpenSSH reads it as a C string). */
  readonly comment?: string | Uint8Array;
  readonly layout?: KrlLayout;
}

/**
 * Encodes a KRL as ssh-keygen lays it out: header; one certificates section per CA in order
 * (serial subsections ascending, then one key-id subsection); then one explicit-key, one SHA-1
 * and one SHA-256 section, each omitted when empty. Never emits signature or extension
 * sections.
 */
export function encodeKrl(krl: Krl, options: KrlEncodeOptions): Uint8Array {
  if (typeof options !== 'object' || options === null) throw new TypeError('cert-core: encodeKrl needs options with generatedDate');
  const layout = options.layout ?? 'safe';
  if (layout !== 'safe' && layout !== 'openssh') throw new TypeError(`cert-core: unknown KRL layout ${JSON.stringify(layout)}`);
  if (typeof options.generatedDate !== 'bigint') throw new TypeError('cert-core: encodeKrl needs generatedDate as a bigint (seconds since the epoch)');
  const comment = typeof options.comment === 'string' ? utf8(options.comment) : (options.comment ?? new Uint8Array(0));
  if (comment.includes(0)) throw new TypeError('cert-core: KRL comment contains a NUL byte');

  const w = new SshWriter(4096);
  w.raw(KRL_MAGIC)
    .uint32(KRL_FORMAT_VERSION)
    .uint64(options.version ?? 0n)
    .uint64(options.generatedDate)
    .uint64(0n)
    .string(new Uint8Array(0))
    .string(comment);
  for (const section of krl.certificates) {
    w.byte(SECTION_CERTIFICATES).nested((s) => writeCertificateSection(s, section, layout));
  }
  writeBlobSection(w, SECTION_EXPLICIT_KEY, krl.keys);
  writeBlobSection(w, SECTION_FINGERPRINT_SHA1, krl.sha1);
  writeBlobSection(w, SECTION_FINGERPRINT_SHA256, krl.sha256);
  return w.finish();
}

function writeBlobSection(w: SshWriter, type: number, blobs: readonly Uint8Array[]): void {
  if (blobs.length === 0) return;
  w.byte(type).nested((s) => {
    for (const b of blobs) s.string(b);
  });
}

function writeCertificateSection(w: SshWriter, section: KrlCertificateSection, layout: KrlLayout): void {
  w.string(section.caBlob ?? new Uint8Array(0)).string(new Uint8Array(0));
  writeSerials(w, section.serials, layout);
  if (section.keyIds.length > 0) {
    w.byte(CERT_KEY_ID).nested((s) => {
      for (const id of section.keyIds) s.string(id);
    });
  }
}

const NONE = 0;
const CAP = 2 ** 31;

function capped(v: bigint): number {
  return v > BigInt(CAP) ? CAP : Number(v);
}

/**
 * ssh-keygen's choice of the next serial subsection (krl.c choose_next_state): an estimate in
 * bits of each candidate, rounded up to bytes; bitmap unless range, list or a new bitmap is
 * strictly cheaper, tried in that order.
 */
export function chooseSerialSubsection(
  current: number,
  contig: bigint,
  final: boolean,
  lastGap: bigint,
  nextGap: bigint,
): { readonly type: number; readonly newBitmap: boolean } {
  const c = capped(contig);
  const last = capped(lastGap);
  const next = capped(nextGap);
  let list = 0;
  let bitmap = 0;
  let restart = 0;
  let range = 8;
  if (current === CERT_SERIAL_LIST) {
    restart = bitmap = 72;
  } else if (current === CERT_SERIAL_BITMAP) {
    list = 8;
    restart = 72;
  } else {
    restart = bitmap = 72;
    list = 8;
  }
  list += 64 * c + (final ? 0 : 72);
  range += 128 + (final ? 0 : 72);
  bitmap += last + c + (final ? 0 : Math.min(next, 72));
  restart += c + (final ? 0 : Math.min(next, 72));
  list = Math.ceil(list / 8);
  range = Math.ceil(range / 8);
  bitmap = Math.ceil(bitmap / 8);
  restart = Math.ceil(restart / 8);

  let type = CERT_SERIAL_BITMAP;
  let cost = bitmap;
  let newBitmap = false;
  if (range < cost) {
    type = CERT_SERIAL_RANGE;
    cost = range;
  }
  if (list < cost) {
    type = CERT_SERIAL_LIST;
    cost = list;
  }
  if (restart < cost) {
    type = CERT_SERIAL_BITMAP;
    newBitmap = true;
  }
  return { type, newBitmap };
}

/** Bits of one bitmap subsection, index 0 = the bitmap's offset. */
class BitBuffer {
  private bytes = new Uint8Array(64);
  private top = -1;

  setRange(from: number, to: number): void {
    if (to >> 3 >= this.bytes.length) {
      let n = this.bytes.length * 2;
      while (to >> 3 >= n) n *= 2;
      const next = new Uint8Array(n);
      next.set(this.bytes);
      this.bytes = next;
    }
    for (let i = from; i <= to; i++) this.bytes[i >> 3]! |= 1 << (i & 7);
    if (to > this.top) this.top = to;
  }

  /** The mpint body: big-endian, bit N counted from the least significant bit of the last byte. */
  toMpint(): Uint8Array {
    const n = (this.top + 8) >> 3;
    const lead = n > 0 && (this.bytes[n - 1]! & 0x80) !== 0 ? 1 : 0;
    const out = new Uint8Array(n + lead);
    for (let i = 0; i < n; i++) out[lead + n - 1 - i] = this.bytes[i]!;
    return out;
  }
}

function writeSerials(w: SshWriter, serials: SerialRanges, layout: KrlLayout): void {
  const { lo: los, hi: his } = serials;
  const n = los.length;
  let state = NONE;
  let last = 0n;
  let bitmapStart = 0n;
  let sect = new SshWriter();
  let bits = new BitBuffer();

  const flush = (): void => {
    if (state === CERT_SERIAL_BITMAP) sect.string(bits.toMpint());
    w.byte(state).string(sect.finish());
  };

  for (let i = 0; i < n; i++) {
    const lo = los[i]!;
    const hi = his[i]!;
    const final = i === n - 1;
    const contig = hi - lo + 1n;
    let { type: next, newBitmap } = chooseSerialSubsection(state, contig, final, state === NONE ? 0n : lo - last, final ? 0n : los[i + 1]! - hi);
    if (layout === 'safe' && next === CERT_SERIAL_BITMAP) {
      const continuing = state === CERT_SERIAL_BITMAP && !newBitmap;
      if (continuing && hi - bitmapStart >= BigInt(MAX_BITMAP_BITS)) newBitmap = true;
      // Unreachable under the cost rule (a bitmap only wins for short runs); kept as a guard.
      if (contig > BigInt(MAX_BITMAP_BITS)) {
        next = CERT_SERIAL_RANGE;
        newBitmap = false;
      }
    }
    if (state !== NONE && (newBitmap || next !== state || state === CERT_SERIAL_RANGE)) flush();
    if (next !== state || newBitmap || state === CERT_SERIAL_RANGE) {
      state = next;
      sect = new SshWriter();
      if (state === CERT_SERIAL_BITMAP) {
        bits = new BitBuffer();
        bitmapStart = lo;
        sect.uint64(lo);
      }
    }
    switch (state) {
      case CERT_SERIAL_LIST:
        for (let s = lo; s <= hi; s++) sect.uint64(s);
        break;
      case CERT_SERIAL_RANGE:
        sect.uint64(lo).uint64(hi);
        break;
      default: {
        // ssh-keygen gives up here ("insane bitmap gap"); only a huge openssh-layout bitmap gets here.
        if (lo - bitmapStart > 0x7fffffffn) {
          throw new CertError('ERR_REFUSED', `cert-core: serial bitmap from ${bitmapStart} would reach ${lo}, beyond what ssh-keygen writes`, {
            where: 'krl.serials',
            what: `${bitmapStart}-${lo}`,
          });
        }
        bits.setRange(Number(lo - bitmapStart), Number(hi - bitmapStart));
      }
    }
    last = hi;
  }
  if (state !== NONE) flush();
}
