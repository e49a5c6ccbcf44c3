import { formatPublicKey, generateKey, parseAuthorizedKeys, parseCertificateText, parseKnownHosts, publicPart } from '@portcullis/cert-core';
import type { PublicKey, SigningPrivateKey } from '@portcullis/cert-core';
import { nodeCrypto } from '@portcullis/cert-core/node';
import type { AuthorityClient, AuthorityNotice, ClientCertificateRef, IssuedCertificate, TargetHost, UpstreamCertificateRequest, UserAccess } from './authority.js';
import type { ProxyHostKey } from './config.js';
import { ProxyError } from './errors.js';
import type { ProxyErrorCode } from './errors.js';
import { LOCK_TARGET_KINDS } from './locks.js';
import type { LockTarget } from './locks.js';
import { PinnedHttps, apiError, jsonOf } from './pinned-https.js';
import type { HttpAnswer, HttpCall } from './pinned-https.js';
import { unknownHostError } from './routing.js';

/*
 * The AuthorityClient over auth's HTTP API (docs/auth-http-api.md), authenticated with the
 * proxy's service credential from its enrollment (POST /v1/join with a proxy join token,
 * enrollProxy below). Every operation is a request builder and a response reader (both pure,
 * exported for tests) joined by one pinned HTTPS call.
 *
 * Notices: auth publishes locks and revocations on Redis, but the proxy does not hold Redis
 * credentials for auth's keyspace. It polls instead, while someone listens: the lock list and
 * the KRL's ETag every `noticePollMs` (2 s), both cheap (a short JSON list, mostly a 304). A new
 * lock becomes a `lock` notice, a changed KRL a `revocation` notice, so a lock ends its sessions
 * within about two seconds plus one access check. `pollNow()` lets a faster relay (a pub/sub
 * subscriber, a webhook) cut that wait without changing the contract.
 */

/** A host as auth's inventory describes it (GET /v1/proxy/hosts/:name). */
export interface InventoryHost {
  readonly name: string;
  readonly type: string;
  readonly names: readonly string[];
  readonly labels: Readonly<Record<string, string>>;
  /** Where its sshd listens, when auth's inventory records it (it does not yet). */
  readonly address?: string;
  readonly port?: number;
}

export interface HttpAuthorityOptions {
  /** https://host:port of auth. */
  readonly url: string;
  /** SHA-256 fingerprint of auth's TLS certificate, as auth printed it. */
  readonly fingerprint: string;
  /** The service credential enrollProxy returned. */
  readonly credential: string;
  /** Per request (default 10 s). */
  readonly timeoutMs?: number;
  /** How often locks and the KRL are polled while notices are listened to (default 2000 ms). */
  readonly noticePollMs?: number;
  /**
   * Where to dial a host. auth's inventory records names, not an SSH address (yet); the default
   * dials the address auth gives, else the inventory name on port 22 (DNS decides). Map names
   * to addresses and ports here when that is not how the network works (and in tests, where
   * sshd listens on a free port).
   */
  readonly dialAddress?: (host: InventoryHost) => { readonly address: string; readonly port: number };
  /** Operational messages (an unreachable auth while polling). Default: none. */
  readonly log?: (level: 'warn', message: string) => void;
}

// ------------------------------------------------------------------------------------------
// Request builders

const seg = (s: string): string => encodeURIComponent(s);

