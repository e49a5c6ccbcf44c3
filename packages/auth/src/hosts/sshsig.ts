import { CertError, SshReader, SshWriter, equalBytes, fromBase64, parsePublicKey, parseSignature, utf8, verifySignature } from '@portcullis/cert-core';
import type { CryptoBackend, PublicKey } from '@portcullis/cert-core';

/*
 * Verification of `ssh-keygen -Y sign` signatures (OpenSSH PROTOCOL.sshsig), which is how a
 * host proves it holds its host key when renewing: the host runs
 *   ssh-keygen -Y sign -n portcullis-host-renewal -f /etc/ssh/ssh_host_ed25519_key challenge
 * with the stock tool, and no key leaves the host.
 *
 *   byte[6] "SSHSIG"; uint32 version (1); string publickey; string namespace;
 *   string reserved; string hash_algorithm; string signature
 *
 * The signature covers "SSHSIG" || string namespace || string reserved ||
 * string hash_algorithm || string H(message).
 */

const MAGIC = utf8('SSHSIG');
const ARMOR_BEGIN = '-----BEGIN SSH SIGNATURE-----';
const ARMOR_END = '-----END SSH SIGNATURE-----';

export interface SshSig {
  readonly publicKey: PublicKey;
  readonly namespace: string;
  readonly hashAlgorithm: 'sha256' | 'sha512';
  readonly signatureBlob: Uint8Array;
}

/** Parses an armored SSH signature; throws CertError ERR_MALFORMED on anything else. */
export function parseSshSig(armored: string): SshSig {
  if (typeof armored !== 'string' || armored.length > 16384) throw new CertError('ERR_MALFORMED', 'sshsig: expected an armored SSH signature of at most 16 KiB');
  const text = armored.trim();
  if (!text.startsWith(ARMOR_BEGIN) || !text.endsWith(ARMOR_END)) {
    throw new CertError('ERR_MALFORMED', `sshsig: expected ${ARMOR_BEGIN} ... ${ARMOR_END}`, { where: 'armor' });
  }
  const body = text.slice(ARMOR_BEGIN.length, -ARMOR_END.length).replace(/\s+/g, '');
  const blob = fromBase64(body);
  if (blob === undefined) throw new CertError('ERR_MALFORMED', 'sshsig: the armored body is not base64', { where: 'armor' });
  const r = new SshReader(blob, 'sshsig');
  if (!equalBytes(r.raw(6, 'magic'), MAGIC)) r.fail('magic', 'expected "SSHSIG"');
  const version = r.uint32('version');
  if (version !== 1) r.fail('version', `expected 1, got ${version}`);
  const publicKey = parsePublicKey(r.string('publickey'), 'sshsig.publickey');
  const namespace = r.text('namespace');
  r.string('reserved');
  const hashAlgorithm = r.text('hash_algorithm');
  if (hashAlgorithm !== 'sha256' && hashAlgorithm !== 'sha512') return r.fail('hash_algorithm', `expected sha256 or sha512, got ${JSON.stringify(hashAlgorithm)}`);
  const signatureBlob = r.string('signature').slice();
  r.end();
  return { publicKey, namespace, hashAlgorithm, signatureBlob };
}

/**
 * True when `sig` is a signature by `sig.publicKey` over `message` in `namespace`. False for a
 * wrong namespace or a signature that does not verify; only malformed input throws.
 */
export function verifySshSig(crypto: CryptoBackend, sig: SshSig, namespace: string, message: Uint8Array): boolean {
  if (sig.namespace !== namespace) return false;
  const signed = new SshWriter(128)
    .raw(MAGIC)
    .string(namespace)
    .string(new Uint8Array(0))
    .string(sig.hashAlgorithm)
    .string(crypto.hash(sig.hashAlgorithm, message))
    .finish();
  const signature = parseSignature(sig.signatureBlob, 'sshsig.signature');
  // OpenSSH refuses SHA-1 RSA signatures here; so do we.
  if (signature.algorithm === 'ssh-rsa') return false;
  return verifySignature(crypto, sig.publicKey, signature, signed);
}
