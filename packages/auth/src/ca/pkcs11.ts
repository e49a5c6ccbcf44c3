import { createRequire } from 'node:module';
import { CertError, verifySignature } from '@portcullis/cert-core';
import type { CryptoBackend, PublicKey, SignatureAlgorithm, Signer, SshSignature } from '@portcullis/cert-core';
import { AuthError } from '../errors.js';
import { describeReturnValue, ecKeyFromAttributes } from './pkcs11-key.js';

type Pkcs11Js = typeof import('pkcs11js');
type Pkcs11 = import('pkcs11js').PKCS11;
type Handle = Buffer;

// Loaded on first use so that a file-backed CA never needs the native addon to load.
let binding: Pkcs11Js | undefined;
function pkcs11js(): Pkcs11Js {
  binding ??= createRequire(import.meta.url)('pkcs11js') as Pkcs11Js;
  return binding;
}

/** PKCS#11 3.0 values that pkcs11js 2.1.7 does not export by name. */
const CKM_EDDSA = 0x1057;

/** Where a CA key lives in a token, and how to log in to it. */
export interface Pkcs11SignerOptions {
  /** Path of the vendor's PKCS#11 library (e.g. /usr/lib/softhsm/libsofthsm2.so). */
  readonly module: string;
  /** The token, by label (`softhsm2-util --show-slots`) or by slot id; exactly one. */
  readonly tokenLabel?: string;
  readonly slot?: number;
  /** CKA_LABEL of the private key (its public key object is found by CKA_ID, else by label). */
  readonly keyLabel: string;
  /** The user PIN. Never logged, never part of an error. */
  readonly pin: string;
  /** Hashes the data ECDSA signs and checks every signature the token returns. */
  readonly crypto: CryptoBackend;
  /** Names what the key is for in messages ("user CA"). */
  readonly purpose?: string;
  readonly log?: (message: string) => void;
}

/** A Signer whose private key never leaves the token; close() ends its session. */
export interface Pkcs11Signer extends Signer {
  /** `pkcs11:<module> token "<label>" key "<label>"`, for logs and the readiness check. */
  readonly description: string;
  /** Asks the token whether it still answers (for the readiness check); throws an AuthError if not. */
  check(): void;
  close(): void;
}

/** The module instances of this process: a library is initialised once whoever shares it. */
interface LoadedModule {
  readonly lib: Pkcs11;
  initialized: boolean;
  users: number;
}
const modules = new Map<string, LoadedModule>();

function isPkcs11Error(e: unknown): e is Error & { code: number } {
  const code = (e as { code?: unknown } | null)?.code;
  return e instanceof Error && typeof code === 'number' && code !== 0;
}

/** Return values after which a fresh session (and, failing that, a fresh module) may succeed. */
function recoverable(code: number): boolean {
  const p = pkcs11js();
  return [
    p.CKR_SESSION_HANDLE_INVALID,
    p.CKR_SESSION_CLOSED,
    p.CKR_USER_NOT_LOGGED_IN,
    p.CKR_OBJECT_HANDLE_INVALID,
    p.CKR_KEY_HANDLE_INVALID,
    p.CKR_OPERATION_ACTIVE,
    p.CKR_TOKEN_NOT_PRESENT,
    p.CKR_TOKEN_NOT_RECOGNIZED,
    p.CKR_DEVICE_REMOVED,
    p.CKR_DEVICE_ERROR,
    p.CKR_SLOT_ID_INVALID,
    p.CKR_CRYPTOKI_NOT_INITIALIZED,
  ].includes(code);
}

function pinRefused(code: number): boolean {
  const p = pkcs11js();
  return [p.CKR_PIN_INCORRECT, p.CKR_PIN_INVALID, p.CKR_PIN_LEN_RANGE, p.CKR_PIN_EXPIRED, p.CKR_PIN_LOCKED].includes(code);
}

/** A CK_ULONG attribute as pkcs11js returns it: native-endian bytes of the platform's size. */
function ulong(b: Buffer): number {
  return b.length >= 8 ? Number(b.readBigUInt64LE(0)) : b.readUInt32LE(0);
}

function slotId(handle: Handle): number {
  return ulong(handle);
}

/**
 * The token session behind one CA key. Every failure goes through #fail, which turns return
 * values into AuthErrors naming the CKR_ code; the PIN is passed to C_Login and nowhere else.
 */
