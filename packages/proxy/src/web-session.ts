import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { ClientChannel } from 'ssh2';
import { formatPublicKey, generateKey, parseCertificateText, publicPart } from '@portcullis/cert-core';
import type { Certificate, CryptoBackend } from '@portcullis/cert-core';
import { nodeCrypto } from '@portcullis/cert-core/node';
import type { AuthorityClient, AuthorityNotice, UserAccess } from './authority.js';
import { identityFields, safeAudit } from './audit.js';
import type { AuditFn, AuditIdentity, ProxyAuditEvent } from './audit.js';
import { clientCertificateRef, decideAccess, decideClientCertificate } from './client-auth.js';
import { DEFAULT_REVOCATION, DEFAULT_TIMEOUTS } from './config.js';
import type { ProxyTimeouts, RevocationSettings } from './config.js';
import { ProxyError, isProxyError } from './errors.js';
import type { ProxyMetrics } from './metrics.js';
import { resolveTarget } from './routing.js';
import { NO_TAP } from './session/tap.js';
import type { ChannelEvent, SessionMeta, SessionTap } from './session/tap.js';
import { TrustCache } from './trust.js';
import { dialTarget } from './upstream.js';
import { lockCovers, lockEndMessage } from './locks.js';
import type { Upstream } from './upstream.js';

/*
 * The proxy's session engine for a client that does not speak SSH (the browser terminal). The
 * gateway has authenticated the browser and had auth mint a user certificate for this one
 * session (that is where a role's per-session second factor is asked); from there on this is
 * the SSH path: the certificate is checked as the listener checks one (CA, validity, principal
 * = login, KRL, key id names the user), auth's access() and the login rule are applied, the
 * target is resolved and dialled with a minute-scale upstream certificate and its host
 * certificate verified, and every byte passes a SessionTap (the Recorder) with route `web`.
 */

export interface WebSessionEngineOptions {
  readonly authority: AuthorityClient;
  /** The recorder factory (SessionRecording.tap); default none. */
  readonly tap?: (meta: SessionMeta, access: UserAccess) => SessionTap;
  readonly audit?: (event: ProxyAuditEvent) => void;
  readonly metrics?: ProxyMetrics;
  readonly log?: (level: 'info' | 'warn' | 'error', message: string) => void;
  readonly now?: () => number;
  readonly crypto?: CryptoBackend;
  readonly timeouts?: Partial<Pick<ProxyTimeouts, 'dialMs' | 'keepaliveIntervalMs' | 'keepaliveCountMax' | 'caCacheMs' | 'idleCheckMs'>>;
  readonly revocation?: Partial<RevocationSettings>;
  /** Who a certificate belongs to (as ProxyConfig.userOf); default the key id's first field. */
  readonly userOf?: (cert: Certificate) => string | undefined;
}

export interface WebSessionRequest {
  /** The signed-in user as auth names them (GET /v1/me). */
  readonly user: string;
  /** The user certificate auth minted for this session (POST /v1/certs/user), parsed or as its line. */
  readonly certificate: Certificate | string;
  readonly login: string;
  /** The host as the user typed or picked it; auth's inventory resolves it. */
  readonly host: string;
  readonly cols: number;
  readonly rows: number;
  readonly term?: string;
  /** The browser's address as the gateway saw it. */
  readonly clientAddress: string;
}

export interface WebTerminalExit {
  readonly status?: number;
  readonly signal?: string;
  readonly reason: string;
}

/** A running shell: what the gateway relays to and from a WebSocket. */
export interface WebTerminal {
  readonly sessionId: string;
  /** The inventory name the session reached. */
  readonly host: string;
  readonly login: string;
  /** Keystrokes and pastes toward the shell. */
  write(data: Uint8Array): void;
  /** Terminal output, in order, each chunk after the recorder took it. */
  onOutput(listener: (data: Uint8Array) => void): void;
  resize(cols: number, rows: number): void;
  /** Stops reading the target while the browser's socket is full. */
  pause(): void;
  resume(): void;
  close(reason: string): void;
  /** Once, when the session is over for any reason (exit, close, lock, idle, failure). */
  onExit(listener: (exit: WebTerminalExit) => void): void;
}

