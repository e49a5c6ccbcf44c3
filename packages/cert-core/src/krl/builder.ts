import type { PublicKey } from '../keys/types.js';
import type { Certificate } from '../cert/certificate.js';
import { encodePublicKey } from '../keys/public-key.js';
import { compareBytes, utf8 } from '../wire/bytes.js';
import type { Krl, KrlCertificateSection, SerialRanges } from './model.js';
import { UINT64_MAX, binaryKey } from './model.js';
import type { KrlSpecEntry } from './spec.js';

/** Which certificates a serial or key-id revocation applies to: one CA's, or any CA's (null). */
export type KrlCaScope = PublicKey | null;

function checkUint64(v: bigint, what: string): void {
  if (typeof v !== 'bigint' || v < 0n || v > UINT64_MAX) throw new TypeError(`cert-core: ${what} must be a uint64 bigint, got ${String(v)}`);
}

function checkLength(hash: Uint8Array, n: number, what: string): void {
  if (!(hash instanceof Uint8Array) || hash.length !== n) {
    throw new TypeError(`cert-core: "${what}" expected Uint8Array of length ${n}, got length=${(hash as { length?: number })?.length}`);
  }
}

/**
 * Serial ranges collected in any order and normalised on demand. Starts and ends are sorted
 * independently: the union of closed intervals depends only on the multisets of starts and
 * ends, so two native typed-array sorts replace a sort of pairs (fast for a million serials).
 */
class SerialAccumulator {
  private lo = new BigUint64Array(16);
  private hi = new BigUint64Array(16);
  private n = 0;
  private normalized = true;

  get size(): number {
    return this.n;
  }

  push(lo: bigint, hi: bigint): void {
    if (this.n === this.lo.length) {
      const l = new BigUint64Array(this.n * 2);
      const h = new BigUint64Array(this.n * 2);
      l.set(this.lo);
      h.set(this.hi);
      this.lo = l;
      this.hi = h;
    }
    if (this.n > 0 && this.normalized && lo <= this.hi[this.n - 1]! + 1n) this.normalized = false;
    this.lo[this.n] = lo;
    this.hi[this.n] = hi;
    this.n++;
  }

  ranges(): SerialRanges {
    if (!this.normalized) {
      const lo = this.lo.subarray(0, this.n).sort();
      const hi = this.hi.subarray(0, this.n).sort();
      let out = 0;
      let start = lo[0]!;
      for (let i = 0; i < this.n; i++) {
        const end = hi[i]!;
        if (i + 1 === this.n || lo[i + 1]! > end + 1n) {
          lo[out] = start;
          hi[out] = end;
          out++;
          if (i + 1 < this.n) start = lo[i + 1]!;
        }
      }
      this.n = out;
      this.normalized = true;
    }
    return { lo: this.lo.slice(0, this.n), hi: this.hi.slice(0, this.n) };
  }
}

interface CaEntry {
  readonly caBlob: Uint8Array | null;
  readonly serials: SerialAccumulator;
  readonly keyIds: Map<string, Uint8Array>;
}

/**
 * Collects revocations and produces a canonical Krl. Revocations for the same CA merge into one
 * section; sections keep the order in which their CA first received a revocation (as
 * ssh-keygen). Misuse (serial 0, a reversed range, a hash of the wrong size) throws TypeError.
 */
export class KrlBuilder {
  private readonly cas = new Map<string, CaEntry>();
  private readonly keys = new Map<string, Uint8Array>();
  private readonly sha1s = new Map<string, Uint8Array>();
  private readonly sha256s = new Map<string, Uint8Array>();

  /** A builder holding everything `krl` revokes (to add to an existing KRL, as `ssh-keygen -u`). */
  static from(krl: Krl): KrlBuilder {
    return new KrlBuilder().merge(krl);
  }

  private ca(caBlob: Uint8Array | null): CaEntry {
    const k = caBlob === null ? '' : binaryKey(caBlob);
    let e = this.cas.get(k);
    if (e === undefined) {
      e = { caBlob: caBlob === null ? null : caBlob.slice(), serials: new SerialAccumulator(), keyIds: new Map() };
      this.cas.set(k, e);
    }
    return e;
  }

  private static caBlob(ca: KrlCaScope): Uint8Array | null {
    if (ca === null) return null;
    if (typeof ca !== 'object' || typeof ca.type !== 'string') throw new TypeError('cert-core: CA scope must be a PublicKey or null (any CA)');
    return encodePublicKey(ca);
  }

  /**
   * @internal For parsers, which have already refused bad input with ERR_MALFORMED; the checks
   * here only keep a direct caller from building a KRL OpenSSH cannot read.
   */
  addSerialRangeBlob(caBlob: Uint8Array | null, lo: bigint, hi: bigint): this {
    if (lo === 0n || lo > hi) throw new TypeError(`cert-core: invalid serial range ${lo}-${hi}`);
    this.ca(caBlob).serials.push(lo, hi);
    return this;
  }

  /** @internal See addSerialRangeBlob. */
  addKeyIdBlob(caBlob: Uint8Array | null, keyId: Uint8Array): this {
    this.ca(caBlob).keyIds.set(binaryKey(keyId), keyId.slice());
    return this;
  }

  /** @internal See addSerialRangeBlob. Explicit key blobs are taken as they are, as OpenSSH does. */
  addBlob(which: 'keys' | 'sha1' | 'sha256', blob: Uint8Array): this {
    if (which !== 'keys') checkLength(blob, which === 'sha1' ? 20 : 32, which);
    const m = which === 'keys' ? this.keys : which === 'sha1' ? this.sha1s : this.sha256s;
    m.set(binaryKey(blob), blob.slice());
    return this;
  }