class TokenKey {
  readonly #o: Pkcs11SignerOptions;
  readonly #what: string;
  #module: LoadedModule | undefined;
  #session: Handle | undefined;
  #key: Handle | undefined;
  #publicKey: PublicKey | undefined;

  constructor(options: Pkcs11SignerOptions) {
    this.#o = options;
    const token = options.tokenLabel !== undefined ? `token ${JSON.stringify(options.tokenLabel)}` : `slot ${options.slot}`;
    this.#what = `${options.purpose ?? 'CA'} key ${JSON.stringify(options.keyLabel)} in ${token} of ${options.module}`;
  }

  get what(): string {
    return this.#what;
  }

  get publicKey(): PublicKey {
    if (this.#publicKey === undefined) throw new Error('ca: internal: PKCS#11 key not opened');
    return this.#publicKey;
  }

  #fail(e: unknown, step: string): never {
    if (e instanceof AuthError) throw e;
    const name = isPkcs11Error(e) ? describeReturnValue(e.message, e.code) : (e as Error).message;
    if (isPkcs11Error(e) && pinRefused(e.code)) {
      throw new AuthError('ERR_CONFIG', `ca: the token refused the PIN for the ${this.#what} (${name}); check the configured PIN`, { reason: 'pin' });
    }
    throw new AuthError('ERR_UNAVAILABLE', `ca: ${step} failed for the ${this.#what}: ${name}`, { reason: 'unavailable' });
  }

  #loadModule(): LoadedModule {
    let m = modules.get(this.#o.module);
    if (m === undefined) {
      let api: Pkcs11Js;
      try {
        api = pkcs11js();
      } catch (e) {
        throw new AuthError('ERR_CONFIG', `ca: the PKCS#11 binding (pkcs11js) did not load; was its native build allowed at install? ${(e as Error).message}`);
      }
      const lib = new api.PKCS11();
      try {
        lib.load(this.#o.module);
      } catch (e) {
        throw new AuthError('ERR_CONFIG', `ca: cannot load the PKCS#11 module ${this.#o.module}: ${(e as Error).message}`);
      }
      m = { lib, initialized: false, users: 0 };
      modules.set(this.#o.module, m);
    }
    if (!m.initialized) {
      try {
        m.lib.C_Initialize();
      } catch (e) {
        if (!isPkcs11Error(e) || e.code !== pkcs11js().CKR_CRYPTOKI_ALREADY_INITIALIZED) this.#fail(e, 'C_Initialize');
      }
      m.initialized = true;
    }
    return m;
  }

  #findSlot(lib: Pkcs11): Handle {
    let slots: Handle[];
    try {
      slots = lib.C_GetSlotList(true);
    } catch (e) {
      this.#fail(e, 'C_GetSlotList');
    }
    const found = slots.filter((s) =>
      this.#o.tokenLabel !== undefined ? lib.C_GetTokenInfo(s).label.trimEnd() === this.#o.tokenLabel : slotId(s) === this.#o.slot,
    );
    if (found.length === 1) return found[0]!;
    const where = this.#o.tokenLabel !== undefined ? `token labelled ${JSON.stringify(this.#o.tokenLabel)}` : `token in slot ${this.#o.slot}`;
    if (found.length === 0) throw new AuthError('ERR_CONFIG', `ca: no ${where} in ${this.#o.module} (${slots.length} token(s) present)`);
    throw new AuthError('ERR_CONFIG', `ca: ${found.length} tokens match ${where}; give slot instead`);
  }

  #findOne(lib: Pkcs11, session: Handle, template: import('pkcs11js').Template): Handle[] {
    lib.C_FindObjectsInit(session, template);
    try {
      return lib.C_FindObjects(session, 2);
    } finally {
      lib.C_FindObjectsFinal(session);
    }
  }

