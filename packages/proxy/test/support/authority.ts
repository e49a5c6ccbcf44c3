// STAND-IN FOR AUTH, for the proxy's tests only. It holds real CA keys and signs real
// certificates, but its inventory, users, locks and KRL live in memory. Replace it with the
// HTTP AuthorityClient against a real auth service once auth's HTTP API (packages/auth/src/http,
// service.ts) is finished; the contract is the AuthorityClient interface, nothing here.
import { writeFileSync } from 'node:fs';
import {
  EMPTY_KRL,
  KrlBuilder,
  NO_PERMISSIONS,
  encodeKrl,
  formatCertificate,
  formatPrivateKey,
  generateKey,
  keySigner,
  optionsFromPermissions,
  parseCertificateText,
  publicPart,
  signCertificate,
} from '@portcullis/cert-core';
import type { Certificate, Krl, Permissions, PublicKey, SigningPrivateKey } from '@portcullis/cert-core';
import { nodeCrypto } from '@portcullis/cert-core/node';
import { ProxyError, ambiguousHostError, unknownHostError } from '../../src/index.js';
import type { AuthorityClient, AuthorityNotice, IssuedCertificate, TargetHost, UserAccess } from '../../src/index.js';

export function newKey(): SigningPrivateKey {
  return generateKey(nodeCrypto, 'ssh-ed25519');
}

const nowSeconds = (): bigint => BigInt(Math.floor(Date.now() / 1000));

export interface UserCertificateOptions {
  readonly principals: readonly string[];
  /** Default `<user> req=test`. */
  readonly keyId?: string;
  /** Seconds from now; negative for an expired certificate. Default 300. */
  readonly validFor?: number;
  readonly validAfter?: bigint;
  readonly permissions?: Partial<Permissions>;
  /** Sign with this CA instead of the trusted user CA. */
  readonly ca?: SigningPrivateKey;
}

export class StandInAuthority implements AuthorityClient {
  /** Signs the certificates clients hold; the proxy trusts it, targets do not. */
  readonly userCA = newKey();
  /** Signs what the proxy dials targets with; the fixture's targets trust only this one, as enrolled hosts do. */
  readonly upstreamCA = newKey();
  readonly hostCA = newKey();
  readonly hosts: TargetHost[] = [];
  readonly users = new Map<string, UserAccess>();
  readonly locked = new Map<string, string>();
  /** What upstreamCertificate was asked, in order. */
  readonly upstreamRequests: { user: string; login: string; host: string }[] = [];
  /** Names jumpHostCertificate was asked for. */
  readonly jumpRequests: string[] = [];
  krlFetches = 0;
  #serial = 1000n;
  #krl: Krl = EMPTY_KRL;
  #krlVersion = 1;
  readonly #listeners = new Set<(n: AuthorityNotice) => void>();
  /** Set to make the next calls fail as if auth were down. */
  down = false;

  constructor(users: readonly UserAccess[]) {
    for (const u of users) this.users.set(u.user, u);
  }

  nextSerial(): bigint {
    return ++this.#serial;
  }

  // --- AuthorityClient -------------------------------------------------------------------

  async userCAs(): Promise<readonly PublicKey[]> {
    this.#check();
    return [publicPart(this.userCA)];
  }

  async hostCAs(): Promise<readonly PublicKey[]> {
    this.#check();
    return [publicPart(this.hostCA)];
  }

  async krl(etag?: string): Promise<{ readonly bytes: Uint8Array; readonly etag: string } | 'unchanged'> {
    this.#check();
    this.krlFetches++;
    const current = `"krl-${this.#krlVersion}"`;
    if (etag === current) return 'unchanged';
    return { bytes: this.krlBytes(), etag: current };
  }

  async resolveHost(query: string): Promise<TargetHost> {
    this.#check();
    const exact = this.hosts.find((h) => h.name === query);
    if (exact) return exact;
    // Short names: the first label of a registered name.
    const matches = this.hosts.filter((h) => h.name.split('.')[0] === query);
    if (matches.length === 1) return matches[0]!;
    if (matches.length > 1) throw ambiguousHostError(query, matches.map((h) => h.name));
    throw unknownHostError(query);
  }

  async access(user: string): Promise<UserAccess> {
    this.#check();
    const lock = this.locked.get(user);
    if (lock !== undefined) throw new ProxyError('ERR_ACCESS_DENIED', `user ${JSON.stringify(user)} is locked: ${lock}`);
    const a = this.users.get(user);
    if (a === undefined) throw new ProxyError('ERR_ACCESS_DENIED', `user ${JSON.stringify(user)} is unknown`);
    return a;
  }

