// The token's EC attributes to cert-core's PublicKey, with bytes alone (no token): the spellings
// vendors use for CKA_EC_PARAMS and CKA_EC_POINT, and the ones a CA must refuse.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { publicPart } from '@portcullis/cert-core';
import { nodeCrypto } from '@portcullis/cert-core/node';
import { isAuthError } from '../src/errors.js';
import { CKK_EC, CKK_EC_EDWARDS, describeReturnValue, ecKeyFromAttributes, unwrapEcPoint } from '../src/ca/pkcs11-key.js';

const hex = (s: string): Buffer => Buffer.from(s, 'hex');
const der = (content: Uint8Array): Buffer => Buffer.concat([Buffer.of(0x04, content.length), content]);
// Values as SoftHSM2 2.6.1 returns them for keys made by pkcs11-tool 0.23 (see ca-pkcs11.test.ts).
const P256_OID = hex('06082a8648ce3d030107');
const ED25519_NAME = hex('130c656477617264733235353139');
const ED25519_OID = hex('06032b6570');
const P384_OID = hex('06052b81040022');

const ed = publicPart(nodeCrypto.generate('ssh-ed25519'));
const p256 = publicPart(nodeCrypto.generate('ecdsa-sha2-nistp256'));
const p384 = publicPart(nodeCrypto.generate('ecdsa-sha2-nistp384'));

test('Ed25519 by name or OID, P-256 and P-384, DER-wrapped or bare', () => {
  assert.equal(ed.type, 'ssh-ed25519');
  assert.equal(p256.type, 'ecdsa-sha2-nistp256');
  assert.equal(p384.type, 'ecdsa-sha2-nistp384');
  if (ed.type !== 'ssh-ed25519' || p256.type !== 'ecdsa-sha2-nistp256' || p384.type !== 'ecdsa-sha2-nistp384') return;
  for (const params of [ED25519_NAME, ED25519_OID]) {
    for (const point of [der(ed.publicKey), Buffer.from(ed.publicKey)]) {
      assert.deepEqual(ecKeyFromAttributes(CKK_EC_EDWARDS, params, point, 'k'), { type: 'ssh-ed25519', publicKey: ed.publicKey });
    }
  }
  for (const point of [der(p256.point), Buffer.from(p256.point)]) {
    assert.deepEqual(ecKeyFromAttributes(CKK_EC, P256_OID, point, 'k'), { type: 'ecdsa-sha2-nistp256', curve: 'nistp256', point: p256.point });
  }
  // 97 bytes: the DER length needs no long form yet; 0x81 forms are accepted as well.
  const long = Buffer.concat([Buffer.of(0x04, 0x81, 97), p384.point]);
  for (const point of [der(p384.point), long, Buffer.from(p384.point)]) {
    assert.deepEqual(ecKeyFromAttributes(CKK_EC, P384_OID, point, 'k'), { type: 'ecdsa-sha2-nistp384', curve: 'nistp384', point: p384.point });
  }
});

test('refused: other key types, unknown curves, mismatched type and curve, bad points', () => {
  const refused = (f: () => unknown, message: RegExp) =>
    assert.throws(f, (e: unknown) => isAuthError(e, 'ERR_CONFIG') && message.test(e.message));
  if (ed.type !== 'ssh-ed25519' || p256.type !== 'ecdsa-sha2-nistp256') return;
  refused(() => ecKeyFromAttributes(0 /* CKK_RSA */, P256_OID, der(p256.point), 'user CA key'), /user CA key has key type 0x0; .*must be Ed25519/);
  refused(() => ecKeyFromAttributes(CKK_EC, hex('06052b8104000a') /* secp256k1 */, der(p256.point), 'k'), /curve this CA cannot use \(CKA_EC_PARAMS 06052b8104000a\)/);
  refused(() => ecKeyFromAttributes(CKK_EC, ED25519_OID, der(ed.publicKey), 'k'), /does not fit its key type 0x3/);
  refused(() => ecKeyFromAttributes(CKK_EC_EDWARDS, P256_OID, der(p256.point), 'k'), /does not fit its key type 0x40/);
  const compressed = Buffer.concat([Buffer.of(0x02), p256.point.subarray(1, 33)]);
  refused(() => ecKeyFromAttributes(CKK_EC, P256_OID, der(compressed), 'k'), /OCTET STRING of 65 bytes, got 33/);
  refused(() => ecKeyFromAttributes(CKK_EC, P256_OID, Buffer.concat([der(p256.point), Buffer.of(0)]), 'k'), /CKA_EC_POINT/);
  refused(() => unwrapEcPoint(Buffer.of(0x30, 0x02, 0, 0), 32), /expected a DER OCTET STRING of 32 bytes, got 4 bytes/);
  refused(() => unwrapEcPoint(Buffer.of(0x04, 0x85, 0, 0, 0, 0, 0), 32), /malformed DER length/);
});

test('return values are named from the binding message, or shown in hex', () => {
  assert.equal(describeReturnValue('CKR_PIN_INCORRECT', 0xa0), 'CKR_PIN_INCORRECT');
  assert.equal(describeReturnValue('', 0x80000001), 'CKR 0x80000001');
});
