/** The key and signature vocabulary of OpenSSH, as plain data. */

export type EcdsaCurve = 'nistp256' | 'nistp384' | 'nistp521';

export type PlainKeyType =
  | 'ssh-ed25519'
  | 'ecdsa-sha2-nistp256'
  | 'ecdsa-sha2-nistp384'
  | 'ecdsa-sha2-nistp521'
  | 'ssh-rsa';

export type SkKeyType = 'sk-ssh-ed25519@openssh.com' | 'sk-ecdsa-sha2-nistp256@openssh.com';

export type KeyType = PlainKeyType | SkKeyType;

export interface Ed25519PublicKey {
  readonly type: 'ssh-ed25519';
  /** 32 bytes. */
  readonly publicKey: Uint8Array;
}

export interface EcdsaPublicKey {
  readonly type: 'ecdsa-sha2-nistp256' | 'ecdsa-sha2-nistp384' | 'ecdsa-sha2-nistp521';
  readonly curve: EcdsaCurve;
  /** Uncompressed SEC1 point (0x04 || X || Y). */
  readonly point: Uint8Array;
}

export interface RsaPublicKey {
  readonly type: 'ssh-rsa';
  readonly e: bigint;
  readonly n: bigint;
}

export interface SkEd25519PublicKey {
  readonly type: 'sk-ssh-ed25519@openssh.com';
  readonly publicKey: Uint8Array;
  readonly application: string;
}

export interface SkEcdsaPublicKey {
  readonly type: 'sk-ecdsa-sha2-nistp256@openssh.com';
  readonly curve: 'nistp256';
  readonly point: Uint8Array;
  readonly application: string;
}

export type PlainPublicKey = Ed25519PublicKey | EcdsaPublicKey | RsaPublicKey;
export type PublicKey = PlainPublicKey | SkEd25519PublicKey | SkEcdsaPublicKey;

export interface Ed25519PrivateKey extends Ed25519PublicKey {
  /** The 32-byte seed (OpenSSH stores seed || publicKey). */
  readonly seed: Uint8Array;
}

export interface EcdsaPrivateKey extends EcdsaPublicKey {
  readonly d: bigint;
}

export interface RsaPrivateKey extends RsaPublicKey {
  readonly d: bigint;
  readonly p: bigint;
  readonly q: bigint;
  /** q^-1 mod p, as OpenSSH stores it. */
  readonly iqmp: bigint;
}

/** Security-key private keys hold a handle, not a secret: they cannot sign here. */
export interface SkPrivateKeyHandle {
  readonly flags: number;
  readonly keyHandle: Uint8Array;
  readonly reserved: Uint8Array;
}
export type SkEd25519PrivateKey = SkEd25519PublicKey & SkPrivateKeyHandle;
export type SkEcdsaPrivateKey = SkEcdsaPublicKey & SkPrivateKeyHandle;

export type SigningPrivateKey = Ed25519PrivateKey | EcdsaPrivateKey | RsaPrivateKey;
export type PrivateKey = SigningPrivateKey | SkEd25519PrivateKey | SkEcdsaPrivateKey;

/** Names that can appear as the algorithm of an SSH signature blob. */
export type SignatureAlgorithm =
  | 'ssh-ed25519'
  | 'ecdsa-sha2-nistp256'
  | 'ecdsa-sha2-nistp384'
  | 'ecdsa-sha2-nistp521'
  | 'rsa-sha2-256'
  | 'rsa-sha2-512'
  /** RSA with SHA-1: verified where OpenSSH still does, never produced. */
  | 'ssh-rsa'
  | 'sk-ssh-ed25519@openssh.com'
  | 'sk-ecdsa-sha2-nistp256@openssh.com';

/** A decoded SSH signature blob (`string algorithm, string signature[, byte flags, uint32 counter]`). */
export interface SshSignature {
  readonly algorithm: SignatureAlgorithm;
  /**
   * The signature itself: Ed25519 64 bytes; ECDSA `r || s` each padded to the curve size;
   * RSA the big-endian integer padded to the modulus size.
   */
  readonly bytes: Uint8Array;
  /** Security-key signatures only. */
  readonly sk?: { readonly flags: number; readonly counter: number };
}

export const CURVE_OF: Readonly<Record<EcdsaPublicKey['type'], EcdsaCurve>> = {
  'ecdsa-sha2-nistp256': 'nistp256',
  'ecdsa-sha2-nistp384': 'nistp384',
  'ecdsa-sha2-nistp521': 'nistp521',
};

/** Byte length of one ECDSA scalar / coordinate for each curve. */
export const CURVE_SIZE: Readonly<Record<EcdsaCurve, number>> = {
  nistp256: 32,
  nistp384: 48,
  nistp521: 66,
};

export const CURVE_HASH: Readonly<Record<EcdsaCurve, 'sha256' | 'sha384' | 'sha512'>> = {
  nistp256: 'sha256',
  nistp384: 'sha384',
  nistp521: 'sha512',
};

export type HashName = 'sha1' | 'sha256' | 'sha384' | 'sha512';