  /** Opens a session, logs in and finds the key; a reopen must find the same public key. */
  open(): void {
    const p = pkcs11js();
    this.#module ??= (() => {
      const m = this.#loadModule();
      m.users += 1;
      return m;
    })();
    if (!this.#module.initialized) this.#loadModule();
    const lib = this.#module.lib;
    let slot: Handle;
    try {
      slot = this.#findSlot(lib);
    } catch (e) {
      this.#fail(e, 'finding the token');
    }
    let session: Handle;
    try {
      session = lib.C_OpenSession(slot, p.CKF_SERIAL_SESSION);
    } catch (e) {
      this.#fail(e, 'C_OpenSession');
    }
    try {
      try {
        lib.C_Login(session, p.CKU_USER, this.#o.pin);
      } catch (e) {
        // Login is per token and application: another CA key's session may have done it.
        if (!isPkcs11Error(e) || e.code !== p.CKR_USER_ALREADY_LOGGED_IN) this.#fail(e, 'C_Login');
      }
      const keys = this.#findOne(lib, session, [
        { type: p.CKA_CLASS, value: p.CKO_PRIVATE_KEY },
        { type: p.CKA_LABEL, value: this.#o.keyLabel },
      ]);
      if (keys.length !== 1) {
        throw new AuthError('ERR_CONFIG', `ca: ${keys.length === 0 ? 'no' : 'more than one'} private key labelled ${JSON.stringify(this.#o.keyLabel)} for the ${this.#what}`);
      }
      const key = keys[0]!;
      const [id] = lib.C_GetAttributeValue(session, key, [{ type: p.CKA_ID }]);
      const byId = id?.value !== undefined && id.value.length > 0;
      const publics = this.#findOne(lib, session, [
        { type: p.CKA_CLASS, value: p.CKO_PUBLIC_KEY },
        byId ? { type: p.CKA_ID, value: id.value! } : { type: p.CKA_LABEL, value: this.#o.keyLabel },
      ]);
      if (publics.length !== 1) {
        throw new AuthError('ERR_CONFIG', `ca: ${publics.length === 0 ? 'no' : 'more than one'} public key object with the ${byId ? 'CKA_ID' : 'label'} of the ${this.#what}`);
      }
      const attrs = lib.C_GetAttributeValue(session, publics[0]!, [{ type: p.CKA_KEY_TYPE }, { type: p.CKA_EC_PARAMS }, { type: p.CKA_EC_POINT }]);
      const keyType = ulong(attrs[0]!.value as Buffer);
      const publicKey = ecKeyFromAttributes(keyType, attrs[1]!.value as Buffer, attrs[2]!.value as Buffer, this.#what);
      if (this.#publicKey !== undefined && !samePublicKey(this.#publicKey, publicKey)) {
        throw new AuthError('ERR_UNAVAILABLE', `ca: the ${this.#what} changed since start; refusing to sign with a different key`);
      }
      this.#publicKey = publicKey;
      this.#key = key;
      this.#session = session;
    } catch (e) {
      try {
        lib.C_CloseSession(session);
      } catch {
        // The session may already be gone with the token; nothing else to release.
      }
      this.#fail(e, 'opening the key');
    }
  }

  /** C_GetSessionInfo: cheap, and fails the way C_Sign would when the token went away. */
  #probeOnce(): void {
    const lib = this.#module?.lib;
    if (lib === undefined || this.#session === undefined) throw new AuthError('ERR_UNAVAILABLE', `ca: the ${this.#what} is closed`);
    lib.C_GetSessionInfo(this.#session);
  }

  #signOnce(mechanism: number, data: Buffer): Buffer {
    const lib = this.#module?.lib;
    if (lib === undefined || this.#session === undefined || this.#key === undefined) throw new AuthError('ERR_UNAVAILABLE', `ca: the ${this.#what} is closed`);
    lib.C_SignInit(this.#session, { mechanism }, this.#key);
    return Buffer.from(lib.C_Sign(this.#session, data, Buffer.alloc(512)));
  }

  /**
   * C_Sign with one recovery: after a return value that a restarted token or a lost session
   * gives, the session is reopened (and the module re-initialised if that fails too).
   */
  sign(mechanism: number, data: Buffer): Buffer {
    return this.#withRecovery('C_Sign', () => this.#signOnce(mechanism, data));
  }

  /** Whether the token still answers, recovering the session as sign() would; throws if not. */
  check(): void {
    this.#withRecovery('C_GetSessionInfo', () => this.#probeOnce());
  }

  #withRecovery<T>(step: string, f: () => T): T {
    try {
      return f();
    } catch (e) {
      if (!isPkcs11Error(e) || !recoverable(e.code)) this.#fail(e, step);
      this.#o.log?.(`ca: ${describeReturnValue(e.message, e.code)} from the ${this.#what}; reopening the session`);
    }
    this.#dropSession();
    try {
      this.open();
    } catch (e) {
      if (!(e instanceof AuthError) || e.code !== 'ERR_UNAVAILABLE') throw e;
      this.#reinitialize();
      this.open();
    }
    try {
      return f();
    } catch (e) {
      this.#fail(e, step);
    }
  }

  #dropSession(): void {
    const session = this.#session;
    this.#session = undefined;
    this.#key = undefined;
    if (session === undefined || this.#module === undefined) return;
    try {
      this.#module.lib.C_CloseSession(session);
    } catch {
      // Already invalid: that is why we are here.
    }
  }

  /** Finalize and initialize again: what a module needs after its device went away and back. */
  #reinitialize(): void {
    const m = this.#module;
    if (m === undefined) return;
    this.#o.log?.(`ca: re-initialising ${this.#o.module} for the ${this.#what}`);
    try {
      m.lib.C_Finalize();
    } catch {
      // Not initialised any more is the state we want.
    }
    m.initialized = false;
  }

  close(): void {
    this.#dropSession();
    const m = this.#module;
    this.#module = undefined;
    if (m === undefined) return;
    m.users -= 1;
    if (m.users > 0) return;
    modules.delete(this.#o.module);
    try {
      if (m.initialized) m.lib.C_Finalize();
      m.lib.close();
    } catch {
      // Closing at shutdown: nothing left to do with an error.
    }
  }
}

function samePublicKey(a: PublicKey, b: PublicKey): boolean {
  if (a.type !== b.type) return false;
  const bytes = (k: PublicKey): Uint8Array => ('point' in k ? k.point : 'publicKey' in k ? k.publicKey : new Uint8Array());
  return Buffer.from(bytes(a)).equals(Buffer.from(bytes(b)));
}

/**
 * Opens a CA key held in a PKCS#11 token and returns a Signer over it. The token signs; this
 * process only hashes (ECDSA) and checks each signature against the public key before handing
 * it out, so a faulty token cannot put a bad signature into a certificate.
 */
export function openPkcs11Signer(options: Pkcs11SignerOptions): Pkcs11Signer {
  if (typeof options?.module !== 'string' || options.module === '') throw new TypeError('ca: "module" expected a library path');
  if ((options.tokenLabel === undefined) === (options.slot === undefined)) throw new TypeError('ca: give exactly one of "tokenLabel" and "slot"');
  if (typeof options.keyLabel !== 'string' || options.keyLabel === '') throw new TypeError('ca: "keyLabel" expected a non-empty string');
  if (typeof options.pin !== 'string' || options.pin === '') throw new TypeError('ca: "pin" expected a non-empty string');
  const token = new TokenKey(options);
  try {
    token.open();
  } catch (e) {
    token.close();
    throw e;
  }
  const publicKey = token.publicKey;
  const algorithm: SignatureAlgorithm = publicKey.type as SignatureAlgorithm;
  const crypto = options.crypto;
  const sign = (data: Uint8Array, requested?: SignatureAlgorithm): SshSignature => {
    if (requested !== undefined && requested !== algorithm) {
      throw new CertError('ERR_ALGORITHM_MISMATCH', `cert-core: a ${publicKey.type} key cannot sign as ${requested}`, { what: requested });
    }
    let raw: Buffer;
    if (publicKey.type === 'ssh-ed25519') raw = token.sign(CKM_EDDSA, Buffer.from(data));
    else if (publicKey.type === 'ecdsa-sha2-nistp256') raw = token.sign(pkcs11js().CKM_ECDSA, Buffer.from(crypto.hash('sha256', data)));
    else raw = token.sign(pkcs11js().CKM_ECDSA, Buffer.from(crypto.hash('sha384', data)));
    // Ed25519 and CKM_ECDSA both give 64 (P-384: 96) bytes: r || s at the curve size, which is
    // SshSignature.bytes as cert-core keeps it; encodeSignature turns the halves into mpints.
    const expected = publicKey.type === 'ecdsa-sha2-nistp384' ? 96 : 64;
    if (raw.length !== expected) {
      throw new AuthError('ERR_UNAVAILABLE', `ca: the ${token.what} returned a ${raw.length}-byte signature, expected ${expected}`);
    }
    const signature: SshSignature = { algorithm, bytes: new Uint8Array(raw) };
    if (!verifySignature(crypto, publicKey, signature, data)) {
      throw new AuthError('ERR_UNAVAILABLE', `ca: the ${token.what} returned a signature that does not verify`);
    }
    return signature;
  };
  const description = `pkcs11:${options.module} ${options.tokenLabel !== undefined ? `token ${JSON.stringify(options.tokenLabel)}` : `slot ${options.slot}`} key ${JSON.stringify(options.keyLabel)}`;
  // Frozen like the file signers: a holder cannot swap sign() for everyone else.
  return Object.freeze({ publicKey, sign, description, check: () => token.check(), close: () => token.close() });
}
