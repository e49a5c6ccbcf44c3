import { CertError } from '../errors.js';
import { SshReader } from '../wire/reader.js';
import { SshWriter } from '../wire/writer.js';
import type { CryptoBackend } from '../crypto/backend.js';
import type { KeyType, PublicKey, SignatureAlgorithm, SshSignature } from '../keys/types.js';
import { isKeyType, parsePublicKey, readKeyFields, writeKeyFields, encodePublicKey } from '../keys/public-key.js';
import { encodeSignature, parseSignature, verifySignature } from '../keys/signature.js';
import type { Signer } from '../keys/signature.js';
import type { CertOption } from './options.js';
import { canonicalOptions, optionsCanonical, readOptions, writeOptions } from './options.js';


export const CERT_SUFFIX = '-cert-v01@openssh.com';
export type CertificateKind = 'user' | 'host';

/** Most principals OpenSSH accepts in one certificate (SSHKEY_CERT_MAX_PRINCIPALS). */
export const MAX_PRINCIPALS = 256;

/** A parsed OpenSSH certificate. Plain data; `raw` keeps the bytes the signature covers. */
export interface Certificate {
  /** e.g. `ssh-ed25519-cert-v01@openssh.com`. */
  readonly certType: string;
  readonly nonce: Uint8Array;
  /** The subject key. */
  readonly key: PublicKey;
  readonly serial: bigint;
  readonly kind: CertificateKind;
  readonly keyId: string;
  readonly principals: readonly string[];
  /** Seconds since the epoch, unsigned 64-bit. */
  readonly validAfter: bigint;
  readonly validBefore: bigint;
  readonly criticalOptions: readonly CertOption[];
  readonly extensions: readonly CertOption[];
  readonly reserved: Uint8Array;
  /** The CA key (never itself a certificate). */
  readonly signatureKey: PublicKey;
  readonly signature: SshSignature;
  /** The whole certificate blob as received or produced. */
  readonly raw: Uint8Array;
  /** How many leading bytes of `raw` the CA signature covers. */
  readonly signedLength: number;
  /** False when options or extensions are unsorted or repeated (accepted, but reported). */
  readonly canonical: boolean;
}

export function certTypeFor(keyType: KeyType): string {
  return keyType.replace(/@openssh\.com$/, '') + CERT_SUFFIX;
}

export function keyTypeOfCertType(certType: string): KeyType | undefined {
  if (!certType.endsWith(CERT_SUFFIX)) return undefined;
  const base = certType.slice(0, -CERT_SUFFIX.length);
  const t = base.startsWith('sk-') ? `${base}@openssh.com` : base;
  return isKeyType(t) ? t : undefined;
}

export function isCertificateType(name: string): boolean {
  return keyTypeOfCertType(name) !== undefined;
}

/**
 * Parses a certificate blob as strictly as OpenSSH's cert_parse: known type, kind 1 or 2, no
 * NUL in key id or principals, at most 256 principals, well-formed option lists, a CA key that
 * is not itself a certificate, a well-formed signature, no trailing bytes. The signature is not
 * verified here: call verifyCertificateSignature (the checker does).
 */
export function parseCertificate(blob: Uint8Array, context = 'certificate'): Certificate {
  const r = new SshReader(blob, context);
  const certType = r.text('type');
  const keyType = keyTypeOfCertType(certType);
  if (keyType === undefined) {
    throw new CertError('ERR_UNSUPPORTED', `cert-core: unsupported certificate type "${certType}"`, {
      where: `${context}.type`,
      what: certType,
    });
  }
  const nonce = r.string('nonce').slice();
  const key = readKeyFields(r, keyType);
  const serial = r.uint64('serial');
  const kindNum = r.uint32('kind');
  if (kindNum !== 1 && kindNum !== 2) r.fail('kind', `certificate type ${kindNum}, expected 1 (user) or 2 (host)`);
  const keyId = r.text('keyId');
  const principals: string[] = [];
  const pr = new SshReader(r.string('principals'), `${context}.principals`);
  while (pr.remaining > 0) {
    if (principals.length >= MAX_PRINCIPALS) pr.fail(`[${principals.length}]`, `more than ${MAX_PRINCIPALS} principals`);
    principals.push(pr.text(`[${principals.length}]`));
  }
  const validAfter = r.uint64('validAfter');
  const validBefore = r.uint64('validBefore');
  const criticalOptions = readOptions(r, `${context}.criticalOptions`);
  const extensions = readOptions(r, `${context}.extensions`);
  const reserved = r.string('reserved').slice();
  const sigKeyBlob = r.string('signatureKey');
  const signedLength = r.offset;
  let signatureKey: PublicKey;
  try {
    signatureKey = parsePublicKey(sigKeyBlob, `${context}.signatureKey`);
  } catch (e) {
    if (e instanceof CertError && e.code === 'ERR_UNSUPPORTED' && e.what?.endsWith(CERT_SUFFIX)) {
      r.fail('signatureKey', 'the CA key is itself a certificate');
    }
    throw e;
  }
  const signature = parseSignature(r.string('signature'), `${context}.signature`);
  r.end();
  return {
    certType,
    nonce,
    key,
    serial,
    kind: kindNum === 1 ? 'user' : 'host',
    keyId,
    principals,
    validAfter,
    validBefore,
    criticalOptions,
    extensions,
    reserved,
    signatureKey,
    signature,
    raw: blob.slice(),
    signedLength,
    canonical: optionsCanonical(criticalOptions) && optionsCanonical(extensions),
  };
}

