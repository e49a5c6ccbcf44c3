import { encodeSignature, formatPublicKey, type PublicKey, type SshSignature } from '@portcullis/cert-core';
import { encodeEvent, metaToFields } from './codec.js';
import { chainEvent, hex, initialDigest, signedRecordingPayload } from './digest.js';
import { RecordingError } from './errors.js';
import { NO_METRICS, type RecordingMetrics, type RecordingTrouble } from './health.js';
import { checkRecordingId } from './keys.js';
import type { ChannelEvent, ChannelKind, RecordingEventBody, RecordingMeta, RecordingMode, SessionMeta, SessionSummary } from './model.js';
import { TerminalScreen } from './screen.js';
import { SftpStreamParser } from './sftp.js';
import { RecordingSink } from './sink.js';
import { SpoolFile, type SpoolFsync } from './spool.js';
import type { RedisClient } from './store.js';
import { TypedLineReader } from './typed-lines.js';

/** Signs a finished recording's digest. cert-core's Signer fits; auth's remote signer may be async. */
export interface RecordingSigner {
  readonly publicKey: PublicKey;
  sign(data: Uint8Array): SshSignature | Promise<SshSignature>;
}

export interface RecorderOptions {
  readonly redis: RedisClient;
  /** Per role: strict ends the session when an event cannot be stored; best-effort spools. */
  readonly mode: RecordingMode;
  /**
   * Local directory for spool files. Both modes create one file per live session, so a killed
   * recorder is noticed by uploadSpool; best-effort also spools events there while Redis is away.
   */
  readonly spoolDir?: string;
  /** Record what the user types (off by default: passwords typed at prompts live there). */
  readonly recordInput?: boolean;
  /** Recording keys expire this long after their last write. */
  readonly retentionMs?: number;
  readonly signer?: RecordingSigner;
  /** Unix milliseconds (default Date.now). */
  readonly now?: () => number;
  /**
   * Output is coalesced into one event per flushIntervalMs (default 10) or flushBytes (default
   * 32 KiB on a channel with a pty, whose screen is replayed event by event; 256 KiB otherwise,
   * where bulk transfers would pay per event in Redis).
   */
  readonly flushIntervalMs?: number;
  readonly flushBytes?: number;
  /** A terminal snapshot after this much output (default 256 KiB) or this long with output (default 10 s). */
  readonly snapshotBytes?: number;
  readonly snapshotIntervalMs?: number;
  readonly spoolFsync?: SpoolFsync;
  /** A Redis write unanswered this long counts as failed (default 2000 ms). */
  readonly storeTimeoutMs?: number;
  /** Queued bytes that slow the session down while Redis catches up (default 4 MiB; strict 1 MiB). */
  readonly highWaterBytes?: number;
  /** Best effort, Redis and disk both failing: memory kept before dropping events (default 16 MiB). */
  readonly maxHeldBytes?: number;
  readonly onTrouble?: (t: RecordingTrouble) => void;
  readonly metrics?: RecordingMetrics;
}

type Role = 'session' | 'shell' | 'exec' | 'subsystem' | 'sftp' | 'forward';

interface ChannelState {
  role: Role;
  screen: TerminalScreen | undefined;
  sftp: SftpStreamParser | undefined;
  lines: TypedLineReader | undefined;
  bytesIn: number;
  bytesOut: number;
  sinceSnapshot: number;
  lastSnapshotT: number;
}

interface PendingChunk {
  readonly type: 'output' | 'input';
  readonly channel: number;
  readonly stream: 0 | 1;
  readonly t: number;
  readonly parts: Uint8Array[];
  /**
   * Bulk output (no pty, default flushBytes) is copied as it arrives into one buffer of exactly
   * `limit` bytes, split across events where it does not fit: no concatenation at the flush, and
   * an event that stays just under an allocator size class in Redis (256 KiB and a few bytes
   * would take 320 KiB there).
   */
  readonly slab: Buffer | undefined;
  /** Bytes at which the chunk is flushed. */
  readonly limit: number;
  size: number;
}

const PTY_FLUSH_BYTES = 32 * 1024;
/** 256 KiB less room for the event's head, digest and Redis's own entry overhead. */
const BULK_FLUSH_BYTES = 256 * 1024 - 1024;

/**
 * Slabs whose events Redis has stored, for the next bulk chunks (shared by all recorders; slabs
 * are all BULK_FLUSH_BYTES). A fresh 256 KiB per event was memory outside V8's heap, and
 * allocating it that fast made V8 run a full GC every few dozen events (--trace-gc: "external
 * memory pressure"), a quarter of a recorded download's CPU in the proxy.
 */
