import { cbc, ctr, gcm } from '@noble/ciphers/aes.js';
import { chacha20orig } from '@noble/ciphers/chacha.js';
import { poly1305 } from '@noble/ciphers/_poly1305.js';
import { CertError, malformed } from '../errors.js';
import type { CryptoBackend } from '../crypto/backend.js';
import { SshReader } from '../wire/reader.js';
import { SshWriter } from '../wire/writer.js';
import { equalBytes, toBase64, utf8 } from '../wire/bytes.js';
import type { KeyType, PrivateKey, PublicKey } from './types.js';
import { encodePublicKey, isKeyType, parsePublicKey, readKeyFields, writeKeyFields } from './public-key.js';
import { publicPart } from './signature.js';
import { bcryptPbkdf, BCRYPT_PBKDF_MAX_SALT } from './bcrypt-pbkdf.js';
import { checkKeyPair } from './generate.js';
import type { PemBlock } from './pkcs8.js';
import { decodePemPrivateKey, readPemBlocks, writePem } from './pkcs8.js';

/*
 * The `openssh-key-v1` private key file (PROTOCOL.key; sshkey.c sshkey_private_to_blob2 and
 * sshkey_parse_private2):
 *
 *   "openssh-key-v1\0"  string ciphername  string kdfname  string kdfoptions
 *   uint32 number of keys (always 1)  string public key blob
 *   string encrypted section [+ AEAD tag outside the length]
 *
 * The section, before encryption: uint32 check, uint32 check (equal, random), string key type,
 * the private fields of that type, string comment, then padding bytes 1, 2, 3 ... up to the
 * cipher's block size. kdfoptions for bcrypt are `string salt, uint32 rounds`.
 */

const LABEL = 'OPENSSH PRIVATE KEY';
const MAGIC = utf8('openssh-key-v1\0');
/** ssh-keygen wraps the base64 body at 70 columns. */
const LINE_WIDTH = 70;
/** ssh-keygen's defaults: 16 bcrypt rounds over a 16-byte salt, aes256-ctr. */
export const DEFAULT_KDF_ROUNDS = 16;
export const DEFAULT_KEY_CIPHER = 'aes256-ctr';
const SALT_LENGTH = 16;
/**
 * Most bcrypt rounds a file may ask for unless the caller allows more. Rounds are a uint32 in
 * the file, and each costs about 8 ms here: an unchecked value could stall a process for weeks.
 */
export const DEFAULT_MAX_KDF_ROUNDS = 1024;

interface KeyCipher {
  readonly keyLength: number;
  readonly ivLength: number;
  readonly blockSize: number;
  /** AEAD tag bytes stored after the section, outside its length. */
  readonly tagLength: number;
  encrypt(key: Uint8Array, iv: Uint8Array, plain: Uint8Array): Uint8Array;
  /** Undefined when an AEAD tag does not verify (a wrong passphrase). */
  decrypt(key: Uint8Array, iv: Uint8Array, data: Uint8Array): Uint8Array | undefined;
}

function aesCtr(keyLength: number): KeyCipher {
  // noble advances the counter block it is given: hand it a copy.
  const run = (key: Uint8Array, iv: Uint8Array, data: Uint8Array) => ctr(key, iv.slice()).encrypt(data.slice());
  return { keyLength, ivLength: 16, blockSize: 16, tagLength: 0, encrypt: run, decrypt: run };
}

function aesCbc(keyLength: number): KeyCipher {
  const opts = { disablePadding: true };
  return {
    keyLength,
    ivLength: 16,
    blockSize: 16,
    tagLength: 0,
    encrypt: (key, iv, data) => cbc(key, iv.slice(), opts).encrypt(data.slice()),
    decrypt: (key, iv, data) => cbc(key, iv.slice(), opts).decrypt(data.slice()),
  };
}