/**
 * A public key line for the gateway's POST /v1/certs/user. The certificate is the session's
 * evidence that auth, now, with the second factor a role may demand, issued for this user; it
 * never logs in anywhere (the target gets the upstream certificate), so the private half is
 * dropped at once.
 */
export function webSessionKeyLine(crypto: CryptoBackend = nodeCrypto): string {
  return formatPublicKey(publicPart(generateKey(crypto, 'ssh-ed25519')), 'portcullis-web');
}

const defaultUserOf = (cert: Certificate): string | undefined => /^(\S+)/.exec(cert.keyId)?.[1];

export class WebSessionEngine {
  readonly #o: WebSessionEngineOptions;
  readonly #trust: TrustCache;
  readonly #audit: AuditFn;
  readonly #log: (level: 'info' | 'warn' | 'error', message: string) => void;
  readonly #now: () => number;
  readonly #crypto: CryptoBackend;
  readonly #timeouts: typeof DEFAULT_TIMEOUTS;
  readonly #live = new Set<WebShell>();
  #unsubscribe: (() => void) | undefined;
  #sweep: NodeJS.Timeout | undefined;

  constructor(o: WebSessionEngineOptions) {
    this.#o = o;
    this.#log = o.log ?? ((level, m) => process.stderr.write(`proxy web ${level}: ${m}\n`));
    this.#now = o.now ?? Date.now;
    this.#crypto = o.crypto ?? nodeCrypto;
    this.#timeouts = { ...DEFAULT_TIMEOUTS, ...o.timeouts };
    this.#audit = safeAudit(o.audit ?? (() => {}), this.#log, this.#now);
    this.#trust = new TrustCache({
      authority: o.authority,
      crypto: this.#crypto,
      now: this.#now,
      revocation: { ...DEFAULT_REVOCATION, ...o.revocation },
      caCacheMs: this.#timeouts.caCacheMs,
      log: this.#log,
    });
  }

  get live(): number {
    return this.#live.size;
  }

  /** Loads the KRL, follows auth's lock and revocation notices, and checks idleness. */
  async start(): Promise<void> {
    await this.#trust.start();
    this.#unsubscribe = this.#o.authority.onNotice((n) => void this.#onNotice(n));
    this.#sweep = setInterval(() => {
      const now = this.#now();
      for (const s of this.#live) {
        const limit = s.access.idleTimeout;
        if (limit > 0 && now - s.lastActivity > limit * 1000) s.terminate(`no activity for ${limit} s; disconnected`);
      }
    }, this.#timeouts.idleCheckMs);
    this.#sweep.unref();
  }

  stop(reason = 'the gateway is shutting down'): void {
    this.#unsubscribe?.();
    if (this.#sweep !== undefined) clearInterval(this.#sweep);
    this.#trust.stop();
    for (const s of this.#live) s.terminate(reason);
  }

  /**
   * Authorizes, dials and starts a shell. Refusals are ProxyErrors whose message is for the
   * user; each is audited as `session.refused` with the stage, as on the SSH path.
   */
  async open(req: WebSessionRequest): Promise<WebTerminal> {
    const r = { ...req, certificate: typeof req.certificate === 'string' ? parseCertificateText(req.certificate, 'web session certificate').cert : req.certificate };
    const identity: AuditIdentity = {
      sessionId: randomUUID(),
      user: r.user,
      login: r.login,
      host: r.host,
      clientAddress: r.clientAddress,
      certSerial: r.certificate.serial,
      certKeyId: r.certificate.keyId,
    };
    const route = { kind: 'target', login: r.login, host: r.host } as const;
    let stage: 'auth' | 'route' | 'upstream' | 'channel' = 'auth';
    const t0 = performance.now();
    try {
      const verdict = decideClientCertificate({
        certificate: r.certificate,
        route,
        peerAddress: r.clientAddress,
        now: this.#now(),
        trustedCAs: await this.#trust.userCAs(),
        isRevoked: this.#trust.isRevoked,
        crypto: this.#crypto,
        skewSeconds: 0,
        userOf: this.#o.userOf ?? defaultUserOf,
      });
      if (!verdict.ok) throw new ProxyError(verdict.code === 'ERR_LOGIN_NOT_ALLOWED' ? 'ERR_LOGIN_NOT_ALLOWED' : 'ERR_ACCESS_DENIED', verdict.reason);
      if (verdict.value.user !== r.user) {
        throw new ProxyError('ERR_ACCESS_DENIED', `proxy: the certificate is ${JSON.stringify(verdict.value.user)}'s, the browser is ${JSON.stringify(r.user)}'s`);
      }
      const client = clientCertificateRef(this.#crypto, r.certificate);
      const access = await this.#o.authority.access(r.user, client);
      const allowed = decideAccess(verdict.value, route, access);
      if (!allowed.ok) throw new ProxyError('ERR_LOGIN_NOT_ALLOWED', allowed.reason);
      if (!verdict.value.permissions.pty) throw new ProxyError('ERR_FORBIDDEN', 'proxy: the certificate has no permit-pty; a browser terminal needs one');
      stage = 'route';
      const target = await resolveTarget(this.#o.authority, r.host);
      stage = 'upstream';
      const up = await dialTarget({
        authority: this.#o.authority,
        target,
        user: r.user,
        login: r.login,
        requestId: identity.sessionId,
        client,
        hostCAs: await this.#trust.hostCAs(),
        isRevoked: this.#trust.isRevoked,
        crypto: this.#crypto,
        now: this.#now,
        timeoutMs: this.#timeouts.dialMs,
        keepaliveIntervalMs: this.#timeouts.keepaliveIntervalMs,
        keepaliveCountMax: this.#timeouts.keepaliveCountMax,
      });
      const seconds = (performance.now() - t0) / 1000;
      this.#o.metrics?.dial(seconds, true);
      const id = { ...identity, host: target.name };
      this.#audit('session.start', {
        ...identityFields(id),
        route: 'web',
        targetAddress: `${target.address}:${target.port}`,
        dialMs: Math.round(seconds * 1000),
        upstreamCertSerial: up.certificate.serial.toString(),
        hostCertKeyId: up.hostCertificate.keyId,
      });
      stage = 'channel';
      let tap = NO_TAP;
      if (this.#o.tap !== undefined) {
        try {
          tap = this.#o.tap({ ...id, route: 'web' }, access);
          await tap.start({ ...id, route: 'web' });
        } catch (e) {
          up.client.end();
          throw new ProxyError('ERR_TERMINATED', `proxy: the session recorder is unavailable; the session cannot start (${e instanceof Error ? e.message : String(e)})`);
        }
      }
      const shell = new WebShell(id, access, up, tap, this.#audit, this.#o.metrics, this.#log, this.#now);
      try {
        await shell.begin(r.term ?? 'xterm-256color', r.cols, r.rows);
      } catch (e) {
        shell.terminate(e instanceof Error ? e.message : String(e));
        throw new ProxyError('ERR_UPSTREAM', `proxy: ${e instanceof Error ? e.message : String(e)}`);
      }
      this.#live.add(shell);
      this.#o.metrics?.sessionStarted();
      shell.onExit(() => {
        this.#live.delete(shell);
        this.#o.metrics?.sessionEnded();
      });
      return shell;
    } catch (e) {
      if (stage === 'upstream') this.#o.metrics?.dial((performance.now() - t0) / 1000, false);
      const err = isProxyError(e) ? e : new ProxyError('ERR_UPSTREAM', `proxy: ${e instanceof Error ? e.message : String(e)}`);
      this.#audit('session.refused', { ...identityFields(identity), route: 'web', stage, reason: err.code, message: err.message });
      throw err;
    }
  }

  /** Locks end matching sessions now; every notice then re-checks each session's user with auth. */
  async #onNotice(n: AuthorityNotice): Promise<void> {
    for (const s of this.#live) {
      const id = s.identity;
      if (n.kind === 'lock' && lockCovers(n.target, id)) s.terminate(lockEndMessage(n.target, n.message));
    }
    for (const s of [...this.#live]) {
      try {
        const access = await this.#o.authority.access(s.identity.user);
        if (!access.logins.includes(s.identity.login)) s.terminate(`${s.identity.user} may no longer log in as ${s.identity.login}`);
      } catch (e) {
        if (isProxyError(e, 'ERR_ACCESS_DENIED')) s.terminate(e.message.replace(/^proxy: /, ''));
      }
    }
  }
}

/** One shell channel on the target, relayed to a non-SSH client through the tap. */
class WebShell implements WebTerminal {
  readonly #outputs: ((data: Uint8Array) => void)[] = [];
  readonly #exits: ((exit: WebTerminalExit) => void)[] = [];
  #channel: ClientChannel | undefined;
  #tapPending: Promise<void> | undefined;
  #status: { status?: number; signal?: string } = {};
  #ended: WebTerminalExit | undefined;
  #bytesIn = 0;
  #bytesOut = 0;
  #paused = false;
  #tapWaits = 0;
  lastActivity: number;

  constructor(
    readonly identity: AuditIdentity,
    readonly access: UserAccess,
    private readonly up: Upstream,
    private readonly tap: SessionTap,
    private readonly audit: AuditFn,
    private readonly metrics: ProxyMetrics | undefined,
    private readonly log: (level: 'info' | 'warn' | 'error', message: string) => void,
    private readonly now: () => number,
  ) {
    this.lastActivity = now();
    up.client.once('close', () => this.#end(`connection to ${JSON.stringify(up.target.name)} closed`));
    up.client.on('error', (e: Error) => this.log('info', `web session ${identity.sessionId}: target: ${e.message}`));
  }

  get sessionId(): string {
    return this.identity.sessionId;
  }
  get host(): string {
    return this.identity.host;
  }
  get login(): string {
    return this.identity.login;
  }

  async begin(term: string, cols: number, rows: number): Promise<void> {
    await this.#tapEvent({ type: 'open', channel: 0, kind: 'session' });
    await this.#tapEvent({ type: 'pty', channel: 0, term, cols, rows });
    await this.#tapEvent({ type: 'shell', channel: 0 });
    this.audit('session.exec', { ...identityFields(this.identity), channel: 0, kind: 'shell', pty: true, route: 'web' });
    const channel = await new Promise<ClientChannel>((resolve, reject) =>
      this.up.client.shell({ term, cols, rows, width: 0, height: 0 }, (err, stream) => (err ? reject(new Error(`the target refused the shell: ${err.message}`)) : resolve(stream))),
    );
    this.#channel = channel;
    channel.on('exit', (code: number | null, signal?: string) => {
      this.#status = code !== null && code !== undefined ? { status: code } : { signal: (signal ?? 'KILL').replace(/^SIG/, '') };
    });
    channel.on('data', (d: Buffer) => this.#fromTarget(channel, 0, d));
    channel.stderr.on('data', (d: Buffer) => this.#fromTarget(channel.stderr, 1, d));
    channel.once('close', () => this.#end(this.#status.status !== undefined ? `exit status ${this.#status.status}` : this.#status.signal !== undefined ? `signal ${this.#status.signal}` : 'the shell closed'));
  }

  /** Output reaches the client only after the tap took it (a strict recorder may say no). */
  #fromTarget(stream: NodeJS.ReadableStream, kind: 0 | 1, d: Buffer): void {
    this.lastActivity = this.now();
    this.#bytesOut += d.length;
    const r = this.#tapCall(() => this.tap.output(0, kind, d));
    if (r === undefined) return this.#emit(d);
    stream.pause();
    this.#tapWaits++;
    r.then(
      () => {
        this.#emit(d);
        this.#tapWaits--;
        if (!this.#paused) stream.resume();
      },
      () => {},
    );
  }

  #emit(d: Uint8Array): void {
    if (this.#ended !== undefined) return;
    for (const l of this.#outputs) l(d);
  }

  /** Tap calls in order; synchronous while the tap is, chained while it is busy. A failure ends the session. */
  #tapCall(fn: () => void | Promise<void>): Promise<void> | undefined {
    const fail = (e: unknown): never => {
      this.terminate(`the session recording failed: ${e instanceof Error ? e.message : String(e)}`);
      throw e;
    };
    if (this.#tapPending === undefined) {
      let r: void | Promise<void>;
      try {
        r = fn();
      } catch (e) {
        const p = Promise.resolve().then(() => fail(e));
        p.catch(() => {});
        return p;
      }
      if (r === undefined) return undefined;
      const p: Promise<void> = r.catch(fail).finally(() => {
        if (this.#tapPending === p) this.#tapPending = undefined;
      });
      this.#tapPending = p;
      return p;
    }
    const p: Promise<void> = this.#tapPending.then(fn).catch(fail).finally(() => {
      if (this.#tapPending === p) this.#tapPending = undefined;
    });
    this.#tapPending = p;
    return p;
  }

  #tapEvent(e: ChannelEvent): Promise<void> {
    return this.#tapCall(() => this.tap.event(e)) ?? Promise.resolve();
  }

  write(data: Uint8Array): void {
    if (this.#ended !== undefined || this.#channel === undefined) return;
    this.lastActivity = this.now();
    this.#bytesIn += data.length;
    const channel = this.#channel;
    const r = this.#tapCall(() => this.tap.input(0, data));
    if (r === undefined) channel.write(data);
    else r.then(() => channel.write(data), () => {});
  }

  onOutput(listener: (data: Uint8Array) => void): void {
    this.#outputs.push(listener);
  }

  resize(cols: number, rows: number): void {
    if (this.#ended !== undefined || this.#channel === undefined) return;
    this.lastActivity = this.now();
    this.#channel.setWindow(rows, cols, 0, 0);
    void this.#tapEvent({ type: 'resize', channel: 0, cols, rows }).catch(() => {});
  }

  pause(): void {
    this.#paused = true;
    this.#channel?.pause();
  }

  resume(): void {
    this.#paused = false;
    if (this.#tapWaits === 0) this.#channel?.resume();
  }

  close(reason: string): void {
    this.#end(reason);
  }

  /** Ended from the proxy's side (lock, idle, revocation): audited as a termination. */
  terminate(reason: string): void {
    if (this.#ended !== undefined) return;
    this.audit('session.terminated', { ...identityFields(this.identity), reason, route: 'web' });
    this.#end(reason);
  }

  onExit(listener: (exit: WebTerminalExit) => void): void {
    if (this.#ended !== undefined) listener(this.#ended);
    else this.#exits.push(listener);
  }

  #end(reason: string): void {
    if (this.#ended !== undefined) return;
    this.#ended = { ...this.#status, reason };
    this.#channel?.close();
    this.up.client.end();
    this.metrics?.bytes(this.#bytesIn, this.#bytesOut);
    this.audit('session.end', {
      ...identityFields(this.identity),
      route: 'web',
      reason,
      bytesIn: this.#bytesIn,
      bytesOut: this.#bytesOut,
      exitStatus: this.#status.status,
      exitSignal: this.#status.signal,
    });
    const exit = this.#status.status !== undefined ? { type: 'exit', channel: 0, status: this.#status.status } as const : this.#status.signal !== undefined ? { type: 'exit', channel: 0, signal: this.#status.signal } as const : undefined;
    // The recording ends after everything already handed to the tap.
    void (async () => {
      try {
        if (exit !== undefined) await this.#tapEvent(exit);
        await this.#tapEvent({ type: 'close', channel: 0 });
        await this.tap.end({ bytesIn: this.#bytesIn, bytesOut: this.#bytesOut, reason });
      } catch (e) {
        this.log('error', `web session ${this.identity.sessionId}: the recording did not end cleanly: ${e instanceof Error ? e.message : String(e)}`);
      }
    })();
    for (const l of this.#exits.splice(0)) l(this.#ended);
  }
}
