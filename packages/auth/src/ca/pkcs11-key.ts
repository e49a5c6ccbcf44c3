import type { PublicKey } from '@portcullis/cert-core';
import { AuthError } from '../errors.js';

/*
 * Turning a token's EC public key attributes into cert-core's PublicKey. Pure: no library, no
 * token, so every spelling a vendor may use is testable with bytes alone.
 */

/** CKK_EC and CKK_EC_EDWARDS (PKCS#11 3.0 §2.3.6). */
export const CKK_EC = 0x3;
export const CKK_EC_EDWARDS = 0x40;

/** DER of CKA_EC_PARAMS: a named curve OID or, for Edwards curves, a PrintableString name. */
const CURVES: readonly { readonly der: string; readonly curve: 'ed25519' | 'nistp256' | 'nistp384' }[] = [
  { der: '06032b6570', curve: 'ed25519' }, // id-Ed25519, 1.3.101.112 (RFC 8410)
  { der: '130c656477617264733235353139', curve: 'ed25519' }, // PrintableString "edwards25519" (pkcs11-tool)
  { der: '06082a8648ce3d030107', curve: 'nistp256' }, // prime256v1, 1.2.840.10045.3.1.7
  { der: '06052b81040022', curve: 'nistp384' }, // secp384r1, 1.3.132.0.34
];

function configError(message: string): AuthError {
  return new AuthError('ERR_CONFIG', `ca: ${message}`);
}

/**
 * CKA_EC_POINT is a DER OCTET STRING around the point (PKCS#11 §2.3.3); some modules return
 * the bare point. The bare form is taken only when its size is that of a whole point, so a
 * wrapped value whose first content byte happens to look like a length is not misread.
 */
export function unwrapEcPoint(value: Uint8Array, pointSize: number): Uint8Array {
  if (value.length === pointSize && (pointSize === 32 || value[0] === 0x04)) return Uint8Array.from(value);
  if (value[0] !== 0x04 || value.length < 2) throw configError(`CKA_EC_POINT expected a DER OCTET STRING of ${pointSize} bytes, got ${value.length} bytes`);
  let length = value[1]!;
  let offset = 2;
  if (length & 0x80) {
    const n = length & 0x7f;
    if (n === 0 || n > 2 || value.length < 2 + n) throw configError('CKA_EC_POINT has a malformed DER length');
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + value[2 + i]!;
    offset = 2 + n;
  }
  if (offset + length !== value.length || length !== pointSize) {
    throw configError(`CKA_EC_POINT expected a DER OCTET STRING of ${pointSize} bytes, got ${length} in ${value.length} bytes`);
  }
  // A plain Uint8Array (not the binding's Buffer), as cert-core's keys hold.
  return Uint8Array.from(value.subarray(offset));
}

/** The public key of a CA key from CKA_KEY_TYPE, CKA_EC_PARAMS and CKA_EC_POINT. */
export function ecKeyFromAttributes(keyType: number, ecParams: Uint8Array, ecPoint: Uint8Array, what: string): PublicKey {
  const hex = Buffer.from(ecParams).toString('hex');
  const curve = CURVES.find((c) => c.der === hex)?.curve;
  if (keyType !== CKK_EC && keyType !== CKK_EC_EDWARDS) {
    throw configError(`the ${what} has key type 0x${keyType.toString(16)}; a CA key in a token must be Ed25519 (CKK_EC_EDWARDS) or ECDSA P-256/P-384 (CKK_EC)`);
  }
  if (curve === undefined) throw configError(`the ${what} is on a curve this CA cannot use (CKA_EC_PARAMS ${hex}); expected Ed25519, P-256 or P-384`);
  if ((curve === 'ed25519') !== (keyType === CKK_EC_EDWARDS)) {
    throw configError(`the ${what} has CKA_EC_PARAMS ${hex}, which does not fit its key type 0x${keyType.toString(16)}`);
  }
  if (curve === 'ed25519') return { type: 'ssh-ed25519', publicKey: unwrapEcPoint(ecPoint, 32) };
  const point = unwrapEcPoint(ecPoint, curve === 'nistp256' ? 65 : 97);
  if (point[0] !== 0x04) throw configError(`the ${what} has a compressed or malformed EC point; expected an uncompressed one`);
  return curve === 'nistp256' ? { type: 'ecdsa-sha2-nistp256', curve, point } : { type: 'ecdsa-sha2-nistp384', curve, point };
}

/** `CKR_PIN_INCORRECT` from pkcs11js's message, or the code in hex when it gives no name. */
export function describeReturnValue(message: string, code: number): string {
  const name = /\bCKR_[A-Z0-9_]+/.exec(message)?.[0];
  return name ?? `CKR 0x${code.toString(16).padStart(8, '0')}`;
}