  async upstreamCertificate(req: { user: string; login: string; host: string; publicKey: PublicKey; requestId: string }): Promise<IssuedCertificate> {
    this.#check();
    const access = await this.access(req.user);
    if (!access.logins.includes(req.login)) {
      throw new ProxyError('ERR_ACCESS_DENIED', `${JSON.stringify(req.user)} may not log in as ${JSON.stringify(req.login)} on ${JSON.stringify(req.host)}`);
    }
    this.upstreamRequests.push({ user: req.user, login: req.login, host: req.host });
    const now = nowSeconds();
    const serial = this.nextSerial();
    // As auth's decideUpstreamCertificate: exactly the login, two minutes, the roles' forwarding.
    const cert = signCertificate(
      {
        key: req.publicKey,
        kind: 'user',
        serial,
        keyId: `${req.user} req=${req.requestId} via=test-proxy`,
        principals: [req.login],
        validAfter: now - 60n,
        validBefore: now + 60n,
        ...optionsFromPermissions({ ...NO_PERMISSIONS, pty: true, portForwarding: access.portForwarding, agentForwarding: access.agentForwarding, x11Forwarding: access.x11Forwarding }),
      },
      keySigner(nodeCrypto, this.upstreamCA),
      { crypto: nodeCrypto },
    );
    return { certificate: formatCertificate(cert), serial, validBefore: cert.validBefore };
  }

  /** The name as the client typed it, if it resolves to exactly one host, and the host's own name. */
  async jumpHostCertificate(req: { host: string; publicKey: PublicKey }): Promise<IssuedCertificate> {
    this.#check();
    const target = await this.resolveHost(req.host);
    this.jumpRequests.push(req.host);
    const now = nowSeconds();
    const serial = this.nextSerial();
    const principals = [...new Set([req.host, target.name])];
    const cert = signCertificate(
      { key: req.publicKey, kind: 'host', serial, keyId: `host=${target.name} jump`, principals, validAfter: now - 60n, validBefore: now + 600n },
      keySigner(nodeCrypto, this.hostCA),
      { crypto: nodeCrypto },
    );
    return { certificate: formatCertificate(cert), serial, validBefore: cert.validBefore };
  }

  onNotice(listener: (notice: AuthorityNotice) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  // --- what an admin would do through auth ---------------------------------------------

  notify(n: AuthorityNotice): void {
    for (const l of this.#listeners) l(n);
  }

  lockUser(user: string, message: string): void {
    this.locked.set(user, message);
    this.notify({ kind: 'lock', target: { kind: 'user', name: user }, message });
  }

  unlockUser(user: string): void {
    this.locked.delete(user);
  }

  revoke(cert: Certificate): void {
    this.#krl = KrlBuilder.from(this.#krl).revokeSerial(publicPart(this.userCA), cert.serial).build();
    this.#krlVersion++;
    this.notify({ kind: 'revocation' });
  }

  krlBytes(): Uint8Array {
    return encodeKrl(this.#krl, { version: BigInt(this.#krlVersion), generatedDate: nowSeconds() });
  }

  #check(): void {
    if (this.down) throw new Error('auth is down (stand-in)');
  }

  // --- certificates for the test's clients and targets ---------------------------------

  /** A user certificate as `pcsh login` would hold it; the files are written for ssh. */
  userCertificate(user: string, o: UserCertificateOptions): Certificate {
    const key = newKey();
    const now = nowSeconds();
    const validFor = BigInt(o.validFor ?? 300);
    const permissions: Permissions = { ...NO_PERMISSIONS, pty: true, ...o.permissions };
    const cert = signCertificate(
      {
        key: publicPart(key),
        kind: 'user',
        serial: this.nextSerial(),
        keyId: o.keyId ?? `${user} req=test`,
        principals: o.principals,
        validAfter: o.validAfter ?? (validFor > 0n ? now - 60n : now - 3600n),
        validBefore: now + validFor,
        ...optionsFromPermissions(permissions),
      },
      keySigner(nodeCrypto, o.ca ?? this.userCA),
      { crypto: nodeCrypto },
    );
    identities.set(cert, key);
    return cert;
  }

  /** A host certificate from the host CA (or `ca`) for a target's sshd. */
  hostCertificate(key: SigningPrivateKey, principals: readonly string[], ca: SigningPrivateKey = this.hostCA): Certificate {
    const now = nowSeconds();
    return signCertificate(
      { key: publicPart(key), kind: 'host', serial: this.nextSerial(), keyId: `host=${principals[0]}`, principals, validAfter: now - 60n, validBefore: now + 86400n },
      keySigner(nodeCrypto, ca),
      { crypto: nodeCrypto },
    );
  }
}

const identities = new WeakMap<Certificate, SigningPrivateKey>();

/** Writes the private key and `<path>-cert.pub` for a certificate made by userCertificate. */
export function writeIdentity(path: string, cert: Certificate): { identity: string; certificate: string } {
  const key = identities.get(cert);
  if (key === undefined) throw new Error('writeIdentity: not a certificate made by StandInAuthority.userCertificate');
  writeFileSync(path, formatPrivateKey(key, { crypto: nodeCrypto, comment: cert.keyId }), { mode: 0o600 });
  writeFileSync(`${path}-cert.pub`, formatCertificate(cert, cert.keyId) + '\n');
  return { identity: path, certificate: `${path}-cert.pub` };
}

export function writeKeyAndCertificate(path: string, key: SigningPrivateKey, cert: Certificate): { privateKeyPath: string; certificatePath: string } {
  writeFileSync(path, formatPrivateKey(key, { crypto: nodeCrypto, comment: cert.keyId }), { mode: 0o600 });
  writeFileSync(`${path}-cert.pub`, formatCertificate(cert, cert.keyId) + '\n');
  return { privateKeyPath: path, certificatePath: `${path}-cert.pub` };
}

export { parseCertificateText };