export const authorityRequests = {
  ca: (): HttpCall => ({ method: 'GET', path: '/v1/ca' }),
  krl: (etag?: string): HttpCall => ({ method: 'GET', path: '/v1/krl', ...(etag === undefined ? {} : { headers: { 'if-none-match': etag } }) }),
  host: (query: string): HttpCall => ({ method: 'GET', path: `/v1/proxy/hosts/${seg(query)}` }),
  access: (user: string, client?: ClientCertificateRef): HttpCall => ({
    method: 'GET',
    path: `/v1/proxy/access/${seg(user)}${client === undefined ? '' : `?serial=${client.serial}&key_id=${seg(client.keyId)}&fingerprint=${seg(client.fingerprint)}`}`,
  }),
  locks: (): HttpCall => ({ method: 'GET', path: '/v1/proxy/locks' }),
  upstream: (r: Omit<UpstreamCertificateRequest, 'requestId'>): HttpCall => ({
    method: 'POST',
    path: '/v1/proxy/certs/upstream',
    json: {
      user: r.user,
      login: r.login,
      host: r.host,
      public_key: formatPublicKey(r.publicKey),
      client: { serial: r.client.serial.toString(), key_id: r.client.keyId, fingerprint: r.client.fingerprint },
    },
  }),
  jumpHost: (r: { readonly host: string; readonly publicKey: PublicKey }): HttpCall => ({
    method: 'POST',
    path: '/v1/proxy/certs/host',
    json: { host: r.host, public_key: formatPublicKey(r.publicKey) },
  }),
} as const;

// ------------------------------------------------------------------------------------------
// Response readers

/** auth's prefixes (`ca: `, `hosts: `) say which module spoke; the user does not need them. */
function words(message: string): string {
  return message.replace(/^(ca|hosts|locks|revocation|proxy): /, '');
}

/**
 * A refusal or failure as the proxy's error. `codes` maps statuses that mean "no" for this
 * operation; everything else (5xx, a bad credential, a surprise) is auth being unavailable to
 * the proxy, which the proxy then reports as such and never turns into a yes.
 */
export function failureOf(a: HttpAnswer, what: string, codes: Readonly<Partial<Record<number, ProxyErrorCode>>> = {}): ProxyError {
  const e = apiError(a);
  const code = codes[a.status];
  if (code !== undefined) return new ProxyError(code, words(e.message));
  if (a.status === 401) {
    return new ProxyError('ERR_AUTHORITY_UNAVAILABLE', `proxy: ${what}: auth refused the proxy's service credential (${e.message}); enroll the proxy again`);
  }
  return new ProxyError('ERR_AUTHORITY_UNAVAILABLE', `proxy: ${what}: auth answered ${a.status} ${e.code}: ${e.message}`);
}

function malformed(what: string, detail: string): ProxyError {
  return new ProxyError('ERR_AUTHORITY_UNAVAILABLE', `proxy: ${what}: unexpected answer from auth (${detail})`);
}

function record(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw malformed(what, 'not an object');
  return v as Record<string, unknown>;
}

function str(o: Record<string, unknown>, k: string, what: string): string {
  const v = o[k];
  if (typeof v !== 'string') throw malformed(what, `"${k}" is not a string`);
  return v;
}

function strings(o: Record<string, unknown>, k: string, what: string): string[] {
  const v = o[k];
  if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) throw malformed(what, `"${k}" is not a list of strings`);
  return v as string[];
}

function bool(o: Record<string, unknown>, k: string, what: string): boolean {
  const v = o[k];
  if (typeof v !== 'boolean') throw malformed(what, `"${k}" is not a boolean`);
  return v;
}

/** GET /v1/ca: the user CA keys (TrustedUserCAKeys lines) and host CA keys (@cert-authority lines). */
export function readCaKeys(a: HttpAnswer): { readonly user: PublicKey[]; readonly host: PublicKey[] } {
  const what = 'reading the CA keys';
  if (a.status !== 200) throw failureOf(a, what);
  const body = record(jsonOf(a, what), what);
  const user = parseAuthorizedKeys(str(record(body['user'], what), 'authorized_keys', what)).map((l) => l.key);
  const host = parseKnownHosts(str(record(body['host'], what), 'known_hosts', what))
    .filter((e) => e.marker === 'cert-authority')
    .map((e) => e.key);
  if (user.length === 0 || host.length === 0) throw malformed(what, 'no user or no host CA key');
  return { user, host };
}