/** OpenSSH's GCM: a 12-byte IV used as is for the first (here: only) message, no AAD. */
function aesGcm(keyLength: number): KeyCipher {
  return {
    keyLength,
    ivLength: 12,
    blockSize: 16,
    tagLength: 16,
    encrypt: (key, iv, data) => gcm(key, iv.slice()).encrypt(data.slice()),
    decrypt: (key, iv, data) => {
      try {
        return gcm(key, iv.slice()).decrypt(data.slice());
      } catch {
        return undefined;
      }
    },
  };
}

/**
 * chacha20-poly1305@openssh.com (PROTOCOL.chacha20poly1305) with sequence number 0 and no
 * length header: the first 32 bytes of the key stream keyed by the first half of the 64-byte
 * key are the Poly1305 key, the data is encrypted from block 1 on, the tag covers the
 * ciphertext. The second half of the key only encrypts packet lengths, which a file has none of.
 */
const CHACHA_POLY: KeyCipher = (() => {
  const nonce = new Uint8Array(8);
  const polyKey = (key: Uint8Array) => chacha20orig(key.subarray(0, 32), nonce, new Uint8Array(32), undefined, 0);
  return {
    keyLength: 64,
    ivLength: 0,
    blockSize: 8,
    tagLength: 16,
    encrypt: (key, _iv, plain) => {
      const c = chacha20orig(key.slice(0, 32), nonce, plain.slice(), undefined, 1);
      const out = new Uint8Array(c.length + 16);
      out.set(c);
      out.set(poly1305(c, polyKey(key)), c.length);
      return out;
    },
    decrypt: (key, _iv, data) => {
      const c = data.slice(0, data.length - 16);
      if (!equalBytes(poly1305(c, polyKey(key)), data.subarray(data.length - 16))) return undefined;
      return chacha20orig(key.slice(0, 32), nonce, c, undefined, 1);
    },
  };
})();

const NONE: KeyCipher = {
  keyLength: 0,
  ivLength: 0,
  blockSize: 8,
  tagLength: 0,
  encrypt: (_k, _i, data) => data,
  decrypt: (_k, _i, data) => data,
};

const CIPHERS = {
  none: NONE,
  'aes128-ctr': aesCtr(16),
  'aes192-ctr': aesCtr(24),
  'aes256-ctr': aesCtr(32),
  'aes128-cbc': aesCbc(16),
  'aes192-cbc': aesCbc(24),
  'aes256-cbc': aesCbc(32),
  'aes128-gcm@openssh.com': aesGcm(16),
  'aes256-gcm@openssh.com': aesGcm(32),
  'chacha20-poly1305@openssh.com': CHACHA_POLY,
} as const satisfies Record<string, KeyCipher>;

/** The ciphers a key file may use: every one OpenSSH 9 offers except 3des-cbc. */
export type KeyCipherName = Exclude<keyof typeof CIPHERS, 'none'>;

function cipherByName(name: string): KeyCipher | undefined {
  return Object.hasOwn(CIPHERS, name) ? CIPHERS[name as keyof typeof CIPHERS] : undefined;
}

// ---------------------------------------------------------------------------------------------

export type PrivateKeyFormat = 'openssh' | 'pkcs8' | 'pkcs1' | 'sec1';

export interface PrivateKeyEncryption {
  readonly cipher: KeyCipherName;
  readonly kdf: 'bcrypt';
  readonly rounds: number;
}

export interface ParsedPrivateKey {
  readonly key: PrivateKey;
  /** The comment stored with an OpenSSH key; other formats have none (''). */
  readonly comment: string;
  readonly format: PrivateKeyFormat;
  /** How an OpenSSH file was protected; absent for unencrypted keys. */
  readonly encryption?: PrivateKeyEncryption;
}

export interface ParsePrivateKeyOptions {
  /** UTF-8 text or raw bytes, as typed at ssh-keygen's prompt. Ignored for unencrypted keys. */
  readonly passphrase?: string | Uint8Array;
  /** Most bcrypt rounds to run before refusing with ERR_UNSUPPORTED (default 1024). */
  readonly maxRounds?: number;
}

