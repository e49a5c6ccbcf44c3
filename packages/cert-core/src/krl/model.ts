/**
 * The content of an OpenSSH Key Revocation List as plain, canonical data. The wire layout
 * lives in encode.ts / decode.ts; the builder that produces this shape in builder.ts.
 *
 * A KRL revokes:
 * - certificates, per CA key (or for any CA): by serial number and by key id;
 * - keys (and certificates through their subject key): by the whole plain key blob, or by
 *   the SHA-1 or SHA-256 hash of that blob.
 */

/**
 * Serial numbers as sorted, disjoint, non-adjacent closed ranges: `lo[i] <= hi[i]`,
 * `hi[i] + 1 < lo[i + 1]`. Kept as two typed arrays so a million serials cost 16 MB and
 * lookups are a binary search. Treat them as read-only.
 */
export interface SerialRanges {
  readonly lo: BigUint64Array;
  readonly hi: BigUint64Array;
}

export interface KrlCertificateSection {
  /** Canonical blob of the CA public key; null for the section that applies to any CA. */
  readonly caBlob: Uint8Array | null;
  readonly serials: SerialRanges;
  /**
   * Revoked key ids, sorted bytewise and unique. Bytes, not strings: OpenSSH compares C
   * strings, and a KRL may carry ids that are not UTF-8.
   */
  readonly keyIds: readonly Uint8Array[];
}

/** Revocations, canonical: every list sorted (memcmp, shorter first) and free of duplicates. */
export interface Krl {
  /** One entry per CA, in the order the CA was first given a revocation. */
  readonly certificates: readonly KrlCertificateSection[];
  /** Plain public key blobs revoked outright. */
  readonly keys: readonly Uint8Array[];
  /** SHA-1 (20 bytes) of revoked plain key blobs. */
  readonly sha1: readonly Uint8Array[];
  /** SHA-256 (32 bytes) of revoked plain key blobs. */
  readonly sha256: readonly Uint8Array[];
}

export interface KrlHeader {
  /** The KRL's own version number (`ssh-keygen -z`), not the format version. */
  readonly version: bigint;
  /** Seconds since the epoch. */
  readonly generatedDate: bigint;
  /** Read and kept; OpenSSH defines none and always writes 0. */
  readonly flags: bigint;
  /** The comment decoded as UTF-8 (invalid sequences replaced); `commentBytes` is exact. */
  readonly comment: string;
  readonly commentBytes: Uint8Array;
}

/** What parseKrl returns: the revocations plus the header they came with. */
export interface DecodedKrl extends Krl {
  readonly header: KrlHeader;
}

/** Why a key or certificate is revoked: which rule of the KRL matched, for audit. */
export type KrlMatch =
  | {
      readonly rule: 'sha1' | 'sha256' | 'key';
      /** `key`: the key itself (a certificate's subject key); `ca`: the certificate's CA key. */
      readonly subject: 'key' | 'ca';
    }
  | {
      readonly rule: 'serial';
      readonly subject: 'certificate';
      /** `issuer`: the section of the certificate's own CA; `any`: the any-CA section. */
      readonly section: 'issuer' | 'any';
      readonly serial: bigint;
      /** The revoked range that holds the serial. */
      readonly range: readonly [bigint, bigint];
    }
  | {
      readonly rule: 'keyId';
      readonly subject: 'certificate';
      readonly section: 'issuer' | 'any';
      readonly keyId: string;
    };

// Wire constants (PROTOCOL.krl, krl.h).
export const KRL_MAGIC = new Uint8Array([0x53, 0x53, 0x48, 0x4b, 0x52, 0x4c, 0x0a, 0x00]); // "SSHKRL\n\0"
export const KRL_FORMAT_VERSION = 1;
export const SECTION_CERTIFICATES = 1;
export const SECTION_EXPLICIT_KEY = 2;
export const SECTION_FINGERPRINT_SHA1 = 3;
/** Never implemented by OpenSSH and removed in 9.4; refused here. */
export const SECTION_SIGNATURE = 4;
export const SECTION_FINGERPRINT_SHA256 = 5;
/** OpenSSH >= 9.4 only; 9.2 refuses the whole KRL, so it is neither read nor written. */
export const SECTION_EXTENSION = 255;
export const CERT_SERIAL_LIST = 0x20;
export const CERT_SERIAL_RANGE = 0x21;
export const CERT_SERIAL_BITMAP = 0x22;
export const CERT_KEY_ID = 0x23;

/**
 * Largest bitmap OpenSSH reads back: its mpint reader refuses more than 2048 bytes (2049 with
 * the leading zero an MSB forces), i.e. bits 0..16383.
 */
export const MAX_BITMAP_BITS = 16384;
export const MAX_BITMAP_MPINT_BYTES = MAX_BITMAP_BITS / 8;

export const UINT64_MAX = 0xffffffffffffffffn;

/** Bytes as a string of char codes 0..255: a cheap, exact Map/Set key for a blob. */
export function binaryKey(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i += 4096) {
    s += String.fromCharCode.apply(null, b.subarray(i, i + 4096) as unknown as number[]);
  }
  return s;
}