/** GET /v1/krl: the bytes and ETag, or unchanged (304). */
export function readKrl(a: HttpAnswer): { readonly bytes: Uint8Array; readonly etag: string } | 'unchanged' {
  if (a.status === 304) return 'unchanged';
  if (a.status !== 200) throw failureOf(a, 'fetching the KRL');
  const etag = a.headers['etag'];
  if (typeof etag !== 'string' || etag === '') throw malformed('fetching the KRL', 'no ETag');
  return { bytes: new Uint8Array(a.body.buffer, a.body.byteOffset, a.body.length), etag };
}

/** GET /v1/proxy/hosts/:name: one enrolled host (never a proxy), or why not. */
export function readHost(a: HttpAnswer, query: string): InventoryHost {
  const what = `resolving host ${JSON.stringify(query)}`;
  if (a.status === 404 || a.status === 400) throw unknownHostError(query);
  if (a.status !== 200) throw failureOf(a, what, { 409: 'ERR_HOST_AMBIGUOUS' });
  const body = record(jsonOf(a, what), what);
  const labels = record(body['labels'] ?? {}, what);
  if (!Object.values(labels).every((v) => typeof v === 'string')) throw malformed(what, '"labels" has a value that is not a string');
  const address = body['address'];
  const port = body['port'];
  const host: InventoryHost = {
    name: str(body, 'name', what),
    type: str(body, 'type', what),
    names: strings(body, 'names', what),
    labels: labels as Record<string, string>,
    ...(typeof address === 'string' && address !== '' ? { address } : {}),
    ...(typeof port === 'number' && Number.isInteger(port) && port > 0 && port < 65536 ? { port } : {}),
  };
  // A proxy's enrollment certifies the proxy's keys for the proxy's names; its sshd, if any,
  // is another enrollment. Dialling a proxy would be a loop, not a target.
  if (host.type !== 'host') throw new ProxyError('ERR_HOST_NOT_FOUND', `${JSON.stringify(host.name)} is a Portcullis ${host.type}, not a target host`);
  return host;
}

export function defaultDialAddress(host: InventoryHost): { address: string; port: number } {
  return { address: host.address ?? host.name, port: host.port ?? 22 };
}

/** GET /v1/proxy/access/:user: the user's access now; 403 (unknown, disabled, no roles) and 423 (locked) refuse. */
export function readAccess(a: HttpAnswer, user: string): UserAccess {
  const what = `reading the access of ${JSON.stringify(user)}`;
  if (a.status !== 200) throw failureOf(a, what, { 403: 'ERR_ACCESS_DENIED', 404: 'ERR_ACCESS_DENIED', 423: 'ERR_ACCESS_DENIED' });
  const b = record(jsonOf(a, what), what);
  const record_session = str(b, 'record_session', what);
  if (record_session !== 'strict' && record_session !== 'best-effort') throw malformed(what, `"record_session" is ${JSON.stringify(record_session)}`);
  const idle = b['idle_timeout'];
  if (typeof idle !== 'number' || !Number.isFinite(idle) || idle < 0) throw malformed(what, '"idle_timeout" is not a number of seconds');
  return {
    user: str(b, 'user', what),
    roles: strings(b, 'roles', what),
    logins: strings(b, 'logins', what),
    portForwarding: bool(b, 'port_forwarding', what),
    agentForwarding: bool(b, 'agent_forwarding', what),
    x11Forwarding: bool(b, 'x11_forwarding', what),
    recordSession: record_session,
    recordInput: bool(b, 'record_input', what),
    idleTimeout: idle,
  };
}

/**
 * POST /v1/proxy/certs/upstream and /v1/proxy/certs/host: the certificate, checked to be of the
 * kind asked for and for the key sent (a mix-up would fail later, less clearly).
 */