function passphraseBytes(p: string | Uint8Array | undefined): Uint8Array | undefined {
  if (p === undefined) return undefined;
  if (typeof p === 'string') return utf8(p);
  if (p instanceof Uint8Array) return p;
  throw new TypeError('"passphrase" expected a string or Uint8Array');
}

const decryptError = (what: string, where: string) =>
  new CertError('ERR_DECRYPT', `cert-core: cannot decrypt ${where}: ${what}`, { where, what });

const unsupported = (where: string, what: string) =>
  new CertError('ERR_UNSUPPORTED', `cert-core: unsupported ${where}: ${what}`, { where, what });

/** The outer layer of an `openssh-key-v1` blob, readable without the passphrase. */
interface Envelope {
  readonly cipherName: string;
  readonly cipher: KeyCipher;
  readonly kdf?: { readonly salt: Uint8Array; readonly rounds: number };
  readonly publicKey: PublicKey;
  /** The encrypted section followed by the tag, if any. */
  readonly section: Uint8Array;
  readonly sectionLength: number;
}

function readEnvelope(blob: Uint8Array, context: string): Envelope {
  const r = new SshReader(blob, context);
  if (!equalBytes(r.raw(Math.min(MAGIC.length, r.remaining), 'magic'), MAGIC)) {
    r.fail('magic', 'does not start with "openssh-key-v1\\0"');
  }
  const cipherName = r.text('cipherName');
  const kdfName = r.text('kdfName');
  const kdfOptions = r.string('kdfOptions');
  const keyCount = r.uint32('keyCount');
  if (keyCount === 0) r.fail('keyCount', 'no keys');
  if (keyCount !== 1) throw unsupported(`${context}.keyCount`, `${keyCount} keys in one file`);
  const publicKey = parsePublicKey(r.string('publicKey'), `${context}.publicKey`);
  const sectionLength = r.uint32('privateLength');
  const cipher = cipherByName(cipherName);
  if (cipher === undefined) throw unsupported(`${context}.cipherName`, `cipher "${cipherName}"`);
  if (kdfName !== 'none' && kdfName !== 'bcrypt') throw unsupported(`${context}.kdfName`, `KDF "${kdfName}"`);
  if ((kdfName === 'none') !== (cipher === NONE)) {
    r.fail('kdfName', `KDF "${kdfName}" with cipher "${cipherName}"`);
  }
  let kdf: Envelope['kdf'];
  if (kdfName === 'bcrypt') {
    const k = new SshReader(kdfOptions, `${context}.kdfOptions`);
    const salt = k.string('salt');
    const rounds = k.uint32('rounds');
    k.end();
    if (salt.length === 0 || salt.length > BCRYPT_PBKDF_MAX_SALT) k.fail('salt', `salt of ${salt.length} bytes`);
    if (rounds === 0) k.fail('rounds', 'zero rounds');
    kdf = { salt, rounds };
  } else if (kdfOptions.length !== 0) {
    r.fail('kdfOptions', `${kdfOptions.length} bytes of options for KDF "none"`);
  }
  if (sectionLength < cipher.blockSize || sectionLength % cipher.blockSize !== 0) {
    r.fail('privateLength', `${sectionLength} is not a positive multiple of the block size ${cipher.blockSize}`);
  }
  const section = r.raw(sectionLength + cipher.tagLength, 'private');
  r.end();
  return { cipherName, cipher, ...(kdf ? { kdf } : {}), publicKey, section, sectionLength };
}

