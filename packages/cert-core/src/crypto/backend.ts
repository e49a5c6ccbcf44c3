import type { HashName, PlainKeyType, PlainPublicKey, SigningPrivateKey } from '../keys/types.js';

/**
 * The primitives cert-core needs, behind one small synchronous interface. Two implementations
 * pass the same tests: `nodeCrypto` (node:crypto, the fast one the servers use) and
 * `nobleCrypto` (@noble/curves and @noble/hashes, portable, for the browser and as a
 * cross-check).
 *
 * Signatures here are raw: Ed25519 64 bytes, ECDSA `r || s` padded to the curve size, RSA
 * PKCS#1 v1.5 padded to the modulus size. The SSH blob framing lives in keys/signature.ts.
 */
export interface CryptoBackend {
  readonly name: string;
  randomBytes(length: number): Uint8Array;
  hash(name: HashName, data: Uint8Array): Uint8Array;
  /**
   * Verifies a raw signature. `hash` selects the digest for RSA and ECDSA and is ignored for
   * Ed25519. Returns false for any signature that does not verify, including malformed ones.
   */
  verify(key: PlainPublicKey, hash: HashName, signature: Uint8Array, data: Uint8Array): boolean;
  sign(key: SigningPrivateKey, hash: HashName, data: Uint8Array): Uint8Array;
  /** New key pair. `bits` applies to RSA only (default 3072). */
  generate(type: PlainKeyType, options?: { readonly bits?: number }): SigningPrivateKey;
}
