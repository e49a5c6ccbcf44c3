import { existsSync, mkdirSync } from 'node:fs';
import type { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import type { CryptoBackend } from '@portcullis/cert-core';
import { nodeCrypto } from '@portcullis/cert-core/node';
import { AuthError } from './errors.js';
import { AuditLog } from './audit/log.js';
import { jsonLinesSink, openJsonLinesFile, redisStreamSink, type AuditSink } from './audit/sinks.js';
import { SYSTEM_ACTOR } from './audit/event.js';
import { CA_KINDS, CaKeystore } from './ca/keystore.js';
import type { CaKind } from './ca/keystore.js';
import { RotationService, readRotationState, type RotationState } from './ca/rotation.js';
import { firstRefusal, peekCaDirectory, readTrustRecords, recordTrustIfAbsent, trustRecordOf, type CaTrustRecord, type SharedTrustRefusal } from './ca/shared-trust.js';
import { closeTokenSigners, openTokenSigners } from './ca/pkcs11-config.js';
import type { Pkcs11Signer } from './ca/pkcs11.js';
import type { IssuerDeps } from './ca/issuer.js';
import type { LoadedAuthConfig } from './config/load.js';
import type { EnrollmentDeps } from './hosts/enrollment.js';
import { currentCertificate, listHosts } from './hosts/inventory.js';
import { OidcLogin } from './identity/oidc.js';
import type { ScryptParams } from './identity/password.js';
import { RedisInviteStore, RedisOidcStateStore, RedisUserStore } from './identity/redis-store.js';
import { TotpAuthenticator } from './identity/totp.js';
import { UserDirectory, type IssuedInvite } from './identity/users.js';
import { createAuthMetrics, type AuthMetrics } from './metrics.js';
import type { RevocationDeps } from './revocation/revocations.js';
import { connectRedis, type RedisConnection } from './store/redis.js';
import { ADMIN_ROLE, type ApiContext } from './http/context.js';
import { RoleCatalog } from './http/role-catalog.js';
import { buildApiServer } from './http/server.js';
import { loadOrCreateTls, type TlsMaterial } from './http/tls.js';
import { inviteView } from './http/routes-admin-users.js';

/** How often a replica checks whether another one made a CA rotation step. */
const ROTATION_SYNC_MS = 5_000;

export interface AuthServiceOptions {
  readonly config: LoadedAuthConfig;
  /** Milliseconds since the epoch (default Date.now); tests move it to expire things. */
  readonly clock?: () => number;
  /** Operational log lines (default: stderr). Never receives secrets. */
  readonly log?: (line: string) => void;
  /** Where the `stdout` audit sink writes (default process.stdout). */
  readonly auditStdout?: Writable;
  readonly crypto?: CryptoBackend;
  /** Password hashing cost (default scrypt N=2^15); tests lower it. */
  readonly scrypt?: ScryptParams;
  /** Export process_* / nodejs_* metrics (default true). */
  readonly defaultMetrics?: boolean;
}

/** What a start reports: where clients connect and what they pin. */
export interface AuthServiceInfo {
  readonly url: string;
  readonly fingerprint: string;
  readonly spkiPin: string;
  readonly generatedCertificate: boolean;
  /** The first admin's invite, made when the service started with no users at all. */
  readonly bootstrapInvite: { readonly user: string; readonly token: string; readonly url: string; readonly expiresAt: string } | undefined;
}

function listenUrlHost(host: string): string {
  const h = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host;
  return h.includes(':') ? `[${h}]` : h;
}

/**
 * The auth service: builds every part from a config and runs the HTTP API. start() and stop()
 * may be called once each; stop() closes the listener first, then the audit sinks, then Redis
 * (and the embedded redis-server when it started one).
 */
export class AuthService {
  readonly #opts: AuthServiceOptions;
  readonly #clock: () => number;
  readonly #log: (line: string) => void;
  #redis: RedisConnection | undefined;
  #audit: AuditLog | undefined;
  #app: FastifyInstance | undefined;
  #metrics: AuthMetrics | undefined;
  #keystore: CaKeystore | undefined;
  #rotationTimer: NodeJS.Timeout | undefined;
  #tokenSigners: Partial<Record<CaKind, Pkcs11Signer>> = {};
  #ctx: ApiContext | undefined;
  #info: AuthServiceInfo | undefined;
  #publicUrl: string | undefined;

  constructor(opts: AuthServiceOptions) {
    this.#opts = opts;
    this.#clock = opts.clock ?? Date.now;
    this.#log = opts.log ?? ((line) => process.stderr.write(`${line}\n`));
  }

  /** The API context (for tests and the single-process `portcullis start`). */
  get context(): ApiContext {
    if (this.#ctx === undefined) throw new Error('auth: the service is not started');
    return this.#ctx;
  }

  get info(): AuthServiceInfo {
    if (this.#info === undefined) throw new Error('auth: the service is not started');
    return this.#info;
  }

  async start(): Promise<AuthServiceInfo> {
    if (this.#redis !== undefined) throw new Error('auth: start() called twice');
    try {
      return await this.#start();
    } catch (e) {
      await this.stop().catch(() => undefined);
      throw e;
    }
  }

  async #start(): Promise<AuthServiceInfo> {
    const c = this.#opts.config;
    const log = this.#log;
    const crypto = this.#opts.crypto ?? nodeCrypto;
    if (!existsSync(c.state_dir)) mkdirSync(c.state_dir, { recursive: true, mode: 0o700 });
    if (c.envOverrides.length > 0) log(`auth: environment overrides: ${c.envOverrides.join(', ')}`);

    const metrics = createAuthMetrics({ now: this.#clock, ...(this.#opts.defaultMetrics === undefined ? {} : { defaultMetrics: this.#opts.defaultMetrics }) });
    this.#metrics = metrics;
    let audit: AuditLog | undefined;
    this.#redis = await connectRedis(c.redis, {
      onClientError: (m) => log(m),
      embedded: {
        onEvent: (ev) => {
          if (ev.type === 'started' && ev.restarts > 0) {
            metrics.embeddedRedisRestarted();
            void audit?.emit('store.restarted', SYSTEM_ACTOR, { pid: ev.pid, restarts: ev.restarts });
          }
          if (ev.type === 'exited') log(`store: embedded redis-server ${ev.pid} exited (code ${ev.code ?? '-'}, signal ${ev.signal ?? '-'})`);
          if (ev.type === 'restart_failed') log(`store: restarting the embedded redis-server failed (attempt ${ev.attempt}): ${ev.error.message}`);
        },
      },
    });
    const redis = this.#redis.client;
    log(`store: redis ${this.#redis.kind} at ${this.#redis.target}`);

    const sinks: AuditSink[] = [redisStreamSink(redis)];
    if (c.audit.sink === 'stdout') sinks.push(jsonLinesSink(this.#opts.auditStdout ?? process.stdout));
    if (c.audit.sink === 'file') sinks.push(await openJsonLinesFile(c.audit.path!));
    const auditLog = new AuditLog({
      sinks,
      now: () => new Date(this.#clock()),
      metrics,
      onSinkFailure: (f, ev) => log(`audit: sink ${f.sink} failed to store ${ev.code} ${ev.name}: ${f.message}`),
    });
    audit = auditLog;
    this.#audit = auditLog;

    const tokenSigners = openTokenSigners(c.ca, { crypto, log });
    this.#tokenSigners = tokenSigners;
    // Before a missing CA is created: a replica must not make or use a CA the others do not hold.
    const rotations = Object.fromEntries(await Promise.all(CA_KINDS.map(async (k) => [k, await readRotationState(redis, k)] as const))) as Record<CaKind, RotationState>;
    const early = firstRefusal(peekCaDirectory(c.state_dir, crypto, tokenSigners), await readTrustRecords(redis), rotations);
    if (early !== undefined) await this.#refuseCa(early, auditLog);
    const keystore = CaKeystore.open({
      stateDir: c.state_dir,
      crypto,
      tokenSigners,
      user: { algorithm: c.ca.user.algorithm, ...(c.ca.user.rsa_bits === undefined ? {} : { rsaBits: c.ca.user.rsa_bits }) },
      upstream: { algorithm: c.ca.upstream.algorithm, ...(c.ca.upstream.rsa_bits === undefined ? {} : { rsaBits: c.ca.upstream.rsa_bits }) },
      host: { algorithm: c.ca.host.algorithm, ...(c.ca.host.rsa_bits === undefined ? {} : { rsaBits: c.ca.host.rsa_bits }) },
      ...(c.caPassphrase === undefined ? {} : { passphrase: c.caPassphrase }),
      now: this.#clock,
      log,
      onChange: (ch) => void auditLog.emit(ch.event, SYSTEM_ACTOR, { action: ch.action, kind: ch.kind, id: ch.id, fingerprint: ch.fingerprint }),
    });
    this.#keystore = keystore;
    // Kinds nobody recorded yet are recorded now; of two replicas racing at first start, the
    // one whose script ran second compares against the winner's keys like any later start.
    const held = Object.fromEntries(CA_KINDS.map((k) => [k, trustRecordOf(keystore, k)])) as Record<CaKind, CaTrustRecord>;
    const recorded = await recordTrustIfAbsent(redis, Object.values(held));
    const late = firstRefusal(held, recorded, rotations);
    if (late !== undefined) await this.#refuseCa(late, auditLog);
    // Replicas share the CA directory: a rotation step made through another one is picked up here.
    const rotation = new RotationService({ redis, keystore, clock: this.#clock });
    this.#rotationTimer = setInterval(() => void rotation.sync().catch((e: unknown) => log(`ca: cannot follow the rotation state: ${e instanceof Error ? e.message : String(e)}`)), ROTATION_SYNC_MS);
    this.#rotationTimer.unref();


    const userStore = new RedisUserStore(redis);
    const users = new UserDirectory({
      users: userStore,
      invites: new RedisInviteStore(redis),
      now: this.#clock,
      ...(this.#opts.scrypt === undefined ? {} : { scrypt: this.#opts.scrypt }),
    });
    const totp = new TotpAuthenticator({ users: userStore, params: { issuer: c.totp.issuer }, now: this.#clock });
    const oidc = c.oidc === undefined ? undefined : new OidcLogin({ settings: c.oidc, store: new RedisOidcStateStore(redis), now: this.#clock });
    const roles = new RoleCatalog(redis, c.roles);

    const tls = await this.#tls(c);
    const publicUrl = (): string => {
      if (this.#publicUrl === undefined) throw new Error('auth: public URL asked for before the server listens');
      return this.#publicUrl;
    };
    const signing = { redis, crypto, signer: (kind: CaKind) => keystore.signer(kind), audit: auditLog, metrics };
    const issuer: IssuerDeps = { ...signing, users, roles, clock: this.#clock };
    const enrollment: EnrollmentDeps = {
      ...signing,
      keystore,
      get krlUrl() {
        return `${publicUrl()}/v1/krl`;
      },
      lifetimeDays: c.certificates.host_ttl / 86400,
      clock: this.#clock,
    };
    const revocation: RevocationDeps = {
      redis,
      crypto,
      trust: () => ({
        user: keystore.keys('user').map((k) => k.publicKey),
        upstream: keystore.keys('upstream').map((k) => k.publicKey),
        host: keystore.keys('host').map((k) => k.publicKey),
      }),
      onKrl: (krl) => metrics.setRevokedCertificates(krl.entries),
      audit: auditLog,
    };
    const rl = c.rate_limits;
    const ctx: ApiContext = {
      redis,
      crypto,
      keystore,
      users,
      totp,
      oidc,
      roles,
      audit: auditLog,
      metrics,
      issuer,
      enrollment,
      revocation,
      clock: this.#clock,
      rateLimits: {
        loginUser: { max: rl.login.per_user, windowSeconds: rl.login.window },
        loginAddress: { max: rl.login.per_address, windowSeconds: rl.login.window },
        totpUser: { max: rl.totp.per_user, windowSeconds: rl.totp.window },
        totpAddress: { max: rl.totp.per_address, windowSeconds: rl.totp.window },
        enrollAddress: { max: rl.enroll.per_address, windowSeconds: rl.enroll.window },
      },
      publicUrl,
      defaultUserCertTtl: c.certificates.user_ttl,
      log,
    };
    this.#ctx = ctx;

    await this.#restoreHostMetrics();
    const app = await buildApiServer({ ctx, tls, ready: () => this.#ready() });
    this.#app = app;
    await app.listen({ host: c.listen.host, port: c.listen.port });
    const address = app.server.address();
    const port = typeof address === 'object' && address !== null ? address.port : c.listen.port;
    this.#publicUrl = c.public_url ?? `https://${listenUrlHost(c.listen.host)}:${port}`;

    const bootstrapInvite = await this.#bootstrapAdmin(users, ctx);
    await auditLog.emit('service.started', SYSTEM_ACTOR, { url: this.#publicUrl, tlsFingerprint: tls.fingerprint, userCa: keystore.active('user').fingerprint, upstreamCa: keystore.active('upstream').fingerprint, hostCa: keystore.active('host').fingerprint });
    log(`auth: listening on ${this.#publicUrl} (TLS certificate SHA-256 ${tls.fingerprint}; public key pin ${tls.spkiPin})`);
    this.#info = {
      url: this.#publicUrl,
      fingerprint: tls.fingerprint,
      spkiPin: tls.spkiPin,
      generatedCertificate: tls.generated,
      bootstrapInvite,
    };
    return this.#info;
  }

  async #refuseCa(r: SharedTrustRefusal, audit: AuditLog): Promise<never> {
    await audit.emit('ca.trust_mismatch', SYSTEM_ACTOR, {
      kind: r.kind,
      reason: r.reason,
      localActive: r.local?.active.fingerprint ?? null,
      recordedActive: r.recorded.active.fingerprint,
      recordedTrusted: r.recorded.trusted.map((k) => k.fingerprint),
    });
    this.#log(r.message);
    throw new AuthError('ERR_CONFIG', r.message);
  }

  async #tls(c: LoadedAuthConfig): Promise<TlsMaterial> {
    const names = [...c.tls.names];
    if (c.public_url !== undefined) names.push(new URL(c.public_url).hostname.replace(/^\[|\]$/g, ''));
    if (c.listen.host !== '0.0.0.0' && c.listen.host !== '::') names.push(c.listen.host);
    return loadOrCreateTls({
      stateDir: c.state_dir,
      ...(c.tls.cert_file === undefined ? {} : { certFile: c.tls.cert_file }),
      ...(c.tls.key_file === undefined ? {} : { keyFile: c.tls.key_file }),
      names,
      now: this.#clock,
      log: this.#log,
    });
  }

  /** Fills the host certificate expiry gauges from the inventory, so an alert survives a restart. */
  async #restoreHostMetrics(): Promise<void> {
    const now = this.#clock();
    for (const h of await listHosts(this.#redis!.client)) {
      const c = currentCertificate(h, now);
      if (c !== undefined) this.#metrics!.setHostCertificate(h.name, { validAfter: c.validAfter / 1000, validBefore: c.expiresAt / 1000 });
    }
  }

  /**
   * On the very first start (no users at all) makes the `admin` user and an invite for it, so
   * there is a way in without a default password. Later starts find users and print nothing.
   */
  async #bootstrapAdmin(users: UserDirectory, ctx: ApiContext): Promise<AuthServiceInfo['bootstrapInvite']> {
    if ((await users.listUsers()).length > 0) return undefined;
    try {
      await users.createLocalUser(ADMIN_ROLE, [ADMIN_ROLE]);
    } catch (e) {
      // Another replica starting at the same moment made it first.
      if (e instanceof AuthError && e.code === 'ERR_CONFLICT') return undefined;
      throw e;
    }
    const invite: IssuedInvite = await users.createInvite(ADMIN_ROLE);
    await ctx.audit.emit('user.created', SYSTEM_ACTOR, { user: ADMIN_ROLE, kind: 'local', roles: [ADMIN_ROLE], reason: 'first start' });
    await ctx.audit.emit('user.invite_created', SYSTEM_ACTOR, { user: ADMIN_ROLE, purpose: invite.purpose, expiresAt: new Date(invite.expiresAt) });
    const view = inviteView(ctx, invite) as { url: string };
    this.#log(`auth: first start: created user "${ADMIN_ROLE}". Set its password within 24 hours at:\n\n  ${view.url}\n`);
    return { user: ADMIN_ROLE, token: invite.token, url: view.url, expiresAt: new Date(invite.expiresAt).toISOString() };
  }

  async #ready(): Promise<{ ok: boolean; checks: Record<string, string> }> {
    const checks: Record<string, string> = {};
    try {
      const pong = await Promise.race([
        this.#redis!.client.ping(),
        new Promise<string>((_, reject) => setTimeout(() => reject(new Error('no answer within 2 s')), 2_000).unref()),
      ]);
      checks['redis'] = pong === 'PONG' ? 'ok' : `unexpected answer ${pong}`;
    } catch (e) {
      checks['redis'] = `unreachable: ${(e as Error).message}`;
    }
    try {
      const ks = this.#keystore!;
      checks['ca'] = `ok (user ${ks.active('user').id}, upstream ${ks.active('upstream').id}, host ${ks.active('host').id})`;
    } catch (e) {
      checks['ca'] = `not loaded: ${(e as Error).message}`;
    }
    for (const [kind, signer] of Object.entries(this.#tokenSigners)) {
      try {
        signer.check();
        checks[`ca_${kind}_token`] = 'ok';
      } catch (e) {
        checks[`ca_${kind}_token`] = `unreachable: ${(e as Error).message}`;
      }
    }
    return { ok: Object.values(checks).every((v) => v.startsWith('ok')), checks };
  }

  /** Stops accepting, lets requests in flight finish, then closes the audit sinks and Redis. */
  async stop(): Promise<void> {
    clearInterval(this.#rotationTimer);
    this.#rotationTimer = undefined;
    const app = this.#app;
    this.#app = undefined;
    if (app !== undefined) await app.close();
    const audit = this.#audit;
    this.#audit = undefined;
    if (audit !== undefined) {
      await audit.emit('service.stopped', SYSTEM_ACTOR, {});
      await audit.close();
    }
    const redis = this.#redis;
    this.#redis = undefined;
    if (redis !== undefined) await redis.close();
    closeTokenSigners(this.#tokenSigners);
    this.#tokenSigners = {};
    this.#ctx = undefined;
  }
}