const freeSlabs: Buffer[] = [];
const MAX_FREE_SLABS = 16;

function takeSlab(): Buffer {
  return freeSlabs.pop() ?? Buffer.allocUnsafe(BULK_FLUSH_BYTES);
}

function returnSlab(slab: Buffer): void {
  if (freeSlabs.length < MAX_FREE_SLABS) freeSlabs.push(slab);
}

const MAX_TYPED_LINES = 10_000;
/** Bytes a terminal emulator may have queued before the session waits for it (xterm drops past 50 MB). */
const SCREEN_BACKLOG = 4 * 1024 * 1024;

type Writable<T> = { -readonly [K in keyof T]: T[K] };

/**
 * Records one session. Its methods have the signatures of the proxy's SessionTap, so the proxy
 * passes a Recorder where a tap is expected: one Recorder per session, start() first, end() last.
 *
 * Output is coalesced per channel and stream into chunks, each stamped with the offset of its
 * first byte; any other event flushes the chunk first, so events stay in the order they happened.
 * A call returns nothing on the fast path and a promise only to apply backpressure (Redis slower
 * than the session) or, in strict mode, a rejection once an event could not be stored.
 */
export class Recorder {
  private readonly o: RecorderOptions;
  private readonly now: () => number;
  private sink: RecordingSink | undefined;
  private meta!: Writable<RecordingMeta>;
  private digest: Uint8Array = new Uint8Array(0);
  private seq = 0;
  private lastT = 0;
  private pending: PendingChunk | undefined;
  private pendingTimer: NodeJS.Timeout | undefined;
  private readonly channels = new Map<number, ChannelState>();
  private primary: number | undefined;
  private readonly snapshots = new Set<Promise<void>>();
  private typedLines = 0;
  private phase: 'new' | 'live' | 'ended' = 'new';

  constructor(options: RecorderOptions) {
    this.o = options;
    this.now = options.now ?? Date.now;
  }

  get sessionId(): string | undefined {
    return this.meta?.id;
  }

  /** Events dropped so far (best effort with Redis and the disk both failing). */
  get lostEvents(): number {
    return this.sink?.lost.events ?? 0;
  }

  async start(session: SessionMeta): Promise<void> {
    if (this.phase !== 'new') throw new RecordingError('ERR_STATE', 'recording: start() called twice');
    const id = checkRecordingId(session.sessionId);
    this.phase = 'live';
    const startedAt = this.now();
    this.meta = {
      id,
      user: session.user,
      login: session.login,
      host: session.host,
      clientAddress: session.clientAddress,
      certSerial: session.certSerial.toString(),
      certKeyId: session.certKeyId,
      route: session.route,
      mode: this.o.mode,
      inputRecorded: this.o.recordInput === true,
      startedAt,
      bytesIn: 0,
      bytesOut: 0,
      state: 'live',
      lastSeq: 0,
      lostEvents: 0,
    };
    this.digest = initialDigest(id);
    const onTrouble = this.o.onTrouble ?? (() => {});
    const metrics = this.o.metrics ?? NO_METRICS;
    const startFields = metaToFields(this.meta);
    let spool: SpoolFile | undefined;
    if (this.o.spoolDir !== undefined) {
      try {
        spool = await SpoolFile.create(this.o.spoolDir, { version: 1, id, pid: process.pid, meta: startFields }, this.o.spoolFsync ?? 'interval');
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        const kind = code === 'ENOSPC' || code === 'EDQUOT' ? 'disk-full' : 'spool-error';
        metrics.count('recording_store_failures_total', 1, { reason: kind });
        onTrouble({
          kind,
          sessionId: id,
          mode: this.o.mode,
          action: this.o.mode === 'strict' ? 'session-ended' : 'holding-in-memory',
          message: `cannot create the spool file in ${this.o.spoolDir}: ${e instanceof Error ? e.message : String(e)}`,
        });
        // Strict promises that a recorder's death is noticed; without the file it would not be.
        if (this.o.mode === 'strict') {
          this.phase = 'ended'; // later calls are no-ops; end() returns
          throw new RecordingError('ERR_NOT_STORED', `recording: session ${id} cannot be recorded: no spool file (${kind})`, { cause: e });
        }
      }
    }
    const strict = this.o.mode === 'strict';
    this.sink = new RecordingSink({
      redis: this.o.redis,
      id,
      mode: this.o.mode,
      spool,
      retentionMs: this.o.retentionMs,
      timeoutMs: this.o.storeTimeoutMs ?? 2000,
      highWaterBytes: this.o.highWaterBytes ?? (strict ? 1 : 4) * 1024 * 1024,
      maxHeldBytes: this.o.maxHeldBytes ?? 16 * 1024 * 1024,
      onTrouble,
      metrics,
    });
    this.sink.enqueue({ kind: 'meta', fields: startFields });
    this.sink.enqueue({ kind: 'index', entry: { startedAt, user: session.user, host: session.host, login: session.login } });
    await this.sink.flush();
  }