  revokeSerial(ca: KrlCaScope, serial: bigint): this {
    return this.revokeSerialRange(ca, serial, serial);
  }

  /** Revokes serials lo..hi inclusive. Serial 0 cannot be revoked by serial (OpenSSH). */
  revokeSerialRange(ca: KrlCaScope, lo: bigint, hi: bigint): this {
    checkUint64(lo, 'serial');
    checkUint64(hi, 'serial');
    if (lo === 0n) throw new TypeError('cert-core: serial 0 cannot be revoked by serial (revoke the key id instead)');
    if (lo > hi) throw new TypeError(`cert-core: serial range ${lo}-${hi} is reversed`);
    return this.addSerialRangeBlob(KrlBuilder.caBlob(ca), lo, hi);
  }

  /** Many serials at once (the fast path for large KRLs). All or nothing: a bad one adds none. */
  revokeSerials(ca: KrlCaScope, serials: Iterable<bigint>): this {
    const caBlob = KrlBuilder.caBlob(ca);
    const values = serials instanceof BigUint64Array ? serials : BigUint64Array.from(serials, (s) => (checkUint64(s, 'serial'), s));
    if (values.includes(0n)) throw new TypeError('cert-core: serial 0 cannot be revoked by serial (revoke the key id instead)');
    if (values.length === 0) return this;
    const acc = this.ca(caBlob).serials;
    for (let i = 0; i < values.length; i++) acc.push(values[i]!, values[i]!);
    return this;
  }

  revokeKeyId(ca: KrlCaScope, keyId: string | Uint8Array): this {
    const b = typeof keyId === 'string' ? utf8(keyId) : keyId;
    if (!(b instanceof Uint8Array)) throw new TypeError('cert-core: key id must be a string or Uint8Array');
    // OpenSSH reads key ids as C strings: an inner NUL would make the KRL unreadable.
    if (b.includes(0)) throw new TypeError(`cert-core: key id ${JSON.stringify(String(keyId))} contains a NUL byte`);
    return this.addKeyIdBlob(KrlBuilder.caBlob(ca), b);
  }

  /** Revokes a plain key outright (pass `cert.key` to revoke a certificate's subject key). */
  revokeKey(key: PublicKey): this {
    return this.addBlob('keys', encodePublicKey(key));
  }

  /** SHA-1 of a plain key blob, 20 bytes. */
  revokeSha1(hash: Uint8Array): this {
    return this.addBlob('sha1', hash);
  }

  /** SHA-256 of a plain key blob, 32 bytes (what `ssh-keygen -l` prints as SHA256:...). */
  revokeSha256(hash: Uint8Array): this {
    return this.addBlob('sha256', hash);
  }

  /**
   * Revokes one certificate under its own CA as ssh-keygen does for a certificate line: by
   * serial, or by key id when the serial is 0 (serial 0 is never matched by serial).
   */
  revokeCertificate(cert: Certificate): this {
    return cert.serial === 0n ? this.revokeKeyId(cert.signatureKey, cert.keyId) : this.revokeSerial(cert.signatureKey, cert.serial);
  }

  /** Applies the entries of a parsed `ssh-keygen -k` spec file, in order. */
  apply(entries: readonly KrlSpecEntry[]): this {
    for (const e of entries) {
      switch (e.kind) {
        case 'serials':
          this.revokeSerialRange(e.ca, e.lo, e.hi);
          break;
        case 'keyId':
          this.revokeKeyId(e.ca, e.keyId);
          break;
        case 'key':
          this.revokeKey(e.key);
          break;
        case 'sha1':
          this.revokeSha1(e.hash);
          break;
        case 'sha256':
          this.revokeSha256(e.hash);
          break;
      }
    }
    return this;
  }

  /** Adds everything another KRL revokes; its CAs follow this builder's in first-seen order. */
  merge(krl: Krl): this {
    for (const s of krl.certificates) {
      for (let i = 0; i < s.serials.lo.length; i++) this.addSerialRangeBlob(s.caBlob, s.serials.lo[i]!, s.serials.hi[i]!);
      for (const id of s.keyIds) this.addKeyIdBlob(s.caBlob, id);
    }
    for (const k of krl.keys) this.addBlob('keys', k);
    for (const h of krl.sha1) this.addBlob('sha1', h);
    for (const h of krl.sha256) this.addBlob('sha256', h);
    return this;
  }

  build(): Krl {
    const certificates: KrlCertificateSection[] = [];
    for (const e of this.cas.values()) {
      // A CA only gets a section once it has a revocation, as in OpenSSH.
      if (e.serials.size === 0 && e.keyIds.size === 0) continue;
      certificates.push(
        Object.freeze({
          caBlob: e.caBlob === null ? null : e.caBlob.slice(),
          serials: e.serials.ranges(),
          keyIds: Object.freeze(sortedBlobs(e.keyIds)),
        }),
      );
    }
    return Object.freeze({
      certificates: Object.freeze(certificates),
      keys: Object.freeze(sortedBlobs(this.keys)),
      sha1: Object.freeze(sortedBlobs(this.sha1s)),
      sha256: Object.freeze(sortedBlobs(this.sha256s)),
    });
  }
}

function sortedBlobs(m: Map<string, Uint8Array>): Uint8Array[] {
  return [...m.values()].map((b) => b.slice()).sort(compareBytes);
}

/** A KRL that revokes nothing. */
export const EMPTY_KRL: Krl = new KrlBuilder().build();
