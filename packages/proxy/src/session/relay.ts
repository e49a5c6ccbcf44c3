import type { Writable } from 'node:stream';
import type ssh2 from 'ssh2';
import type { UserAccess } from '../authority.js';
import type { AuditFn, AuditIdentity } from '../audit.js';
import { identityFields } from '../audit.js';
import type { ChannelPolicy } from '../client-auth.js';
import type { ProxyMetrics, TerminationReason } from '../metrics.js';
import type { Upstream } from '../upstream.js';
import type { ChannelEvent, SessionMeta, SessionTap } from './tap.js';

/** What a relay needs from the proxy around it. */
export interface RelayDeps {
  readonly audit: AuditFn;
  readonly metrics: ProxyMetrics | undefined;
  readonly log: (level: 'info' | 'warn' | 'error', message: string) => void;
  readonly now: () => number;
  readonly envAllowList: readonly string[];
}

export interface RelayInit {
  readonly client: ssh2.Connection;
  readonly identity: AuditIdentity;
  readonly route: SessionMeta['route'];
  readonly policy: ChannelPolicy;
  readonly access: UserAccess;
  readonly tap: SessionTap;
  /** The dialled target, or the sentence that tells the user why there is none. */
  readonly upstream: Promise<Upstream>;
  readonly deps: RelayDeps;
}

/** A live channel, as termination needs it: somewhere to say why, and a way to end it in order. */
export interface LiveChannel {
  readonly stderr: Writable;
  /** Flushes what was written, then EOF and close. */
  end(): void;
}

/**
 * One proxied client connection and its target: the state every channel shares (counters,
 * the tap, idleness, the last exit status) and the one way it ends. Channel code lives in
 * channels.ts and forwarding.ts; this class only keeps the books and tears down.
 */
export class Relay {
  readonly client: ssh2.Connection;
  readonly policy: ChannelPolicy;
  readonly access: UserAccess;
  readonly deps: RelayDeps;
  readonly upstream: Promise<Upstream>;
  /** Aborted when the connection ends: every pump and wait listens to it. */
  readonly signal: AbortSignal;
  readonly #abort = new AbortController();
  readonly #tap: SessionTap;
  readonly #route: SessionMeta['route'];
  readonly #live = new Set<LiveChannel>();
  #nextChannel = 0;
  #bytesToTarget = 0;
  #bytesToClient = 0;
  #lastActivity: number;
  #lastExit: { status?: number; signal?: string } | undefined;
  /** Tail of the tap call chain while the tap is busy; undefined when it is idle. */
  #tapPending: Promise<void> | undefined;
  #tapStarted: Promise<void> | undefined;
  #upstreamClient: ssh2.Client | undefined;
  #ended = false;
  #endReason = 'client disconnected';
  #started = false;
  #terminating = false;
  #identity: AuditIdentity;