/** Reads the private fields that follow the key type in the private section. */
function readPrivateFields(r: SshReader, type: KeyType): PrivateKey {
  switch (type) {
    case 'ssh-ed25519': {
      const { publicKey } = readKeyFields(r, type, 'key') as { publicKey: Uint8Array };
      const sk = r.string('key.secretKey');
      if (sk.length !== 64) r.fail('key.secretKey', `expected 64 bytes, got ${sk.length}`);
      if (!equalBytes(sk.subarray(32), publicKey)) r.fail('key.secretKey', 'second half is not the public key');
      return { type, publicKey, seed: sk.slice(0, 32) };
    }
    case 'ssh-rsa': {
      // n before e here, unlike the public blob.
      const n = r.mpint('key.n');
      const e = r.mpint('key.e');
      const d = r.mpint('key.d');
      const iqmp = r.mpint('key.iqmp');
      const p = r.mpint('key.p');
      const q = r.mpint('key.q');
      return { type, n, e, d, p, q, iqmp };
    }
    case 'ecdsa-sha2-nistp256':
    case 'ecdsa-sha2-nistp384':
    case 'ecdsa-sha2-nistp521': {
      const pub = readKeyFields(r, type, 'key') as Extract<PublicKey, { type: typeof type }>;
      return { ...pub, d: r.mpint('key.d', 67) };
    }
    default: {
      const pub = readKeyFields(r, type, 'key') as Extract<PublicKey, { type: typeof type }>;
      const flags = r.byte('key.flags');
      const keyHandle = r.string('key.keyHandle').slice();
      const reserved = r.string('key.reserved').slice();
      return { ...pub, flags, keyHandle, reserved };
    }
  }
}

// Comments are informational; OpenSSH stores whatever bytes were given, so a comment that is
// not UTF-8 is shown with replacement characters rather than making the key unreadable.
const lenientUtf8 = new TextDecoder('utf-8', { ignoreBOM: true });

/** Decodes the binary `openssh-key-v1` blob (the base64 body of the PEM-like armour). */
export function decodeOpenSshPrivateKey(
  blob: Uint8Array,
  options: ParsePrivateKeyOptions = {},
  context = 'openssh private key',
): ParsedPrivateKey {
  const env = readEnvelope(blob, context);
  let plain = env.section;
  let encryption: PrivateKeyEncryption | undefined;
  if (env.kdf !== undefined) {
    const maxRounds = options.maxRounds ?? DEFAULT_MAX_KDF_ROUNDS;
    const passphrase = passphraseBytes(options.passphrase);
    if (passphrase === undefined || passphrase.length === 0) throw decryptError('a passphrase is required', context);
    if (env.kdf.rounds > maxRounds) {
      throw unsupported(`${context}.kdfOptions.rounds`, `${env.kdf.rounds} bcrypt rounds exceed the limit of ${maxRounds}`);
    }
    const { keyLength, ivLength } = env.cipher;
    const derived = bcryptPbkdf(passphrase, env.kdf.salt, keyLength + ivLength, env.kdf.rounds);
    const key = derived.subarray(0, keyLength);
    const iv = derived.subarray(keyLength);
    let out: Uint8Array | undefined;
    try {
      out = env.cipher.decrypt(key, iv, env.section);
    } catch {
      out = undefined;
    }
    if (out === undefined || out.length !== env.sectionLength) throw decryptError('wrong passphrase', context);
    plain = out;
    encryption = { cipher: env.cipherName as KeyCipherName, kdf: 'bcrypt', rounds: env.kdf.rounds };
  }
  const r = new SshReader(plain, `${context}.private`);
  const check1 = r.uint32('check1');
  const check2 = r.uint32('check2');
  if (check1 !== check2) {
    if (encryption !== undefined) throw decryptError('wrong passphrase', context);
    r.fail('check2', `check words differ (0x${check1.toString(16)} != 0x${check2.toString(16)})`);
  }
  const type = r.text('type');
  if (!isKeyType(type)) throw unsupported(`${context}.private.type`, `key type "${type}"`);
  const key = readPrivateFields(r, type);
  const commentBytes = r.string('comment');
  if (commentBytes.includes(0)) r.fail('comment', 'contains a NUL byte');
  const comment = lenientUtf8.decode(commentBytes);
  for (let i = 1; r.remaining > 0; i++) {
    const pad = r.byte('padding');
    if (pad !== (i & 0xff)) r.fail('padding', `byte ${i} is ${pad}, expected ${i & 0xff}`);
  }
  if (!equalBytes(encodePublicKey(publicPart(key)), encodePublicKey(env.publicKey))) {
    malformed(`${context}.publicKey`, 'does not match the private key');
  }
  checkKeyPair(key);
  return { key, comment, format: 'openssh', ...(encryption ? { encryption } : {}) };
}

