import { sha512 } from '@noble/hashes/sha2.js';
import { BlowfishState, streamWords, BLOWFISH_P_WORDS, BLOWFISH_STATE_WORDS } from './blowfish.js';

/**
 * bcrypt_pbkdf as OpenSSH defines it (openbsd-compat/bcrypt_pbkdf.c), the KDF of passphrase
 * protected `openssh-key-v1` files. PBKDF2-like, with a bcrypt core over SHA-512 digests, and
 * one deviation that matters: output bytes are spread across the key with a stride rather than
 * laid out block after block.
 */

/** Largest output OpenSSH allows: 32 blocks of 32 bytes. */
export const BCRYPT_PBKDF_MAX_KEY = 1024;
/** Largest salt OpenSSH allows. */
export const BCRYPT_PBKDF_MAX_SALT = 1 << 20;

const HASH_WORDS = 8;
const MAGIC = new TextEncoder().encode('OxychromaticBlowfishSwatDynamite');

/** One bcrypt_hash: 32 bytes from two 64-byte SHA-512 digests. */
function bcryptHash(passWords: Uint32Array, salt: Uint8Array, out: Uint8Array): void {
  const saltKeyWords = streamWords(salt, BLOWFISH_P_WORDS);
  const saltStream = streamWords(salt, BLOWFISH_STATE_WORDS);
  const state = new BlowfishState();
  state.expandWords(passWords, saltStream);
  for (let i = 0; i < 64; i++) {
    state.expandWords(saltKeyWords);
    state.expandWords(passWords);
  }
  const cdata = streamWords(MAGIC, HASH_WORDS);
  for (let i = 0; i < 64; i++) state.encryptWords(cdata);
  // Words leave little-endian, unlike everything else in Blowfish.
  for (let i = 0; i < HASH_WORDS; i++) {
    const w = cdata[i]!;
    out[4 * i] = w & 0xff;
    out[4 * i + 1] = (w >>> 8) & 0xff;
    out[4 * i + 2] = (w >>> 16) & 0xff;
    out[4 * i + 3] = w >>> 24;
  }
}

/**
 * Derives `keyLength` bytes from `passphrase` and `salt` with `rounds` iterations. Arguments
 * OpenSSH would refuse (empty passphrase or salt, no rounds, more than 1024 bytes of key) are
 * misuse here and throw TypeError: the key file parser checks them first.
 */
export function bcryptPbkdf(passphrase: Uint8Array, salt: Uint8Array, keyLength: number, rounds: number): Uint8Array {
  if (!(passphrase instanceof Uint8Array) || passphrase.length === 0) {
    throw new TypeError('"passphrase" expected a non-empty Uint8Array');
  }
  if (!(salt instanceof Uint8Array) || salt.length === 0 || salt.length > BCRYPT_PBKDF_MAX_SALT) {
    throw new TypeError(`"salt" expected a Uint8Array of 1..${BCRYPT_PBKDF_MAX_SALT} bytes`);
  }
  if (!Number.isInteger(keyLength) || keyLength < 1 || keyLength > BCRYPT_PBKDF_MAX_KEY) {
    throw new TypeError(`"keyLength" expected an integer in 1..${BCRYPT_PBKDF_MAX_KEY}, got ${keyLength}`);
  }
  if (!Number.isInteger(rounds) || rounds < 1 || rounds > 0xffffffff) {
    throw new TypeError(`"rounds" expected a positive 32-bit integer, got ${rounds}`);
  }
  const blockSize = 4 * HASH_WORDS;
  const stride = Math.ceil(keyLength / blockSize);
  let amount = Math.ceil(keyLength / stride);
  const sha2pass = sha512(passphrase);
  const passWords = streamWords(sha2pass, BLOWFISH_P_WORDS);
  const key = new Uint8Array(keyLength);
  const saltCount = new Uint8Array(salt.length + 4);
  saltCount.set(salt);
  const out = new Uint8Array(blockSize);
  const tmp = new Uint8Array(blockSize);
  let remaining = keyLength;
  for (let count = 1; remaining > 0; count++) {
    new DataView(saltCount.buffer).setUint32(salt.length, count);
    bcryptHash(passWords, sha512(saltCount), tmp);
    out.set(tmp);
    for (let i = 1; i < rounds; i++) {
      bcryptHash(passWords, sha512(tmp), tmp);
      for (let j = 0; j < blockSize; j++) out[j]! ^= tmp[j]!;
    }
    amount = Math.min(amount, remaining);
    let i = 0;
    for (; i < amount; i++) {
      const dest = i * stride + (count - 1);
      if (dest >= keyLength) break;
      key[dest] = out[i]!;
    }
    remaining -= i;
  }
  return key;
}
