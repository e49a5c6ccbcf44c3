import { setTimeout as sleep } from 'node:timers/promises';
import type { AuthContext, PublicKeyAuthContext } from 'ssh2';
import type { Certificate } from '@portcullis/cert-core';
import type { UserAccess } from './authority.js';
import type { AuditFn } from './audit.js';
import { clientCertificateRef, decideAccess, decideClientCertificate, refusalOf } from './client-auth.js';
import type { AuthVerdict, ClientIdentity } from './client-auth.js';
import type { ResolvedConfig } from './config.js';
import { ProxyError, isProxyError } from './errors.js';
import type { ProxyMetrics } from './metrics.js';
import type { JumpHop } from './context.js';
import { jumpedRoute, parseClientUsername } from './routing.js';
import type { ClientRoute } from './routing.js';
import { isCertificateAlgorithm, offeredCertificate, verifyCertificateUserauth } from './ssh2-certs.js';
import type { FailureThrottle } from './throttle.js';
import type { TrustCache } from './trust.js';

/** A client that proved who it is and may take its route. */
export interface AuthenticatedClient {
  readonly identity: ClientIdentity;
  readonly access: UserAccess;
  readonly route: ClientRoute;
}

export interface LoginDeps {
  readonly config: ResolvedConfig;
  readonly trust: TrustCache;
  readonly throttle: FailureThrottle;
  readonly metrics: ProxyMetrics;
  readonly audit: AuditFn;
}

/**
 * The userauth side of one client connection (ssh2's 'authentication' events). publickey with a
 * user certificate is the only method. The signature-less query is answered from the
 * certificate alone (no call to auth), the signed request in full: signature over this
 * session, cert-core's checker (CA, validity, principal, critical options, source-address
 * against the socket's peer, the KRL), then auth's current access for the user (locks).
 */
export class ClientLogin {
  readonly #deps: LoginDeps;
  readonly #peer: string;
  readonly #jump: JumpHop | undefined;
  #authenticated: AuthenticatedClient | undefined;
  #unavailable: string | undefined;
  #certificatesOffered = 0;
  #plainKeysOffered = 0;
  #closed = false;

  /** `jump`: this connection runs inside a ProxyJump channel opened by `jump.user`. */
  constructor(deps: LoginDeps, peer: string, jump?: JumpHop) {
    this.#deps = deps;
    this.#peer = peer;
    this.#jump = jump;
  }

  get authenticated(): AuthenticatedClient | undefined {
    return this.#authenticated;
  }

  /**
   * Set when the client proved it holds a valid certificate but auth could not be asked about
   * its access: the connection is let in only to be told so, never relayed.
   */
  get unavailable(): string | undefined {
    return this.#unavailable;
  }

