import type { CryptoBackend } from '../crypto/backend.js';
import type { PublicKey } from '../keys/types.js';
import type { Certificate } from '../cert/certificate.js';
import { encodePublicKey } from '../keys/public-key.js';
import type { Krl, KrlMatch, SerialRanges } from './model.js';
import { binaryKey } from './model.js';

/**
 * Index of the last range whose start is <= serial, if that range holds the serial; else -1.
 * O(log n) over the sorted disjoint ranges.
 */
export function findSerialRange(ranges: SerialRanges, serial: bigint): number {
  const { lo, hi } = ranges;
  let a = 0;
  let b = lo.length - 1;
  if (b < 0 || serial < lo[0]!) return -1;
  while (a < b) {
    const m = (a + b + 1) >>> 1;
    if (lo[m]! <= serial) a = m;
    else b = m - 1;
  }
  return serial <= hi[a]! ? a : -1;
}

/**
 * The same search over doubles: used when every serial is below 2^53 (the common case), where
 * comparing numbers avoids allocating a bigint per probe.
 */
function findSerialRangeNumber(lo: Float64Array, hi: Float64Array, serial: number): number {
  let a = 0;
  let b = lo.length - 1;
  if (b < 0 || serial < lo[0]!) return -1;
  while (a < b) {
    const m = (a + b + 1) >>> 1;
    if (lo[m]! <= serial) a = m;
    else b = m - 1;
  }
  return serial <= hi[a]! ? a : -1;
}

const SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

class SerialIndex {
  private readonly lo64: Float64Array | undefined;
  private readonly hi64: Float64Array | undefined;

  constructor(readonly ranges: SerialRanges) {
    const n = ranges.lo.length;
    if (n > 0 && ranges.hi[n - 1]! <= SAFE) {
      this.lo64 = Float64Array.from(ranges.lo, Number);
      this.hi64 = Float64Array.from(ranges.hi, Number);
    }
  }

  find(serial: bigint): number {
    if (this.lo64 !== undefined && this.hi64 !== undefined) {
      return serial > SAFE ? -1 : findSerialRangeNumber(this.lo64, this.hi64, Number(serial));
    }
    return findSerialRange(this.ranges, serial);
  }
}

interface CaIndex {
  readonly serials: SerialIndex;
  /** Only key ids that are valid UTF-8 can equal a parsed certificate's key id. */
  readonly keyIds: ReadonlySet<string>;
}

/** A KRL compiled for lookups. Build once per KRL (O(n)); every lookup is O(log n) or O(1). */
export interface KrlIndex {
  readonly krl: Krl;
  /** A plain key: SHA-1, SHA-256, then the explicit key list. */
  isKeyRevoked(key: PublicKey): KrlMatch | undefined;
  /**
   * A certificate in OpenSSH's order (krl.c ssh_krl_check_key): its subject key by SHA-1,
   * SHA-256 and explicit key; then key id and serial under its CA's section, then under the
   * any-CA section; then the CA key itself by SHA-1, SHA-256 and explicit key. Serial 0 is
   * never matched by serial.
   */
  isCertificateRevoked(cert: Certificate): KrlMatch | undefined;
  /** Either of the above, chosen by the argument's shape. */
  check(subject: PublicKey | Certificate): KrlMatch | undefined;
}

export function compileKrl(krl: Krl, crypto: CryptoBackend): KrlIndex {
  return bindIndex(compiledOf(krl), crypto);
}

interface Compiled {
  readonly krl: Krl;
  readonly keys: ReadonlySet<string>;
  readonly sha1: ReadonlySet<string>;
  readonly sha256: ReadonlySet<string>;
  readonly cas: ReadonlyMap<string, CaIndex>;
  readonly anyCa: CaIndex | undefined;
}

// A Krl is frozen, so its compiled form can be shared by every caller that passes it again.
const cache = new WeakMap<Krl, Compiled>();

function compiledOf(krl: Krl): Compiled {
  let c = cache.get(krl);
  if (c === undefined) {
    c = compile(krl);
    cache.set(krl, c);
  }
  return c;
}

function compile(krl: Krl): Compiled {
  const cas = new Map<string, CaIndex>();
  let anyCa: CaIndex | undefined;
  for (const s of krl.certificates) {
    const keyIds = new Set<string>();
    for (const id of s.keyIds) {
      try {
        keyIds.add(strictUtf8.decode(id));
      } catch {
        // Not UTF-8: no certificate this package parses can carry it.
      }
    }
    const entry: CaIndex = { serials: new SerialIndex(s.serials), keyIds };
    if (s.caBlob === null) anyCa = entry;
    else cas.set(binaryKey(s.caBlob), entry);
  }
  const set = (blobs: readonly Uint8Array[]): Set<string> => new Set(blobs.map(binaryKey));
  return { krl, keys: set(krl.keys), sha1: set(krl.sha1), sha256: set(krl.sha256), cas, anyCa };
}