  output(channel: number, stream: 0 | 1, data: Uint8Array): void | Promise<void> {
    const sink = this.liveSink();
    if (!sink) return this.notLive('output');
    const st = this.channel(channel);
    st.bytesOut += data.length;
    if (st.role === 'sftp') {
      for (const op of st.sftp!.serverData(data)) this.emit({ type: 'sftp', channel, op });
    } else if (st.role !== 'forward') {
      this.append('output', channel, stream, data);
    }
    // The emulator parses asynchronously and drops input past its own watermark: let it keep up.
    return sink.pressure() ?? (st.screen && st.screen.backlog > SCREEN_BACKLOG ? st.screen.settled() : undefined);
  }

  input(channel: number, data: Uint8Array): void | Promise<void> {
    const sink = this.liveSink();
    if (!sink) return this.notLive('input');
    const st = this.channel(channel);
    st.bytesIn += data.length;
    if (st.role === 'sftp') {
      for (const op of st.sftp!.clientData(data)) this.emit({ type: 'sftp', channel, op });
    } else if (st.role !== 'forward' && this.o.recordInput === true) {
      this.append('input', channel, 0, data);
      if (st.lines) this.typed(st.lines.push(data));
    }
    return sink.pressure();
  }

  event(e: ChannelEvent): void | Promise<void> {
    const sink = this.liveSink();
    if (!sink) return this.notLive(e.type);
    const st = this.channel(e.channel);
    switch (e.type) {
      case 'open':
        if (e.kind !== 'session') st.role = 'forward';
        this.emit({ type: 'channel', channel: e.channel, kind: e.kind as ChannelKind });
        break;
      case 'pty':
        st.screen?.dispose();
        st.screen = new TerminalScreen(e.cols, e.rows);
        if (this.meta.term === undefined) this.updateMeta({ term: e.term, cols: e.cols, rows: e.rows });
        this.emit({ type: 'pty', channel: e.channel, term: e.term, cols: e.cols, rows: e.rows });
        break;
      case 'resize':
        this.emit({ type: 'resize', channel: e.channel, cols: e.cols, rows: e.rows });
        st.screen?.resize(e.cols, e.rows);
        break;
      case 'env':
        this.emit({ type: 'env', channel: e.channel, name: e.name, value: e.value });
        break;
      case 'shell':
        st.role = 'shell';
        if (this.o.recordInput === true) st.lines = new TypedLineReader();
        this.setPrimary(e.channel, undefined);
        this.emit({ type: 'shell', channel: e.channel });
        break;
      case 'exec':
        st.role = 'exec';
        this.setPrimary(e.channel, e.command);
        this.emit({ type: 'exec', channel: e.channel, command: e.command });
        this.sink!.enqueue({ kind: 'index', entry: { startedAt: this.meta.startedAt, commands: [e.command] } });
        break;
      case 'subsystem':
        st.role = e.name === 'sftp' ? 'sftp' : 'subsystem';
        if (st.role === 'sftp') st.sftp = new SftpStreamParser();
        this.setPrimary(e.channel, `subsystem:${e.name}`);
        this.emit({ type: 'subsystem', channel: e.channel, name: e.name });
        break;
      case 'signal':
        this.emit({ type: 'signal', channel: e.channel, name: e.name });
        break;
      case 'forward':
        st.role = 'forward';
        this.emit({ type: 'forward-open', channel: e.channel, direction: e.direction, host: e.host, port: e.port, origin: e.origin });
        break;
      case 'exit':
        this.emit({
          type: 'exit',
          channel: e.channel,
          ...(e.status === undefined ? {} : { status: e.status }),
          ...(e.signal === undefined ? {} : { signal: e.signal }),
        });
        if (e.channel === this.primary) {
          this.updateMeta({
            ...(e.status === undefined ? {} : { exitStatus: e.status }),
            ...(e.signal === undefined ? {} : { exitSignal: e.signal }),
          });
        }
        break;
      case 'close':
        this.closeChannel(e.channel, st);
        break;
    }
    return sink.pressure();
  }

