/** Fresh ed25519 public keys for the benchmark's requests, as OpenSSH public key lines. */
import { generateKeyPairSync } from 'node:crypto';
import { formatPublicKey } from '@portcullis/cert-core';

// An Ed25519 SubjectPublicKeyInfo is a fixed 12-byte header and the 32-byte key.
const SPKI_HEADER = Buffer.from('302a300506032b6570032100', 'hex');

/**
 * One new key pair's public half. Encoded by the key generation job itself rather than through
 * a KeyObject's export(): on Node 20.20, exporting a freshly generated key as JWK in a tight
 * loop deadlocks now and then (a GC during the export finalizes the generation job, whose
 * destructor takes the key's mutex the export holds; seen with gdb, main thread in
 * ~KeyGenJob under ExportJWKEdKey). cert-core's nodeCrypto.generate takes that path.
 */
export function freshEd25519PublicKey(comment = ''): string {
  const { publicKey } = generateKeyPairSync('ed25519', {
    publicKeyEncoding: { type: 'spki', format: 'der' },
    privateKeyEncoding: { type: 'pkcs8', format: 'der' },
  });
  if (publicKey.length !== 44 || !publicKey.subarray(0, 12).equals(SPKI_HEADER)) throw new Error('unexpected Ed25519 SPKI encoding from node:crypto');
  return formatPublicKey({ type: 'ssh-ed25519', publicKey: new Uint8Array(publicKey.subarray(12)) }, comment);
}