function isCertificate(x: PublicKey | Certificate): x is Certificate {
  return typeof (x as Certificate).certType === 'string';
}

// Encoding a CA key costs more than the serial search; checkers pass the same CA key objects
// again and again, so remember each object's encoding.
const caKeys = new WeakMap<PublicKey, string>();
function caKeyOf(k: PublicKey): string {
  let s = caKeys.get(k);
  if (s === undefined) {
    s = binaryKey(encodePublicKey(k));
    caKeys.set(k, s);
  }
  return s;
}

function bindIndex(c: Compiled, crypto: CryptoBackend): KrlIndex {
  const keyRule = (key: PublicKey, subject: 'key' | 'ca'): KrlMatch | undefined => {
    if (c.sha1.size === 0 && c.sha256.size === 0 && c.keys.size === 0) return undefined;
    const blob = encodePublicKey(key);
    if (c.sha1.size > 0 && c.sha1.has(binaryKey(crypto.hash('sha1', blob)))) return { rule: 'sha1', subject };
    if (c.sha256.size > 0 && c.sha256.has(binaryKey(crypto.hash('sha256', blob)))) return { rule: 'sha256', subject };
    if (c.keys.size > 0 && c.keys.has(binaryKey(blob))) return { rule: 'key', subject };
    return undefined;
  };
  const certRule = (cert: Certificate, ca: CaIndex | undefined, section: 'issuer' | 'any'): KrlMatch | undefined => {
    if (ca === undefined) return undefined;
    if (ca.keyIds.size > 0 && ca.keyIds.has(cert.keyId)) return { rule: 'keyId', subject: 'certificate', section, keyId: cert.keyId };
    if (cert.serial === 0n) return undefined;
    const i = ca.serials.find(cert.serial);
    if (i < 0) return undefined;
    const { lo, hi } = ca.serials.ranges;
    return { rule: 'serial', subject: 'certificate', section, serial: cert.serial, range: [lo[i]!, hi[i]!] };
  };
  const isKeyRevoked = (key: PublicKey): KrlMatch | undefined => keyRule(key, 'key');
  const isCertificateRevoked = (cert: Certificate): KrlMatch | undefined =>
    keyRule(cert.key, 'key') ??
    (c.cas.size > 0 ? certRule(cert, c.cas.get(caKeyOf(cert.signatureKey)), 'issuer') : undefined) ??
    certRule(cert, c.anyCa, 'any') ??
    keyRule(cert.signatureKey, 'ca');
  return {
    krl: c.krl,
    isKeyRevoked,
    isCertificateRevoked,
    check: (subject) => (isCertificate(subject) ? isCertificateRevoked(subject) : isKeyRevoked(subject)),
  };
}

/**
 * Which KRL rule revokes a key or certificate, or undefined when none does. Compiles the KRL on
 * first use and caches the result for that (immutable) Krl object.
 */
export function isRevoked(krl: Krl, subject: PublicKey | Certificate, crypto: CryptoBackend): KrlMatch | undefined {
  return bindIndex(compiledOf(krl), crypto).check(subject);
}

/** One line for logs and audit events. */
export function describeKrlMatch(m: KrlMatch): string {
  switch (m.rule) {
    case 'sha1':
    case 'sha256':
    case 'key': {
      const who = m.subject === 'ca' ? 'CA key' : 'key';
      return m.rule === 'key' ? `${who} is revoked explicitly` : `${who} is revoked by its ${m.rule.toUpperCase()} fingerprint`;
    }
    case 'serial': {
      const where = m.section === 'issuer' ? "under the certificate's CA" : 'for any CA';
      const range = m.range[0] === m.range[1] ? '' : ` (range ${m.range[0]}-${m.range[1]})`;
      return `certificate serial ${m.serial} is revoked ${where}${range}`;
    }
    case 'keyId': {
      const where = m.section === 'issuer' ? "under the certificate's CA" : 'for any CA';
      return `certificate key id ${JSON.stringify(m.keyId)} is revoked ${where}`;
    }
  }
}

/**
 * The KRL as a checker hook: false when the certificate is not revoked, otherwise the reason
 * (describeKrlMatch). Covers the certificate, its subject key and its CA key.
 */
export function krlRevocationHook(index: KrlIndex): (cert: Certificate) => false | string {
  return (cert) => {
    const m = index.isCertificateRevoked(cert);
    return m === undefined ? false : describeKrlMatch(m);
  };
}