  async end(summary: SessionSummary): Promise<void> {
    const sink = this.liveSink();
    if (!sink) {
      if (this.phase === 'ended') return;
      throw new RecordingError('ERR_STATE', 'recording: end() before start()');
    }
    this.phase = 'ended';
    this.flushPending();
    for (const [channel, st] of this.channels) {
      if (st.sftp) for (const op of st.sftp.end()) this.emit({ type: 'sftp', channel, op });
    }
    await Promise.all(this.snapshots);
    for (const st of this.channels.values()) st.screen?.dispose();
    if (sink.lost.events > 0) this.emit({ type: 'lost', events: sink.lost.events, bytes: sink.lost.bytes, reason: 'redis and spool both failed' });
    this.emit({ type: 'end', reason: summary.reason, bytesIn: summary.bytesIn, bytesOut: summary.bytesOut, interrupted: false });
    const final: Writable<RecordingMeta> = {
      ...this.meta,
      state: 'ended',
      endedAt: this.meta.startedAt + this.lastT,
      bytesIn: summary.bytesIn,
      bytesOut: summary.bytesOut,
      endReason: summary.reason,
      lastSeq: this.seq,
      lostEvents: sink.lost.events,
      digest: hex(this.digest),
    };
    if (this.o.signer) {
      const sig = await this.o.signer.sign(signedRecordingPayload(final));
      final.signature = Buffer.from(encodeSignature(sig)).toString('base64');
      final.signedBy = formatPublicKey(this.o.signer.publicKey);
    }
    this.meta = final;
    sink.enqueue({ kind: 'meta', fields: metaToFields(final) });
    try {
      await sink.flush();
    } finally {
      sink.finish();
    }
  }

  /**
   * Resolves when everything recorded so far is stored: in Redis, or (best effort) in the spool.
   * Rejects in strict mode once an event could not be stored.
   */
  flush(): Promise<void> {
    if (!this.sink) return Promise.resolve();
    this.flushPending();
    return this.sink.flush();
  }

  /** Resolves when every event is in Redis and the spool file is gone or empty (tests, shutdown). */
  drained(): Promise<void> {
    return this.sink?.drained() ?? Promise.resolve();
  }

  /** Stops background retries, leaving any spool file for uploadSpool (service shutdown). */
  async stop(): Promise<void> {
    clearTimeout(this.pendingTimer);
    await this.sink?.stop();
  }

  private liveSink(): RecordingSink | undefined {
    return this.phase === 'live' ? this.sink : undefined;
  }

  private notLive(what: string): Promise<void> {
    if (this.phase === 'new') return Promise.reject(new RecordingError('ERR_STATE', `recording: ${what} before start()`));
    // After end() the proxy may still deliver a straggling byte; there is nowhere to put it.
    return Promise.resolve();
  }

  private channel(n: number): ChannelState {
    let st = this.channels.get(n);
    if (!st) {
      st = { role: 'session', screen: undefined, sftp: undefined, lines: undefined, bytesIn: 0, bytesOut: 0, sinceSnapshot: 0, lastSnapshotT: 0 };
      this.channels.set(n, st);
    }
    return st;
  }

  private setPrimary(channel: number, command: string | undefined): void {
    if (this.primary !== undefined) return;
    this.primary = channel;
    if (command !== undefined) this.updateMeta({ command });
  }

  private closeChannel(channel: number, st: ChannelState): void {
    if (st.sftp) for (const op of st.sftp.end()) this.emit({ type: 'sftp', channel, op });
    this.emit({ type: 'close', channel, bytesIn: st.bytesIn, bytesOut: st.bytesOut });
    const screen = st.screen;
    if (screen) void Promise.all(this.snapshots).then(() => screen.dispose());
    this.channels.delete(channel);
  }

  private typed(lines: string[]): void {
    const room = MAX_TYPED_LINES - this.typedLines;
    if (lines.length === 0 || room <= 0) return;
    const take = lines.slice(0, room);
    this.typedLines += take.length;
    this.sink!.enqueue({ kind: 'index', entry: { startedAt: this.meta.startedAt, commands: take } });
  }

  private updateMeta(fields: Partial<RecordingMeta>): void {
    Object.assign(this.meta, fields);
    this.sink!.enqueue({ kind: 'meta', fields: metaToFields(fields) });
  }