export function readIssued(a: HttpAnswer, what: string, kind: 'user' | 'host', key: PublicKey): IssuedCertificate {
  if (a.status !== 200) {
    throw failureOf(a, what, { 403: 'ERR_ACCESS_DENIED', 423: 'ERR_ACCESS_DENIED', 404: 'ERR_HOST_NOT_FOUND', 409: 'ERR_HOST_AMBIGUOUS' });
  }
  const b = record(jsonOf(a, what), what);
  const text = str(b, 'certificate', what);
  let cert;
  try {
    cert = parseCertificateText(text, what).cert;
  } catch (e) {
    throw malformed(what, e instanceof Error ? e.message : String(e));
  }
  if (cert.kind !== kind) throw malformed(what, `a ${cert.kind} certificate where a ${kind} certificate was asked for`);
  if (formatPublicKey(cert.key) !== formatPublicKey(key)) throw malformed(what, 'the certificate is for another key');
  if (str(b, 'serial', what) !== cert.serial.toString()) throw malformed(what, '"serial" differs from the certificate');
  return { certificate: text, serial: cert.serial, validBefore: cert.validBefore };
}

export interface LockNotice {
  readonly id: string;
  readonly target: LockTarget;
  readonly message: string;
}

/**
 * GET /v1/proxy/locks: the locks in force. A lock of a kind this proxy does not know (a newer
 * auth) is left out rather than failing the list, so the locks it does know still end sessions.
 */
export function readLocks(a: HttpAnswer): LockNotice[] {
  const what = 'reading the locks';
  if (a.status !== 200) throw failureOf(a, what);
  const list = record(jsonOf(a, what), what)['locks'];
  if (!Array.isArray(list)) throw malformed(what, '"locks" is not a list');
  const out: LockNotice[] = [];
  for (const raw of list) {
    const l = record(raw, what);
    const t = record(l['target'], what);
    const kind = LOCK_TARGET_KINDS.find((k) => k === t['kind']);
    const id = str(l, 'id', what);
    const name = str(t, 'name', what);
    if (kind === undefined) continue;
    out.push({ id, target: { kind, name }, message: typeof l['message'] === 'string' ? l['message'] : '' });
  }
  return out;
}

/** The notices a poll yields: locks not seen before, and a revocation when the KRL changed. */
export function noticesBetween(
  before: { readonly lockIds: ReadonlySet<string> | undefined; readonly krlEtag: string | undefined },
  locks: readonly LockNotice[] | undefined,
  krlEtag: string | undefined,
): AuthorityNotice[] {
  const out: AuthorityNotice[] = [];
  // The first successful poll only learns what exists: a proxy that just started has no
  // sessions for old locks to end.
  if (locks !== undefined && before.lockIds !== undefined) {
    for (const l of locks) {
      if (!before.lockIds.has(l.id)) out.push({ kind: 'lock', target: l.target, ...(l.message === '' ? {} : { message: l.message }) });
    }
  }
  if (krlEtag !== undefined && before.krlEtag !== undefined && krlEtag !== before.krlEtag) out.push({ kind: 'revocation' });
  return out;
}

// ------------------------------------------------------------------------------------------
// The client

export class HttpAuthority implements AuthorityClient {
  readonly #http: PinnedHttps;
  readonly #credential: string;
  readonly #pollMs: number;
  readonly #dialAddress: (host: InventoryHost) => { readonly address: string; readonly port: number };
  readonly #log: (level: 'warn', message: string) => void;
  readonly #listeners = new Set<(n: AuthorityNotice) => void>();
  #ca: Promise<{ readonly user: PublicKey[]; readonly host: PublicKey[] }> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #polling: Promise<void> | undefined;
  #seen: { lockIds: ReadonlySet<string> | undefined; krlEtag: string | undefined } = { lockIds: undefined, krlEtag: undefined };
  #lastPollError: string | undefined;

  constructor(o: HttpAuthorityOptions) {
    if (typeof o.credential !== 'string' || !/^[A-Za-z0-9_-]{20,}$/.test(o.credential)) {
      throw new TypeError('proxy: "credential" expected the service credential from the proxy\'s enrollment');
    }
    this.#http = new PinnedHttps({ url: o.url, fingerprint: o.fingerprint, ...(o.timeoutMs === undefined ? {} : { timeoutMs: o.timeoutMs }) });
    this.#credential = o.credential;
    this.#pollMs = o.noticePollMs ?? 2_000;
    this.#dialAddress = o.dialAddress ?? defaultDialAddress;
    this.#log = o.log ?? (() => {});
  }

