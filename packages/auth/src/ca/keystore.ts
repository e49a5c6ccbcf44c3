import { chmodSync, closeSync, existsSync, fsyncSync, linkSync, mkdirSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import {
  fingerprintSha256,
  formatAuthorizedKeyLine,
  formatCertAuthorityLine,
  formatPrivateKey,
  formatPublicKey,
  generateKey,
  keySigner,
  parsePrivateKey,
  parsePublicKeyText,
  publicKeysEqual,
  rsaBits,
} from '@portcullis/cert-core';
import type { CryptoBackend, PlainKeyType, PublicKey, Signer, SigningPrivateKey } from '@portcullis/cert-core';
import { AuthError } from '../errors.js';

/**
 * The three CAs, each its own key, so that trusting one never means trusting another:
 * - `user` signs the certificates engineers hold (pcsh login). Only the proxy trusts it.
 * - `upstream` signs the minute-long certificates the proxy dials targets with. Targets' sshd
 *   trusts only it (TrustedUserCAKeys), so an engineer's own certificate does not open a target
 *   directly and cannot skip the proxy's checks and recording.
 * - `host` signs host certificates (targets, and the proxy standing in for one).
 */
export type CaKind = 'user' | 'upstream' | 'host';
export const CA_KINDS: readonly CaKind[] = ['user', 'upstream', 'host'];

export function isCaKind(s: unknown): s is CaKind {
  return typeof s === 'string' && (CA_KINDS as readonly string[]).includes(s);
}

/** What an operator may choose for a CA key. */
export type CaAlgorithm = 'ed25519' | 'ecdsa-p256' | 'ecdsa-p384' | 'rsa';

export interface CaKeySpec {
  readonly algorithm: CaAlgorithm;
  /** RSA only: at least 3072 (default 3072). */
  readonly rsaBits?: number;
}

/**
 * `active` signs and is trusted; `standby` is trusted (exported in the CA lines) but does not
 * sign. A rotation adds a standby key, waits until every host and client trusts it, then
 * activates it; the old key stays trusted as standby until the certificates it signed expire.
 */
export type CaStatus = 'active' | 'standby';

/** Public facts about one CA key; never holds the private half. */
export interface CaKeyInfo {
  readonly kind: CaKind;
  /** First 16 hex digits of the SHA-256 of the public key blob; names the files. */
  readonly id: string;
  readonly status: CaStatus;
  readonly publicKey: PublicKey;
  /** `SHA256:...` as ssh-keygen -l prints it. */
  readonly fingerprint: string;
  /** ISO 8601. */
  readonly createdAt: string;
}

export const RSA_CA_MIN_BITS = 3072;

const TYPE_OF: Readonly<Record<CaAlgorithm, PlainKeyType>> = {
  ed25519: 'ssh-ed25519',
  'ecdsa-p256': 'ecdsa-sha2-nistp256',
  'ecdsa-p384': 'ecdsa-sha2-nistp384',
  rsa: 'ssh-rsa',
};

export function isCaAlgorithm(s: string): s is CaAlgorithm {
  return Object.hasOwn(TYPE_OF, s);
}

/** The file listing every trusted CA key; the keys themselves sit next to it. */
interface IndexFile {
  readonly version: 1;
  readonly keys: readonly IndexEntry[];
}

interface IndexEntry {
  readonly kind: CaKind;
  readonly id: string;
  readonly status: CaStatus;
  /** The public key line, so the index can be read (and checked) without the private keys. */
  readonly publicKey: string;
  readonly createdAt: string;
}

export interface OpenCaKeystoreOptions {
  /** The service's state directory; keys go to `<stateDir>/ca/` (mode 0700). */
  readonly stateDir: string;
  readonly crypto: CryptoBackend;
  /** Key made for a kind that has none yet (default ed25519 for each). */
  readonly user?: CaKeySpec;
  readonly upstream?: CaKeySpec;
  readonly host?: CaKeySpec;
  /**
   * Encrypts new key files and decrypts existing ones (bcrypt_pbkdf + aes256-ctr, as ssh-keygen
   * -N). Without it the files are plain OpenSSH keys protected by their mode alone.
   */
  readonly passphrase?: string;
  /** The wall clock (milliseconds); only used for createdAt. */
  readonly now?: () => number;
  /** Operational messages (kind, id, fingerprint, path); never key material. */
  readonly log?: (message: string) => void;
  /** Told when a key is made or the trusted set changes (for the audit events ca.created and ca.trust_changed). */
  readonly onChange?: (change: CaKeyChange) => void;
  /**
   * Keys held outside this directory (a PKCS#11 token, ca/pkcs11.ts) by kind. Such a key is
   * listed and trusted like a file key but has no private key file: the first one of a kind
   * becomes active; one added to a kind that already has keys is standby until activated,
   * so hosts learn to trust it before it signs (a rotation).
   */
  readonly tokenSigners?: Partial<Readonly<Record<CaKind, Signer>>>;
}

/** A change to the key store, as the audit log wants it. */
export interface CaKeyChange {
  readonly event: 'ca.created' | 'ca.trust_changed';
  readonly action: 'created' | 'staged' | 'imported' | 'activated' | 'retired';
  readonly kind: CaKind;
  readonly id: string;
  readonly fingerprint: string;
}

const KEY_FILE_MODE = 0o600;
const DIR_MODE = 0o700;

function configError(message: string): AuthError {
  return new AuthError('ERR_CONFIG', `ca: ${message}`);
}

function checkSpec(spec: CaKeySpec, what: string): { type: PlainKeyType; bits?: number } {
  if (!isCaAlgorithm(spec.algorithm)) {
    throw configError(`${what}.algorithm ${JSON.stringify(spec.algorithm)} is not one of ${Object.keys(TYPE_OF).join(', ')}`);
  }
  const type = TYPE_OF[spec.algorithm];
  if (type !== 'ssh-rsa') {
    if (spec.rsaBits !== undefined) throw configError(`${what}.rsaBits applies to rsa only, not ${spec.algorithm}`);
    return { type };
  }
  const bits = spec.rsaBits ?? RSA_CA_MIN_BITS;
  if (!Number.isInteger(bits) || bits < RSA_CA_MIN_BITS || bits > 8192) {
    throw configError(`${what}.rsaBits expected an integer in ${RSA_CA_MIN_BITS}..8192, got ${bits}`);
  }
  return { type, bits };
}

/** Refuses a key that may not be a CA: security-key handles, RSA under 3072 bits. */
function checkCaKey(key: PublicKey, where: string): void {
  const types: readonly string[] = [...Object.values(TYPE_OF), 'ecdsa-sha2-nistp521'];
  if (!types.includes(key.type)) {
    throw configError(`${where} is a ${key.type} key, which cannot be a CA`);
  }
  if (key.type === 'ssh-rsa' && rsaBits(key.n) < RSA_CA_MIN_BITS) {
    throw configError(`${where} is a ${rsaBits(key.n)}-bit RSA key; a CA needs at least ${RSA_CA_MIN_BITS} bits`);
  }
}

function keyId(crypto: CryptoBackend, key: PublicKey): string {
  // The fingerprint's base64 has '/' and '+', which do not belong in file names.
  const digest = fingerprintSha256(crypto, key).slice('SHA256:'.length);
  return Buffer.from(digest, 'base64').subarray(0, 8).toString('hex');
}

/** Writes a file that must not exist yet, with `mode` from the first byte (no umask window). */
function writeNewFile(path: string, data: string, mode: number): void {
  const fd = openSync(path, 'wx', mode);
  try {
    writeSync(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  chmodSync(path, mode);
}

function checkMode(path: string, allowed: number, what: string): void {
  const mode = statSync(path).mode & 0o777;
  if ((mode & ~allowed) !== 0) {
    throw configError(`${what} ${path} has mode ${mode.toString(8).padStart(4, '0')}; expected ${allowed.toString(8).padStart(4, '0')} or stricter (chmod it, then restart)`);
  }
}

function parseIndex(text: string, path: string): IndexFile {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw configError(`${path} is not JSON: ${(e as Error).message}`);
  }
  const v = value as Partial<IndexFile> | null;
  if (v === null || typeof v !== 'object' || v.version !== 1 || !Array.isArray(v.keys)) {
    throw configError(`${path} expected {"version": 1, "keys": [...]}`);
  }
  for (const [i, k] of v.keys.entries()) {
    const e = k as Partial<IndexEntry> | null;
    const ok =
      e !== null &&
      typeof e === 'object' &&
      isCaKind(e.kind) &&
      typeof e.id === 'string' &&
      /^[0-9a-f]{16}$/.test(e.id) &&
      (e.status === 'active' || e.status === 'standby') &&
      typeof e.publicKey === 'string' &&
      typeof e.createdAt === 'string';
    if (!ok) throw configError(`${path}: keys[${i}] expected {kind: user|upstream|host, id: 16 hex digits, status: active|standby, publicKey, createdAt}`);
  }
  return v as IndexFile;
}

/**
 * The CA keys on disk: `<stateDir>/ca/index.json` lists them, `<kind>-ca-<id>` holds each
 * private key in OpenSSH format (ssh-keygen -y reads it), `<kind>-ca-<id>.pub` its public key.
 * Private keys live only inside the signers this object hands out; nothing it returns, throws
 * or logs contains them.
 */
export class CaKeystore {
  readonly dir: string;
  readonly #crypto: CryptoBackend;
  readonly #passphrase: string | undefined;
  readonly #now: () => number;
  readonly #log: (message: string) => void;
  readonly #onChange: (change: CaKeyChange) => void;
  readonly #tokenSigners: Partial<Readonly<Record<CaKind, Signer>>>;
  #entries: IndexEntry[] = [];
  readonly #signers = new Map<string, Signer>();

  private constructor(options: OpenCaKeystoreOptions) {
    this.dir = join(options.stateDir, 'ca');
    this.#crypto = options.crypto;
    this.#passphrase = options.passphrase;
    this.#now = options.now ?? Date.now;
    this.#log = options.log ?? (() => {});
    this.#onChange = options.onChange ?? (() => {});
    this.#tokenSigners = options.tokenSigners ?? {};
  }

  #changed(action: CaKeyChange['action'], e: IndexEntry, fingerprint: string): void {
    const event = action === 'created' || action === 'staged' || action === 'imported' ? 'ca.created' : 'ca.trust_changed';
    this.#log(`ca: ${action} ${e.kind} CA ${e.id} (${fingerprint})${action === 'staged' || action === 'imported' ? ' as standby' : ''}`);
    this.#onChange({ event, action, kind: e.kind, id: e.id, fingerprint });
    // A new trusted key changes the trusted set as well.
    if (action === 'staged' || action === 'imported') this.#onChange({ event: 'ca.trust_changed', action, kind: e.kind, id: e.id, fingerprint });
  }

  /**
   * Opens the keystore, creating the directory and a CA key for each kind that has none (first
   * start). Loads and checks every listed key: a missing file, a loose file mode, a key that
   * does not match the index, or a kind with no or several active keys stops the start.
   */
  static open(options: OpenCaKeystoreOptions): CaKeystore {
    if (typeof options?.stateDir !== 'string' || options.stateDir === '') throw new TypeError('ca: "stateDir" expected a non-empty string');
    if (typeof options.crypto?.randomBytes !== 'function') throw new TypeError('ca: "crypto" expected a CryptoBackend');
    const specs = {
      user: checkSpec(options.user ?? { algorithm: 'ed25519' }, 'user'),
      upstream: checkSpec(options.upstream ?? { algorithm: 'ed25519' }, 'upstream'),
      host: checkSpec(options.host ?? { algorithm: 'ed25519' }, 'host'),
    };
    const ks = new CaKeystore(options);
    if (!existsSync(options.stateDir)) mkdirSync(options.stateDir, { recursive: true, mode: DIR_MODE });
    if (!existsSync(ks.dir)) {
      mkdirSync(ks.dir, { mode: DIR_MODE });
      chmodSync(ks.dir, DIR_MODE);
    }
    checkMode(ks.dir, DIR_MODE, 'CA directory');
    ks.#load();
    ks.#createMissing(specs);
    ks.#addTokenKeys();
    return ks;
  }

  /**
   * Re-reads the index from disk, for replicas sharing the state directory: a rotation step
   * made by one replica reaches the others (ca/rotation.ts), and a step starts from what is on
   * disk rather than from a stale copy it would write back. On failure nothing changes here.
   */
  reload(): void {
    const entries = this.#entries;
    const signers = new Map(this.#signers);
    try {
      this.#load();
    } catch (e) {
      this.#entries = entries;
      this.#signers.clear();
      for (const [id, s] of signers) this.#signers.set(id, s);
      throw e;
    }
    // A signer of a key no longer listed (retired elsewhere) must not linger.
    for (const id of [...this.#signers.keys()]) if (!this.#entries.some((e) => e.id === id)) this.#signers.delete(id);
  }

  get #indexPath(): string {
    return join(this.dir, 'index.json');
  }

  #keyPath(kind: CaKind, id: string): string {
    return join(this.dir, `${kind}-ca-${id}`);
  }

  #load(): void {
    if (!existsSync(this.#indexPath)) return;
    checkMode(this.#indexPath, KEY_FILE_MODE, 'CA index');
    const index = parseIndex(readFileSync(this.#indexPath, 'utf8'), this.#indexPath);
    this.#signers.clear();
    for (const entry of index.keys) this.#signers.set(entry.id, this.#tokenSigner(entry) ?? this.#loadKey(entry));
    this.#entries = [...index.keys];
    for (const kind of CA_KINDS) {
      const active = this.#entries.filter((e) => e.kind === kind && e.status === 'active');
      if (this.#entries.some((e) => e.kind === kind) && active.length !== 1) {
        throw configError(`${this.#indexPath} lists ${active.length} active ${kind} CA keys; exactly one must be active`);
      }
    }
  }

  #loadKey(entry: IndexEntry): Signer {
    const path = this.#keyPath(entry.kind, entry.id);
    if (!existsSync(path)) throw configError(`${entry.kind} CA key ${entry.id} is listed in ${this.#indexPath} but ${path} is missing`);
    checkMode(path, KEY_FILE_MODE, 'CA key file');
    let key: SigningPrivateKey;
    try {
      const parsed = parsePrivateKey(readFileSync(path, 'utf8'), this.#passphrase === undefined ? {} : { passphrase: this.#passphrase });
      if (parsed.key.type.startsWith('sk-')) throw configError(`${path} is a security-key handle, which cannot sign here`);
      key = parsed.key as SigningPrivateKey;
    } catch (e) {
      if (e instanceof AuthError) throw e;
      // cert-core's messages name fields and sizes, never key bytes.
      throw configError(`cannot read ${entry.kind} CA key ${path}: ${(e as Error).message}`);
    }
    const signer = Object.freeze(keySigner(this.#crypto, key));
    let listed: PublicKey;
    try {
      listed = parsePublicKeyText(entry.publicKey, `${this.#indexPath} ${entry.id}`).key;
    } catch (e) {
      throw configError(`${this.#indexPath}: public key of ${entry.id} does not parse: ${(e as Error).message}`);
    }
    if (!publicKeysEqual(listed, signer.publicKey) || keyId(this.#crypto, signer.publicKey) !== entry.id) {
      throw configError(`${path} does not hold the key ${this.#indexPath} lists as ${entry.kind} CA ${entry.id}`);
    }
    checkCaKey(signer.publicKey, path);
    return signer;
  }

  /**
   * Writes the index with a temp file and rename, so a crash leaves the old or the new index.
   * `create` links instead of renaming: when two processes start on an empty directory at once,
   * the second link fails and that process adopts the first one's keys.
   */
  #writeIndex(entries: readonly IndexEntry[], create: boolean): boolean {
    const tmp = `${this.#indexPath}.${process.pid}.${this.#crypto.randomBytes(4).reduce((s, b) => s + b.toString(16).padStart(2, '0'), '')}.tmp`;
    writeNewFile(tmp, JSON.stringify({ version: 1, keys: entries } satisfies IndexFile, null, 2) + '\n', KEY_FILE_MODE);
    try {
      if (!create) {
        renameSync(tmp, this.#indexPath);
        return true;
      }
      try {
        linkSync(tmp, this.#indexPath);
        return true;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
        throw e;
      }
    } finally {
      if (existsSync(tmp)) unlinkSync(tmp);
    }
  }

  #newKeyFiles(kind: CaKind, key: SigningPrivateKey): IndexEntry {
    // Frozen: whoever holds a signer cannot swap its sign function for everyone else.
    const signer = Object.freeze(keySigner(this.#crypto, key));
    const id = keyId(this.#crypto, signer.publicKey);
    const comment = `portcullis-${kind}-ca-${id}`;
    const path = this.#keyPath(kind, id);
    const text = formatPrivateKey(key, {
      crypto: this.#crypto,
      comment,
      ...(this.#passphrase === undefined ? {} : { passphrase: this.#passphrase }),
    });
    writeNewFile(path, text, KEY_FILE_MODE);
    const publicLine = formatPublicKey(signer.publicKey, comment);
    writeNewFile(`${path}.pub`, publicLine + '\n', 0o644);
    this.#signers.set(id, signer);
    return { kind, id, status: 'standby', publicKey: publicLine, createdAt: new Date(this.#now()).toISOString() };
  }

  /** The token signer that holds a listed key, if one was given for its kind. */
  #tokenSigner(entry: IndexEntry): Signer | undefined {
    const signer = this.#tokenSigners[entry.kind];
    return signer !== undefined && keyId(this.#crypto, signer.publicKey) === entry.id ? signer : undefined;
  }

  /** Lists a token key: only its public key is written here (for ssh-keygen and operators). */
  #tokenEntry(kind: CaKind, signer: Signer): IndexEntry {
    checkCaKey(signer.publicKey, `the ${kind} CA key in the token`);
    const id = keyId(this.#crypto, signer.publicKey);
    const publicLine = formatPublicKey(signer.publicKey, `portcullis-${kind}-ca-${id}`);
    const pub = `${this.#keyPath(kind, id)}.pub`;
    try {
      writeNewFile(pub, publicLine + '\n', 0o644);
    } catch (e) {
      // Written by an earlier start or by a replica starting at the same moment: same key, same line.
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    this.#signers.set(id, signer);
    return { kind, id, status: 'standby', publicKey: publicLine, createdAt: new Date(this.#now()).toISOString() };
  }

  /** A configured token key that the index does not list yet joins its kind as standby. */
  #addTokenKeys(): void {
    for (const kind of CA_KINDS) {
      const signer = this.#tokenSigners[kind];
      if (signer === undefined) continue;
      const id = keyId(this.#crypto, signer.publicKey);
      const listed = this.#entries.find((e) => e.id === id);
      if (listed !== undefined && listed.kind !== kind) throw configError(`the ${kind} CA key in the token is already the ${listed.kind} CA ${id}`);
      if (listed !== undefined) continue;
      const info = this.#commit(this.#tokenEntry(kind, signer), 'imported');
      this.#log(`ca: the ${kind} CA key in the token (${info.fingerprint}) is trusted but not signing yet; activate ${id} once hosts trust it`);
    }
  }

  #generate(kind: CaKind, spec: { type: PlainKeyType; bits?: number }): IndexEntry {
    const key = generateKey(this.#crypto, spec.type, spec.bits === undefined ? {} : { bits: spec.bits });
    return this.#newKeyFiles(kind, key);
  }

  /**
   * Makes the keys of the kinds that have none, all in one index write: on an empty directory
   * that write is a link, so of two processes starting at once one wins and the other adopts
   * its keys instead of writing a second set.
   */
  #createMissing(specs: Readonly<Record<CaKind, { type: PlainKeyType; bits?: number }>>): void {
    const missing = CA_KINDS.filter((kind) => !this.#entries.some((e) => e.kind === kind));
    if (missing.length === 0) return;
    // A store made before a kind existed (the upstream CA) gets that kind here, audited like a
    // first start; hosts trust it once their next refresh of GET /v1/ca has run.
    if (this.#entries.length > 0) this.#log(`ca: this store has no ${missing.join(', ')} CA yet; creating it`);
    const created = missing.map((kind) => {
      const token = this.#tokenSigners[kind];
      return { ...(token === undefined ? this.#generate(kind, specs[kind]) : this.#tokenEntry(kind, token)), status: 'active' as const };
    });
    const entries = [...this.#entries, ...created];
    if (this.#writeIndex(entries, !existsSync(this.#indexPath))) {
      this.#entries = entries;
      for (const e of created) this.#changed('created', e, this.#info(e).fingerprint);
      return;
    }
    // A token key has the same id in both processes: its .pub is the winner's too, so it stays.
    for (const e of created) if (this.#tokenSigners[e.kind] === undefined) this.#discard(e);
    this.#load();
    this.#createMissing(specs);
  }

  #discard(entry: IndexEntry): void {
    const path = this.#keyPath(entry.kind, entry.id);
    for (const p of [path, `${path}.pub`]) if (existsSync(p)) unlinkSync(p);
    this.#signers.delete(entry.id);
  }

  #info(e: IndexEntry): CaKeyInfo {
    const signer = this.#signers.get(e.id);
    if (signer === undefined) throw new Error(`ca: internal: no signer for ${e.id}`);
    return {
      kind: e.kind,
      id: e.id,
      status: e.status,
      publicKey: signer.publicKey,
      fingerprint: fingerprintSha256(this.#crypto, signer.publicKey),
      createdAt: e.createdAt,
    };
  }

  /** Every trusted key of `kind` (active first), or of every kind. */
  keys(kind?: CaKind): CaKeyInfo[] {
    return this.#entries
      .filter((e) => kind === undefined || e.kind === kind)
      .sort((a, b) => (a.status === b.status ? a.createdAt.localeCompare(b.createdAt) : a.status === 'active' ? -1 : 1))
      .map((e) => this.#info(e));
  }

  /** The key that signs certificates of `kind`. */
  active(kind: CaKind): CaKeyInfo {
    const e = this.#entries.find((x) => x.kind === kind && x.status === 'active');
    if (e === undefined) throw new AuthError('ERR_UNAVAILABLE', `ca: no active ${kind} CA key`);
    return this.#info(e);
  }

  /**
   * The signer of the active key of `kind` (cert-core's Signer: the seam an HSM-backed signer
   * will fill later). It carries only the public key and a sign function.
   */
  signer(kind: CaKind): Signer {
    const signer = this.#signers.get(this.active(kind).id);
    if (signer === undefined) throw new AuthError('ERR_UNAVAILABLE', `ca: no signer for the active ${kind} CA key`);
    return signer;
  }

  /**
   * One authorized_keys line per trusted key of a user-certificate CA (active and standby), so
   * a staged rotation reaches whoever trusts it before the new key signs anything.
   */
  authorizedKeys(kind: 'user' | 'upstream'): string {
    return this.keys(kind).map((k) => formatAuthorizedKeyLine({ key: k.publicKey, comment: `portcullis-${kind}-ca-${k.id}` }) + '\n').join('');
  }

  /**
   * What a target's sshd_config TrustedUserCAKeys file holds: the upstream CA keys, never the
   * user CA's (a target trusting the user CA would accept engineers' own certificates directly).
   */
  trustedUserCaKeys(): string {
    return this.authorizedKeys('upstream');
  }

  /** `@cert-authority <patterns> <key>` lines for every trusted host CA key, for known_hosts. */
  knownHostsLines(hostPatterns: readonly string[] = ['*']): string {
    return this.keys('host')
      .map((k) => formatCertAuthorityLine(hostPatterns, k.publicKey, `portcullis-host-ca-${k.id}`) + '\n')
      .join('');
  }

  /** Adds a new, trusted but not yet signing key of `kind` (the first step of a rotation). */
  stage(kind: CaKind, spec: CaKeySpec = { algorithm: 'ed25519' }): CaKeyInfo {
    const entry = this.#generate(kind, checkSpec(spec, kind));
    return this.#commit(entry, 'staged');
  }

  /** Adds an existing OpenSSH private key (e.g. made with ssh-keygen) as a standby key. */
  import(kind: CaKind, privateKeyText: string, passphrase?: string): CaKeyInfo {
    let key: SigningPrivateKey;
    try {
      const parsed = parsePrivateKey(privateKeyText, passphrase === undefined ? {} : { passphrase });
      if (parsed.key.type.startsWith('sk-')) throw configError('a security-key handle cannot be a CA here');
      key = parsed.key as SigningPrivateKey;
    } catch (e) {
      if (e instanceof AuthError) throw e;
      throw new AuthError('ERR_BAD_REQUEST', `ca: cannot import the ${kind} CA key: ${(e as Error).message}`);
    }
    checkCaKey(key, `imported ${kind} CA key`);
    if (this.#signers.has(keyId(this.#crypto, key))) {
      throw new AuthError('ERR_CONFLICT', `ca: that key is already CA ${keyId(this.#crypto, key)}`);
    }
    return this.#commit(this.#newKeyFiles(kind, key), 'imported');
  }

  #commit(entry: IndexEntry, verb: 'staged' | 'imported'): CaKeyInfo {
    try {
      this.#writeIndex([...this.#entries, entry], false);
    } catch (e) {
      this.#discard(entry);
      throw e;
    }
    this.#entries.push(entry);
    const info = this.#info(entry);
    this.#changed(verb, entry, info.fingerprint);
    return info;
  }

  /** Makes a standby key the signing key of its kind; the previous one becomes standby. */
  activate(id: string): CaKeyInfo {
    const target = this.#entries.find((e) => e.id === id);
    if (target === undefined) throw new AuthError('ERR_NOT_FOUND', `ca: no CA key ${JSON.stringify(id)}`);
    const entries = this.#entries.map((e) =>
      e.kind !== target.kind ? e : { ...e, status: e.id === id ? ('active' as const) : ('standby' as const) },
    );
    this.#writeIndex(entries, false);
    this.#entries = entries;
    const info = this.#info(entries.find((e) => e.id === id)!);
    this.#changed('activated', target, info.fingerprint);
    return info;
  }

  /** Stops trusting a standby key (the last step of a rotation). Its files stay for the record. */
  retire(id: string): void {
    const target = this.#entries.find((e) => e.id === id);
    if (target === undefined) throw new AuthError('ERR_NOT_FOUND', `ca: no CA key ${JSON.stringify(id)}`);
    if (target.status === 'active') throw new AuthError('ERR_CONFLICT', `ca: ${target.kind} CA ${id} is active; activate another key first`);
    const fingerprint = this.#info(target).fingerprint;
    const entries = this.#entries.filter((e) => e.id !== id);
    this.#writeIndex(entries, false);
    this.#entries = entries;
    this.#signers.delete(id);
    this.#changed('retired', target, fingerprint);
  }

  /** The private key file of a CA key, for operators (ssh-keygen -y -f PATH). */
  keyPath(id: string): string {
    const e = this.#entries.find((x) => x.id === id);
    if (e === undefined) throw new AuthError('ERR_NOT_FOUND', `ca: no CA key ${JSON.stringify(id)}`);
    return this.#keyPath(e.kind, e.id);
  }

  toJSON(): unknown {
    return { dir: this.dir, keys: this.keys().map((k) => ({ kind: k.kind, id: k.id, status: k.status, fingerprint: k.fingerprint })) };
  }
}