  private offset(): number {
    this.lastT = Math.max(this.lastT, this.now() - this.meta.startedAt);
    return this.lastT;
  }

  private append(type: 'output' | 'input', channel: number, stream: 0 | 1, data: Uint8Array): void {
    if (data.length === 0) return;
    const p = this.pending;
    if (p && (p.type !== type || p.channel !== channel || p.stream !== stream)) this.flushPending();
    if (!this.pending) {
      const bulk = this.o.flushBytes === undefined && type === 'output' && !this.channels.get(channel)?.screen;
      const limit = bulk ? BULK_FLUSH_BYTES : (this.o.flushBytes ?? PTY_FLUSH_BYTES);
      this.pending = { type, channel, stream, t: this.offset(), parts: [], slab: bulk ? takeSlab() : undefined, limit, size: 0 };
      this.pendingTimer = setTimeout(() => this.flushPending(), this.o.flushIntervalMs ?? 10);
    }
    const pending = this.pending;
    if (pending.slab) {
      // Copies now (the caller may reuse its buffers once the call returns).
      const n = Math.min(data.length, pending.limit - pending.size);
      pending.slab.set(n === data.length ? data : data.subarray(0, n), pending.size);
      pending.size += n;
      if (pending.size >= pending.limit) this.flushPending();
      if (n < data.length) this.append(type, channel, stream, data.subarray(n));
      return;
    }
    pending.parts.push(data);
    pending.size += data.length;
    if (pending.size >= pending.limit) this.flushPending();
  }

  private flushPending(): void {
    const p = this.pending;
    if (!p) return;
    this.pending = undefined;
    clearTimeout(this.pendingTimer);
    this.pendingTimer = undefined;
    // Concatenating copies (the caller may reuse its buffers once the call returns); the view
    // over the result does not copy again. A slab flushed mostly empty (a timer, another event)
    // is copied out, so a queued event never pins more memory than its size says.
    // A slab goes back to the pool once Redis has its event (the event is its only reader).
    const slab = p.slab;
    const own = slab !== undefined && p.size >= p.limit / 2;
    const joined = !slab ? Buffer.concat(p.parts, p.size) : own ? slab.subarray(0, p.size) : Buffer.from(slab.subarray(0, p.size));
    if (slab && !own) returnSlab(slab);
    const data = new Uint8Array(joined.buffer, joined.byteOffset, joined.byteLength);
    this.o.metrics?.count('recording_bytes_total', data.length);
    const stored = own ? () => returnSlab(slab) : undefined;
    if (p.type === 'input') {
      this.record({ type: 'input', channel: p.channel, data }, p.t, stored);
      return;
    }
    const seq = this.record({ type: 'output', channel: p.channel, stream: p.stream, data }, p.t, stored);
    const st = this.channels.get(p.channel);
    if (!st?.screen) return;
    st.screen.write(data);
    st.sinceSnapshot += data.length;
    const due =
      st.sinceSnapshot >= (this.o.snapshotBytes ?? 256 * 1024) ||
      p.t - st.lastSnapshotT >= (this.o.snapshotIntervalMs ?? 10_000);
    if (due) this.snapshot(p.channel, st, seq, p.t);
  }

  private snapshot(channel: number, st: ChannelState, seq: number, t: number): void {
    st.sinceSnapshot = 0;
    st.lastSnapshotT = t;
    const sink = this.sink!;
    const done = st
      .screen!.snapshot()
      .then((s) => {
        sink.enqueue({ kind: 'snapshot', snapshot: { channel, seq, t, cols: s.cols, rows: s.rows, screen: s.screen } });
        // The hash tells listings how far a live recording has got.
        sink.enqueue({ kind: 'meta', fields: { lastSeq: String(this.seq) } });
      })
      .catch(() => {
        // A snapshot is an optimisation; the events are the record.
      })
      .finally(() => this.snapshots.delete(done));
    this.snapshots.add(done);
  }

  private emit(body: RecordingEventBody): number {
    this.flushPending();
    return this.record(body, this.offset());
  }

  /** Numbers, stamps, chains and queues one event; returns its sequence number. */
  private record(body: RecordingEventBody, t: number, stored?: () => void): number {
    const seq = ++this.seq;
    const event = encodeEvent({ ...body, seq, t });
    this.digest = chainEvent(this.digest, event);
    this.sink!.enqueue(stored ? { kind: 'event', seq, t, event, digest: this.digest, stored } : { kind: 'event', seq, t, event, digest: this.digest });
    return seq;
  }
}