const PEM_FORMATS: Readonly<Record<string, PrivateKeyFormat>> = {
  'PRIVATE KEY': 'pkcs8',
  'ENCRYPTED PRIVATE KEY': 'pkcs8',
  'RSA PRIVATE KEY': 'pkcs1',
  'EC PRIVATE KEY': 'sec1',
};

function privateKeyBlock(text: string, context: string): PemBlock {
  const blocks = readPemBlocks(text, context).filter((b) => b.label.endsWith('PRIVATE KEY'));
  if (blocks.length === 0) malformed(context, 'no "-----BEGIN ... PRIVATE KEY-----" block');
  if (blocks.length > 1) malformed(context, `${blocks.length} private key blocks; expected one`);
  return blocks[0]!;
}

/**
 * Reads a private key file: OpenSSH's own format (unencrypted or passphrase-protected), or an
 * unencrypted PKCS#8, PKCS#1 or SEC1 PEM file. A wrong or missing passphrase is ERR_DECRYPT;
 * anything that does not parse is ERR_MALFORMED; a well-formed file of a kind not handled here
 * (DSA, encrypted PKCS#8, a cipher such as 3des-cbc) is ERR_UNSUPPORTED. The key is checked
 * against its public half before it is returned.
 */
export function parsePrivateKey(text: string, options: ParsePrivateKeyOptions = {}): ParsedPrivateKey {
  if (typeof text !== 'string') throw new TypeError('"text" expected a string');
  const context = 'private key';
  const block = privateKeyBlock(text, context);
  if (block.label === LABEL) {
    if (block.headers.size > 0) malformed(`${context}.armour`, 'headers in an OpenSSH key');
    return decodeOpenSshPrivateKey(block.body, options, context);
  }
  const format = PEM_FORMATS[block.label];
  if (format === undefined) throw unsupported(context, `PEM block "${block.label}"`);
  return { key: decodePemPrivateKey(block), comment: '', format };
}

export interface PrivateKeyInfo {
  readonly format: PrivateKeyFormat;
  readonly encrypted: boolean;
  /** The public key, when the file shows it without the passphrase (OpenSSH files do). */
  readonly publicKey?: PublicKey;
}

/**
 * What a private key file is, without a passphrase: whether to prompt for one, and for an
 * OpenSSH file which public key it holds (as `ssh-keygen -y` shows before asking).
 */
export function inspectPrivateKey(text: string): PrivateKeyInfo {
  if (typeof text !== 'string') throw new TypeError('"text" expected a string');
  const context = 'private key';
  const block = privateKeyBlock(text, context);
  if (block.label === LABEL) {
    const env = readEnvelope(block.body, context);
    return { format: 'openssh', encrypted: env.cipher !== NONE, publicKey: env.publicKey };
  }
  const format = PEM_FORMATS[block.label];
  if (format === undefined) throw unsupported(context, `PEM block "${block.label}"`);
  const encrypted = block.label === 'ENCRYPTED PRIVATE KEY' || /ENCRYPTED/i.test(block.headers.get('Proc-Type') ?? '');
  return { format, encrypted };
}

// ---------------------------------------------------------------------------------------------

export interface FormatPrivateKeyOptions {
  /** Source of the salt and the check word. Salt (16 bytes) is drawn first, then the check (4). */
  readonly crypto: CryptoBackend;
  readonly comment?: string;
  /** Encrypts the key when given and non-empty (an empty passphrase means none, as in ssh-keygen). */
  readonly passphrase?: string | Uint8Array;
  /** bcrypt rounds (default 16, as ssh-keygen -a). */
  readonly rounds?: number;
  /** Default aes256-ctr, as ssh-keygen -Z. */
  readonly cipher?: KeyCipherName;
}