  /** Stops polling and closes idle connections to auth. */
  close(): void {
    this.#listeners.clear();
    this.#stopPolling();
    this.#http.close();
  }

  #call(c: HttpCall, authenticated: boolean): Promise<HttpAnswer> {
    return this.#http.request(authenticated ? { ...c, headers: { ...c.headers, authorization: `Bearer ${this.#credential}` } } : c);
  }

  // /v1/ca answers both lists; concurrent callers share one request, the next call asks again
  // (TrustCache decides how long a list is reused).
  #caKeys(): Promise<{ readonly user: PublicKey[]; readonly host: PublicKey[] }> {
    this.#ca ??= this.#call(authorityRequests.ca(), false)
      .then(readCaKeys)
      .finally(() => {
        this.#ca = undefined;
      });
    return this.#ca;
  }

  async userCAs(): Promise<readonly PublicKey[]> {
    return (await this.#caKeys()).user;
  }

  async hostCAs(): Promise<readonly PublicKey[]> {
    return (await this.#caKeys()).host;
  }

  async krl(etag?: string): Promise<{ readonly bytes: Uint8Array; readonly etag: string } | 'unchanged'> {
    return readKrl(await this.#call(authorityRequests.krl(etag), false));
  }

  async resolveHost(query: string): Promise<TargetHost> {
    const host = readHost(await this.#call(authorityRequests.host(query), true), query);
    const dial = this.#dialAddress(host);
    return { name: host.name, address: dial.address, port: dial.port, labels: host.labels };
  }

  async access(user: string, client?: ClientCertificateRef): Promise<UserAccess> {
    return readAccess(await this.#call(authorityRequests.access(user, client), true), user);
  }

  async upstreamCertificate(req: UpstreamCertificateRequest): Promise<IssuedCertificate> {
    // auth draws its own request id (its body schema has none); the session id stays in our audit.
    const a = await this.#call(authorityRequests.upstream(req), true);
    return readIssued(a, `a certificate for ${JSON.stringify(req.login)} on ${JSON.stringify(req.host)}`, 'user', req.publicKey);
  }

  async jumpHostCertificate(req: { readonly host: string; readonly publicKey: PublicKey }): Promise<IssuedCertificate> {
    const a = await this.#call(authorityRequests.jumpHost(req), true);
    return readIssued(a, `a jump host certificate for ${JSON.stringify(req.host)}`, 'host', req.publicKey);
  }

  onNotice(listener: (notice: AuthorityNotice) => void): () => void {
    this.#listeners.add(listener);
    if (this.#timer === undefined) this.#schedule(0);
    return () => {
      this.#listeners.delete(listener);
      if (this.#listeners.size === 0) this.#stopPolling();
    };
  }

  /** Polls at once (coalesced with a poll in flight); resolves when it is done. */
  pollNow(): Promise<void> {
    this.#polling ??= this.#poll().finally(() => {
      this.#polling = undefined;
    });
    return this.#polling;
  }

  #schedule(ms: number): void {
    this.#timer = setTimeout(() => {
      void this.pollNow().finally(() => {
        if (this.#listeners.size > 0) this.#schedule(this.#pollMs);
      });
    }, ms);
    this.#timer.unref();
  }

  #stopPolling(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  async #poll(): Promise<void> {
    const [locks, krl] = await Promise.allSettled([
      this.#call(authorityRequests.locks(), true).then(readLocks),
      this.#call(authorityRequests.krl(this.#seen.krlEtag), false).then(readKrl),
    ]);
    const lockList = locks.status === 'fulfilled' ? locks.value : undefined;
    const etag = krl.status === 'fulfilled' ? (krl.value === 'unchanged' ? this.#seen.krlEtag : krl.value.etag) : undefined;
    const notices = noticesBetween(this.#seen, lockList, etag);
    this.#seen = {
      lockIds: lockList === undefined ? this.#seen.lockIds : new Set(lockList.map((l) => l.id)),
      krlEtag: etag ?? this.#seen.krlEtag,
    };
    const failed = [locks, krl].find((r): r is PromiseRejectedResult => r.status === 'rejected');
    const why = failed === undefined ? undefined : failed.reason instanceof Error ? failed.reason.message : String(failed.reason);
    if (why !== undefined && why !== this.#lastPollError) this.#log('warn', `cannot poll auth for locks and revocations: ${why}`);
    this.#lastPollError = why;
    for (const n of notices) {
      for (const l of this.#listeners) {
        try {
          l(n);
        } catch (e) {
          this.#log('warn', `a notice listener failed: ${e instanceof Error ? e.message : String(e)}`);
        }
      }
    }
  }
}

// ------------------------------------------------------------------------------------------
// Enrollment

export interface ProxyEnrollmentRequest {
  readonly url: string;
  readonly fingerprint: string;
  /** A join token of type `proxy` (pcctl tokens add --type proxy). */
  readonly token: string;
  /** The proxy's canonical name; its host certificate names it (and `names`). */
  readonly hostname: string;
  /** More names and addresses clients reach the proxy at. */
  readonly names?: readonly string[];
  /** The proxy's host keys; default one fresh Ed25519 key. */
  readonly hostKeys?: readonly SigningPrivateKey[];
  readonly timeoutMs?: number;
}

export interface ProxyEnrollment {
  /** For HttpAuthorityOptions.credential. Shown once by auth: store it (0600). */
  readonly credential: string;
  /** For ProxyConfig.hostKeys: each key with the host certificate auth signed for it. */
  readonly hostKeys: readonly ProxyHostKey[];
  /** `@cert-authority` lines for the host CA (what clients put into known_hosts). */
  readonly knownHosts: string;
  /** Renew the host certificates after this (milliseconds since the epoch). */
  readonly renewAfter: number;
}

/** POST /v1/join as a proxy: host certificates for the proxy's keys and its service credential. */
export async function enrollProxy(r: ProxyEnrollmentRequest): Promise<ProxyEnrollment> {
  const keys = r.hostKeys ?? [generateKey(nodeCrypto, 'ssh-ed25519')];
  const http = new PinnedHttps({ url: r.url, fingerprint: r.fingerprint, ...(r.timeoutMs === undefined ? {} : { timeoutMs: r.timeoutMs }) });
  try {
    const a = await http.request({
      method: 'POST',
      path: '/v1/join',
      json: {
        token: r.token,
        hostname: r.hostname,
        ...(r.names === undefined ? {} : { names: r.names }),
        host_keys: keys.map((k) => formatPublicKey(publicPart(k))),
        type: 'proxy',
      },
    });
    const what = 'enrolling the proxy';
    if (a.status !== 200) throw new ProxyError('ERR_CONFIG', `proxy: ${what}: ${apiError(a).message}`);
    const b = record(jsonOf(a, what), what);
    const credential = str(b, 'service_credential', what);
    const certs = b['certificates'];
    if (!Array.isArray(certs)) throw malformed(what, '"certificates" is not a list');
    const hostKeys = keys.map((k) => {
      const line = formatPublicKey(publicPart(k));
      const entry = certs.map((c) => record(c, what)).find((c) => c['public_key'] === line);
      if (entry === undefined) throw malformed(what, `no certificate for ${line}`);
      const { cert } = parseCertificateText(str(entry, 'certificate', what), what);
      if (cert.kind !== 'host') throw malformed(what, 'not a host certificate');
      return { privateKey: k, certificate: cert };
    });
    const renewAfter = Date.parse(str(b, 'renew_after', what));
    return { credential, hostKeys, knownHosts: str(b, 'known_hosts', what), renewAfter };
  } finally {
    http.close();
  }
}