  /** The client went away: a connection that only ever offered plain keys is refused once, here. */
  closed(username: string | undefined): void {
    this.#closed = true;
    if (this.#authenticated === undefined && this.#certificatesOffered === 0 && this.#plainKeysOffered > 0) {
      this.#deps.metrics.certAuth('not_a_certificate');
      this.#deps.audit('session.refused', {
        stage: 'auth',
        reason: 'ERR_NOT_A_CERTIFICATE',
        message: `offered ${this.#plainKeysOffered} plain key(s) and no certificate; run pcsh login`,
        clientAddress: this.#peer,
        username,
      });
    }
  }

  async handle(ctx: AuthContext): Promise<void> {
    if (ctx.method !== 'publickey') {
      // 'none' is how every client starts; the answer lists the one method that can work.
      ctx.reject(['publickey']);
      return;
    }
    const { config, throttle } = this.#deps;
    const delay = throttle.delayFor(this.#peer, config.now());
    if (delay > 0) await sleep(delay, undefined, { ref: false });
    if (this.#closed) return;
    if (!isCertificateAlgorithm(ctx.key.algo)) {
      this.#plainKeysOffered++;
      ctx.reject(['publickey']);
      return;
    }
    this.#certificatesOffered++;
    let verdict: AuthVerdict<Decided>;
    try {
      verdict = await this.#decide(ctx);
    } catch (e) {
      verdict = { ok: false, result: 'error', code: 'ERR_AUTHORITY_UNAVAILABLE', reason: `proxy: ${e instanceof Error ? e.message : String(e)}` };
      config.log('error', `authentication of ${this.#peer} failed unexpectedly: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    }
    if (this.#closed) return;
    if (verdict.ok) {
      const { identity, route, access, unavailable } = verdict.value;
      if (unavailable !== undefined) {
        // Refused, but after userauth: SSH carries no reason with a userauth failure, and "auth
        // is down, try again" is worth telling a user who proved who they are. The connection
        // gets that sentence on every session channel and nothing else (see connection.ts).
        this.#deps.metrics.certAuth('unavailable');
        this.#deps.audit('session.refused', {
          stage: 'auth',
          reason: 'ERR_AUTHORITY_UNAVAILABLE',
          message: unavailable,
          clientAddress: this.#peer,
          username: ctx.username,
          user: identity.user,
          certKeyId: identity.certificate.keyId,
          certSerial: identity.certificate.serial.toString(),
          signed: true,
        });
        this.#unavailable = AUTH_UNAVAILABLE_MESSAGE;
        ctx.accept();
        return;
      }
      if (access === undefined) {
        ctx.accept();
        return;
      }
      this.#authenticated = { identity, route, access };
      throttle.success(this.#peer);
      this.#deps.metrics.certAuth('success');
      ctx.accept();
      return;
    }
    throttle.failure(this.#peer, config.now());
    this.#deps.metrics.certAuth(verdict.result);
    const cert = tryCertificate(ctx);
    this.#deps.audit('session.refused', {
      stage: 'auth',
      reason: verdict.code,
      message: verdict.reason,
      clientAddress: this.#peer,
      username: ctx.username,
      certKeyId: cert?.keyId,
      certSerial: cert?.serial.toString(),
      signed: ctx.signature !== undefined,
    });
    ctx.reject(['publickey']);
  }

  async #decide(ctx: PublicKeyAuthContext): Promise<AuthVerdict<Decided>> {
    const { config, trust } = this.#deps;
    let certificate: Certificate;
    try {
      certificate = ctx.signature === undefined ? offeredCertificate(ctx) : verifyCertificateUserauth(ctx, { crypto: config.crypto }).certificate;
    } catch (e) {
      return refusalOf(e);
    }
    const jump = this.#jump;
    const route = jump === undefined ? parseClientUsername(ctx.username) : jumpedRoute(ctx.username, jump.host);
    let trustedCAs;
    try {
      trustedCAs = await trust.userCAs();
    } catch (e) {
      return refusalOf(e);
    }
    const v = decideClientCertificate({
      certificate,
      route,
      peerAddress: this.#peer,
      now: config.now(),
      trustedCAs,
      isRevoked: trust.isRevoked,
      crypto: config.crypto,
      skewSeconds: config.skewSeconds,
      userOf: config.userOf,
    });
    if (!v.ok) return v;
    if (jump !== undefined && v.value.user !== jump.user) {
      return {
        ok: false,
        result: 'wrong_principal',
        code: 'ERR_LOGIN_NOT_ALLOWED',
        reason: `proxy: the jump was opened by ${JSON.stringify(jump.user)}; the inner connection offered ${JSON.stringify(v.value.user)}'s certificate`,
      };
    }
    // The query step stops here: no call to auth until the client proves it holds the key.
    if (ctx.signature === undefined) return { ok: true, value: { identity: v.value, route, access: undefined } };
    let access: UserAccess;
    try {
      access = await config.authority.access(v.value.user, clientCertificateRef(config.crypto, v.value.certificate));
    } catch (e) {
      const err = isProxyError(e)
        ? e
        : new ProxyError('ERR_AUTHORITY_UNAVAILABLE', `proxy: cannot read the access of ${JSON.stringify(v.value.user)} from auth: ${e instanceof Error ? e.message : String(e)}`);
      if (err.code === 'ERR_AUTHORITY_UNAVAILABLE') return { ok: true, value: { identity: v.value, route, access: undefined, unavailable: err.message } };
      return refusalOf(err);
    }
    const a = decideAccess(v.value, route, access);
    if (!a.ok) return a;
    return { ok: true, value: { identity: v.value, access, route } };
  }
}

/**
 * A decision; `access` is undefined after the signature-less query step, and when auth could
 * not be asked (`unavailable` then says why, for the audit log).
 */
interface Decided {
  readonly identity: ClientIdentity;
  readonly route: ClientRoute;
  readonly access: UserAccess | undefined;
  readonly unavailable?: string;
}

/** What the user reads; the cause (auth's address, the socket error) goes to the audit log only. */
export const AUTH_UNAVAILABLE_MESSAGE =
  'portcullis: auth (the access service) cannot be reached or cannot answer now, so your access cannot be checked and no connection is made; try again in a minute (the operators see this in the proxy audit log as ERR_AUTHORITY_UNAVAILABLE)';

function tryCertificate(ctx: PublicKeyAuthContext): Certificate | undefined {
  try {
    return offeredCertificate(ctx);
  } catch {
    return undefined;
  }
}