function writePrivateFields(w: SshWriter, key: PrivateKey): void {
  w.string(key.type);
  switch (key.type) {
    case 'ssh-ed25519': {
      const sk = new Uint8Array(64);
      sk.set(key.seed);
      sk.set(key.publicKey, 32);
      w.string(key.publicKey).string(sk);
      return;
    }
    case 'ssh-rsa':
      w.mpint(key.n).mpint(key.e).mpint(key.d).mpint(key.iqmp).mpint(key.p).mpint(key.q);
      return;
    case 'ecdsa-sha2-nistp256':
    case 'ecdsa-sha2-nistp384':
    case 'ecdsa-sha2-nistp521':
      writeKeyFields(w, key);
      w.mpint(key.d);
      return;
    default:
      writeKeyFields(w, key);
      w.byte(key.flags).string(key.keyHandle).string(key.reserved);
  }
}

/** The binary `openssh-key-v1` blob of `key`. */
export function encodeOpenSshPrivateKey(key: PrivateKey, options: FormatPrivateKeyOptions): Uint8Array {
  const { crypto, comment = '', rounds = DEFAULT_KDF_ROUNDS } = options;
  if (crypto === undefined || typeof crypto.randomBytes !== 'function') {
    throw new TypeError('"crypto" expected a CryptoBackend');
  }
  if (typeof comment !== 'string' || comment.includes('\0')) throw new TypeError('"comment" expected a string without NUL');
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 0xffffffff) {
    throw new TypeError(`"rounds" expected a positive 32-bit integer, got ${rounds}`);
  }
  const passphrase = passphraseBytes(options.passphrase);
  const encrypt = passphrase !== undefined && passphrase.length > 0;
  const cipherName = encrypt ? (options.cipher ?? DEFAULT_KEY_CIPHER) : 'none';
  const cipher = cipherByName(cipherName);
  if (cipher === undefined || (encrypt && cipher === NONE)) {
    throw new TypeError(`"cipher" expected one of ${Object.keys(CIPHERS).filter((c) => c !== 'none').join(', ')}`);
  }
  checkKeyPair(key);

  const kdfOptions = new SshWriter(32);
  let derived: Uint8Array | undefined;
  if (encrypt) {
    const salt = crypto.randomBytes(SALT_LENGTH);
    kdfOptions.string(salt).uint32(rounds);
    derived = bcryptPbkdf(passphrase, salt, cipher.keyLength + cipher.ivLength, rounds);
  }
  const check = crypto.randomBytes(4);
  const section = new SshWriter(key.type === 'ssh-rsa' ? 2048 : 256);
  section.raw(check).raw(check);
  writePrivateFields(section, key);
  section.string(comment);
  for (let i = 1; section.length % cipher.blockSize !== 0; i++) section.byte(i & 0xff);
  const plain = section.finish();
  const sealed =
    derived === undefined
      ? plain
      : cipher.encrypt(derived.subarray(0, cipher.keyLength), derived.subarray(cipher.keyLength), plain);

  const w = new SshWriter(plain.length + 256);
  w.raw(MAGIC)
    .string(cipherName)
    .string(encrypt ? 'bcrypt' : 'none')
    .string(kdfOptions.finish())
    .uint32(1)
    .string(encodePublicKey(publicPart(key)))
    .uint32(plain.length)
    .raw(sealed);
  return w.finish();
}

/**
 * `key` as ssh-keygen writes it: `-----BEGIN OPENSSH PRIVATE KEY-----`, base64 at 70 columns.
 * With a passphrase the key is encrypted with bcrypt_pbkdf and aes256-ctr by default.
 */
export function formatPrivateKey(key: PrivateKey, options: FormatPrivateKeyOptions): string {
  return writePem(LABEL, toBase64(encodeOpenSshPrivateKey(key, options)), LINE_WIDTH);
}