/** True when the CA signature verifies over the received bytes (never over a re-encoding). */
export function verifyCertificateSignature(crypto: CryptoBackend, cert: Certificate): boolean {
  return verifySignature(crypto, cert.signatureKey, cert.signature, cert.raw.subarray(0, cert.signedLength));
}

/** What a CA decides to put into a certificate. */
export interface CertificateTemplate {
  readonly key: PublicKey;
  readonly kind: CertificateKind;
  readonly serial: bigint;
  readonly keyId: string;
  readonly principals: readonly string[];
  readonly validAfter: bigint;
  readonly validBefore: bigint;
  readonly criticalOptions?: readonly CertOption[];
  readonly extensions?: readonly CertOption[];
}

export interface SignOptions {
  readonly crypto: CryptoBackend;
  /** For RSA CAs: rsa-sha2-512 (default) or rsa-sha2-256. */
  readonly algorithm?: SignatureAlgorithm;
  /** 32 random bytes from `crypto` when absent; tests pass a fixed one. */
  readonly nonce?: Uint8Array;
}

function refuse(what: string, message: string): never {
  throw new CertError('ERR_REFUSED', `cert-core: ${message}`, { where: 'template', what });
}

function checkTemplate(t: CertificateTemplate): void {
  if (t.key.type.endsWith(CERT_SUFFIX)) refuse('key', 'subject key must be a plain key');
  if (t.principals.length === 0) refuse('principals', 'a certificate without principals is valid for everyone; refusing to issue one');
  if (t.principals.length > MAX_PRINCIPALS) refuse('principals', `more than ${MAX_PRINCIPALS} principals`);
  for (const p of t.principals) {
    if (p === '' || p.includes('\0')) refuse('principals', `invalid principal ${JSON.stringify(p)}`);
  }
  if (t.keyId.includes('\0')) refuse('keyId', 'key id contains a NUL byte');
  if (t.validAfter < 0n || t.validBefore > 0xffffffffffffffffn) refuse('validity', 'validity outside uint64');
  if (t.validAfter >= t.validBefore) refuse('validity', `valid_after ${t.validAfter} is not before valid_before ${t.validBefore}`);
  if (t.serial < 0n || t.serial > 0xffffffffffffffffn) refuse('serial', 'serial outside uint64');
  if (t.kind === 'host' && (t.criticalOptions?.length ?? 0) > 0) {
    refuse('criticalOptions', 'host certificates carry no critical options (ssh refuses them)');
  }
}

/** Encodes and signs a certificate. Options are sorted bytewise; a duplicate is refused. */
export function signCertificate(template: CertificateTemplate, signer: Signer, options: SignOptions): Certificate {
  checkTemplate(template);
  if (signer.publicKey.type.endsWith(CERT_SUFFIX)) refuse('signer', 'a certificate cannot be a CA');
  const nonce = options.nonce ?? options.crypto.randomBytes(32);
  const critical = canonicalOptions(template.criticalOptions ?? [], 'critical option');
  const extensions = canonicalOptions(template.extensions ?? [], 'extension');
  const certType = certTypeFor(template.key.type);
  const w = new SshWriter(1024);
  w.string(certType).string(nonce);
  writeKeyFields(w, template.key);
  w.uint64(template.serial)
    .uint32(template.kind === 'user' ? 1 : 2)
    .string(template.keyId)
    .nested((x) => {
      for (const p of template.principals) x.string(p);
    })
    .uint64(template.validAfter)
    .uint64(template.validBefore);
  writeOptions(w, critical);
  writeOptions(w, extensions);
  w.string(new Uint8Array(0)).string(encodePublicKey(signer.publicKey));
  const signedLength = w.length;
  const signature = signer.sign(w.peek(), options.algorithm);
  w.string(encodeSignature(signature));
  return {
    certType,
    nonce,
    key: template.key,
    serial: template.serial,
    kind: template.kind,
    keyId: template.keyId,
    principals: [...template.principals],
    validAfter: template.validAfter,
    validBefore: template.validBefore,
    criticalOptions: critical,
    extensions,
    reserved: new Uint8Array(0),
    signatureKey: signer.publicKey,
    signature,
    raw: w.finish(),
    signedLength,
    canonical: true,
  };
}