  constructor(init: RelayInit) {
    this.client = init.client;
    this.#identity = init.identity;
    this.policy = init.policy;
    this.access = init.access;
    this.deps = init.deps;
    this.upstream = init.upstream;
    this.signal = this.#abort.signal;
    this.#tap = init.tap;
    this.#route = init.route;
    this.#lastActivity = init.deps.now();
    // Nothing is recorded for a connection that never reached its target; tap calls made
    // before the target is reached wait for start() and are dropped if it never comes.
    const start = init.upstream.then(
      (up) => {
        this.#upstreamClient = up.client;
        this.#identity = { ...this.#identity, host: up.target.name };
        up.client.on('error', (e: Error) => this.deps.log('info', `${this.#who()}: target connection error: ${e.message}`));
        up.client.once('close', () => this.#upstreamClosed(up.target.name));
        if (this.#ended) {
          up.client.end();
          return;
        }
        this.#started = true;
        this.deps.metrics?.sessionStarted();
        return this.#tap.start(this.meta());
      },
      () => {},
    );
    const p: Promise<void> = start.then(
      () => this.#tapSettled(p),
      (e: unknown) => this.#tapFailed(e),
    );
    this.#tapPending = p;
    init.client.once('close', () => this.end(this.#endReason));
  }

  /** Who and where; `host` is the inventory name once the target is resolved. */
  get identity(): AuditIdentity {
    return this.#identity;
  }

  meta(): SessionMeta {
    const id = this.#identity;
    return {
      sessionId: id.sessionId,
      user: id.user,
      login: id.login,
      host: id.host,
      clientAddress: id.clientAddress,
      certSerial: id.certSerial,
      certKeyId: id.certKeyId,
      route: this.#route,
    };
  }

  get ended(): boolean {
    return this.#ended;
  }

  /** Our own channel numbers (ssh2's are internal), as the tap and the audit log see them. */
  channelId(): number {
    return this.#nextChannel++;
  }

  /** Payload moved; keeps the connection from counting as idle (a busy port forward is not idle). */
  traffic(toTarget: number, toClient: number): void {
    this.#bytesToTarget += toTarget;
    this.#bytesToClient += toClient;
    this.#lastActivity = this.deps.now();
    this.deps.metrics?.bytes(toTarget, toClient);
  }

  /** A channel request or open also counts as activity. */
  touch(): void {
    this.#lastActivity = this.deps.now();
  }

  idleMs(now: number): number {
    return now - this.#lastActivity;
  }

  exited(exit: { status?: number; signal?: string }): void {
    this.#lastExit = exit;
  }

  track(channel: LiveChannel): () => void {
    this.#live.add(channel);
    return () => this.#live.delete(channel);
  }

  // -------------------------------------------------------------------------------------------
  // The tap: every call in order, awaited only when the tap returns a promise.

  #tapSettled(p: Promise<void> | undefined): void {
    if (this.#tapPending === p) this.#tapPending = undefined;
  }

  #tapFailed(e: unknown): void {
    this.#tapPending = undefined;
    void this.terminate('recording', `the session recording failed (${e instanceof Error ? e.message : String(e)}); the session cannot continue`);
  }

  #tapCall(call: () => void | Promise<void>): void | Promise<void> {
    const fn = (): void | Promise<void> => (this.#started ? call() : undefined);
    if (this.#tapPending === undefined) {
      let r: void | Promise<void>;
      try {
        r = fn();
      } catch (e) {
        this.#tapFailed(e);
        return Promise.reject(e instanceof Error ? e : new Error(String(e)));
      }
      if (!(r instanceof Promise)) return;
      const p: Promise<void> = r.then(
        () => this.#tapSettled(p),
        (e: unknown) => {
          this.#tapFailed(e);
          throw e;
        },
      );
      this.#tapPending = p;
      return p;
    }
    const p: Promise<void> = this.#tapPending.then(fn).then(
      () => this.#tapSettled(p),
      (e: unknown) => {
        this.#tapFailed(e);
        throw e;
      },
    );
    this.#tapPending = p;
    return p;
  }

  tapInput(channel: number, data: Buffer): void | Promise<void> {
    return this.#tapCall(() => this.#tap.input(channel, data));
  }

  tapOutput(channel: number, stream: 0 | 1, data: Buffer): void | Promise<void> {
    return this.#tapCall(() => this.#tap.output(channel, stream, data));
  }

  /** Records an event; resolves once the tap took it (never rejects: a failing tap ends the session). */
  tapEvent(e: ChannelEvent): Promise<void> {
    const r = this.#tapCall(() => this.#tap.event(e));
    return r instanceof Promise ? r.catch(() => {}) : Promise.resolve();
  }

  // -------------------------------------------------------------------------------------------
  // Ending

  /**
   * Ends the connection because of something the user did not do: says why on every live
   * session channel's stderr, then disconnects both sides.
   */
  async terminate(reason: TerminationReason, message: string): Promise<void> {
    if (this.#ended || this.#terminating) return;
    this.#terminating = true;
    this.#endReason = `terminated (${reason}): ${message}`;
    this.deps.metrics?.terminated(reason);
    this.deps.audit('session.terminated', { ...identityFields(this.identity), reason, message });
    // OpenSSH exits at once on a disconnect, dropping channel data it has not written out
    // yet; so say why on each session's stderr, close the channels (ssh then leaves by
    // itself after printing), and disconnect only when it has not done so in a second.
    const line = Buffer.from(`\r\nportcullis: ${message}\r\n`);
    for (const c of this.#live) {
      if (c.stderr.writable) c.stderr.write(line);
      c.end();
    }
    const gone = new Promise<void>((resolve) => this.client.once('close', () => resolve()));
    await Promise.race([gone, new Promise((r) => setTimeout(r, 1_000).unref())]);
    this.end(this.#endReason);
  }

  /**
   * The target's connection closed. After the user's channels are done that is the normal end;
   * while one is open the target went away under it (its sshd killed or crashed, the host
   * rebooted), and the user is told so rather than getting a bare disconnect.
   */
  #upstreamClosed(name: string): void {
    const host = JSON.stringify(name);
    if (this.#ended || this.#terminating) return;
    if (this.#live.size === 0) {
      this.end(`connection to ${host} closed`);
      return;
    }
    this.deps.log('warn', `${this.#who()}: the target closed the connection with ${this.#live.size} channel(s) open`);
    void this.terminate('target_lost', `the connection to ${host} was lost: the target closed it while the session was open (its sshd was killed, crashed or restarted); there is no exit status`);
  }

  /** Tears everything down once; the end of the connection is audited and given to the tap. */
  end(reason: string): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#endReason = reason;
    for (const c of this.#live) c.end();
    this.#live.clear();
    this.#abort.abort();
    this.client.end();
    this.#upstreamClient?.end();
    const summary = { bytesIn: this.#bytesToTarget, bytesOut: this.#bytesToClient, reason };
    if (this.#started) {
      this.deps.metrics?.sessionEnded();
      this.deps.audit('session.end', {
        ...identityFields(this.identity),
        bytesToTarget: this.#bytesToTarget,
        bytesToClient: this.#bytesToClient,
        exitStatus: this.#lastExit?.status,
        exitSignal: this.#lastExit?.signal,
        reason,
      });
      // After every pending call, so the tap sees its events in order, end last.
      void Promise.resolve(this.#tapPending)
        .catch(() => {})
        .then(() => this.#tap.end(summary))
        .catch((e: unknown) => this.deps.log('error', `${this.#who()}: session tap end failed: ${e instanceof Error ? e.message : String(e)}`));
    }
  }

  #who(): string {
    return `session ${this.identity.sessionId} (${this.identity.user} as ${this.identity.login}@${this.identity.host})`;
  }
}
