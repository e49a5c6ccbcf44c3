import { RecordingError } from './errors.js';
import type { RecordingMetrics, RecordingTrouble, RecordingTroubleKind } from './health.js';
import type { RecordingMode } from './model.js';
import type { SpoolFile } from './spool.js';
import { streamId } from './keys.js';
import { StoreFailure, itemSize, writeItems, type RedisClient, type StoreItem } from './store.js';

export interface SinkOptions {
  readonly redis: RedisClient;
  readonly id: string;
  readonly mode: RecordingMode;
  readonly spool: SpoolFile | undefined;
  readonly retentionMs: number | undefined;
  readonly timeoutMs: number;
  /** Queued bytes above which the session is slowed down (Redis slower than the session). */
  readonly highWaterBytes: number;
  /** Best effort with Redis and disk both failing: memory held before events are dropped. */
  readonly maxHeldBytes: number;
  readonly onTrouble: (t: RecordingTrouble) => void;
  readonly metrics: RecordingMetrics;
}

/** A batch sent to Redis and not yet answered; answers are taken in the order batches left. */
interface Flight {
  readonly batch: StoreItem[];
  readonly bytes: number;
  /** The id of the event the batch's first event follows. */
  readonly after: string;
  outcome: 'stored' | StoreFailure | undefined;
  /** Stored, but Redis had lost confirmed events before it (see StreamPosition). */
  lostAfter?: string | undefined;
  /** Taken back for the spool after an earlier batch failed: its answer no longer counts. */
  abandoned: boolean;
}

/**
 * Where recorded items go, in the order they were enqueued:
 *
 * - direct: pipelines to Redis with up to MAX_FLIGHTS batches (IN_FLIGHT_BYTES) unanswered, so
 *   the session, the recorder and Redis work at the same time instead of taking turns. A batch is
 *   whatever queued meanwhile. One connection runs commands in the order sent, so batches land
 *   in order; each is stored only if the stream ends at the event before it, so once one fails
 *   every later one fails too, and they all go back to the head of the queue in order
 *   (re-sending one that did land is harmless: an event the stream holds is skipped);
 * - spooling (best effort): Redis failed, so items append to the spool file; a retry timer
 *   drains the file to Redis in order and returns to direct once it is empty;
 * - holding (best effort): the spool failed too (full disk), so items wait in memory up to
 *   maxHeldBytes, then the oldest events are dropped and counted: a loss that is reported,
 *   never a silent one.
 *
 * In strict mode the first failed write is final: every later call rejects with ERR_NOT_STORED
 * so the proxy ends the session.
 */
export class RecordingSink {
  private queue: StoreItem[] = [];
  private queuedBytes = 0;
  private flights: Flight[] = [];
  private inFlightBytes = 0;
  private state: 'direct' | 'spooling' | 'holding' = 'direct';
  private running = false;
  private retryDue = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryDelay = RETRY_MIN_MS;
  private drainOffset = -1;
  /** The id of the last event taken from the queue, to Redis or the spool ('0-0': none yet). */
  private tail = '0-0';
  /** The id of the last event drained from the spool (the spool's marks say it too). */
  private drainTail: string | undefined;
  private failure: RecordingError | undefined;
  /** Kinds already reported since the last recovery: one callback per kind per outage, not per retry. */
  private readonly reported = new Set<RecordingTroubleKind>();
  private waiters: { resolve: () => void; reject: (e: unknown) => void; until: 'flushed' | 'drained' | 'low'; target: number }[] = [];
  /** Items ever enqueued, and items stored or spooled: FIFO, so `done >= n` means the first n are. */
  private enqueued = 0;
  private done = 0;
  private finishing = false;
  /** After finish(): whether the spool file is removed (drained() waits for it then). */
  private spoolGone = false;
  private removing = false;
  private stopped = false;
  readonly lost = { events: 0, bytes: 0 };

  /**
   * A cluster client may retry one command (MOVED, TRYAGAIN) behind a later one: a batch
   * overtaken that way would fail its predecessor check and send the session to the spool. One
   * batch at a time there.
   */
  private readonly maxFlights: number;
  /**
   * No more unanswered than the session may queue: a strict session (1 MiB) keeps the output a
   * client may have seen and Redis may not have to what it was with one batch at a time.
   */
  private readonly maxInFlightBytes: number;

  constructor(private readonly o: SinkOptions) {
    this.maxFlights = o.redis.isCluster ? 1 : MAX_FLIGHTS;
    this.maxInFlightBytes = Math.max(1, Math.min(IN_FLIGHT_BYTES, o.highWaterBytes));
  }

  get failed(): RecordingError | undefined {
    return this.failure;
  }

  /** Batches sent to Redis and not yet answered. */
  get inFlight(): number {
    return this.flights.length;
  }

  enqueue(item: StoreItem): void {
    if (this.failure || this.stopped) return;
    this.queue.push(item);
    this.enqueued++;
    this.queuedBytes += itemSize(item);
    if (this.state === 'holding' && this.queuedBytes > this.o.maxHeldBytes) this.dropOldest();
    this.kick();
  }

  /**
   * Backpressure for the session: a promise while too much waits for Redis, a rejection once a
   * strict recording has failed, nothing otherwise. Held items never block: a broken disk must
   * not freeze best-effort sessions.
   */
  pressure(): Promise<void> | undefined {
    if (this.failure) return Promise.reject(this.failure);
    if (this.state === 'holding' || this.queuedBytes <= this.o.highWaterBytes) return undefined;
    return this.wait('low');
  }

  /**
   * Resolves when everything enqueued before the call is in Redis or in the spool (or held, if
   * neither works): items enqueued meanwhile do not keep it waiting.
   */
  flush(): Promise<void> {
    return this.wait('flushed');
  }

  /** Resolves when everything is in Redis and the spool is empty. */
  drained(): Promise<void> {
    return this.wait('drained');
  }

  /**
   * The session is over: remove the spool file once everything is in Redis, retrying in the
   * background meanwhile. If the process exits first the file stays for uploadSpool.
   */
  finish(): void {
    this.finishing = true;
    this.settle();
  }

  /** Stops retrying and closes the spool file, leaving it in place (service shutdown). */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    await this.o.spool?.close();
  }

  private wait(until: 'flushed' | 'drained' | 'low'): Promise<void> {
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject, until, target: this.enqueued });
      this.settle();
    });
  }

  private isDrained(): boolean {
    return this.isFlushed() && this.state === 'direct' && (!this.o.spool || this.drainOffset < 0 || this.drainOffset >= this.o.spool.bytes);
  }

  private isFlushed(target = this.enqueued): boolean {
    return this.done >= target || this.state === 'holding';
  }

  private settle(): void {
    if (this.failure) {
      for (const w of this.waiters.splice(0)) w.reject(this.failure);
      return;
    }
    const drained = this.isDrained() && (!this.finishing || this.spoolGone || !this.o.spool);
    const low = this.queuedBytes <= this.o.highWaterBytes / 2 || this.state === 'holding';
    this.waiters = this.waiters.filter((w) => {
      const ok = w.until === 'flushed' ? this.isFlushed(w.target) : w.until === 'drained' ? drained : low;
      if (ok) w.resolve();
      return !ok;
    });
    if (this.finishing && !this.removing && this.isDrained() && this.o.spool) {
      this.removing = true;
      void this.o.spool
        .remove()
        .catch(() => {})
        .then(() => {
          this.spoolGone = true;
          this.settle();
        });
    }
  }

  private kick(): void {
    if (this.stopped || this.failure) return;
    if (this.state === 'direct' && !this.retryDue && !this.running) this.launch();
    else if (!this.running) void this.run();
  }

  /** At least one item (when any), then up to BATCH_ITEMS or `maxBytes`. */
  private takeBatch(maxBytes = BATCH_BYTES): { batch: StoreItem[]; bytes: number } {
    let bytes = 0;
    let n = 0;
    while (n < this.queue.length && n < BATCH_ITEMS && bytes < maxBytes) bytes += itemSize(this.queue[n++]!);
    const batch = this.queue.splice(0, n);
    this.queuedBytes -= bytes;
    return { batch, bytes };
  }

  /** Direct: sends batches while there is room in flight. */
  private launch(): void {
    while (this.queue.length > 0 && this.flights.length < this.maxFlights && this.inFlightBytes < this.maxInFlightBytes) {
      const { batch, bytes } = this.takeBatch(Math.min(BATCH_BYTES, this.maxInFlightBytes - this.inFlightBytes));
      // With nothing in flight, the predecessor is confirmed: a stream now ending below it lost it.
      const afterStored = this.flights.length === 0;
      const flight: Flight = { batch, bytes, after: this.tail, outcome: undefined, abandoned: false };
      this.tail = lastEventId(batch) ?? this.tail;
      this.flights.push(flight);
      this.inFlightBytes += bytes;
      writeItems(this.o.redis, this.o.id, batch, this.o, { after: flight.after, afterStored }).then(
        (r) => {
          flight.lostAfter = r.lostAfter;
          this.landed(flight, 'stored');
        },
        (e: unknown) => this.landed(flight, e instanceof StoreFailure ? e : new StoreFailure('error', e instanceof Error ? e.message : String(e))),
      );
    }
    this.settle();
  }

  /** An answer from Redis; acted on once every batch sent before it has its answer too. */
  private landed(flight: Flight, outcome: 'stored' | StoreFailure): void {
    if (flight.abandoned) return;
    flight.outcome = outcome;
    for (let head = this.flights[0]; head?.outcome !== undefined; head = this.flights[0]) {
      if (head.outcome === 'stored') {
        this.flights.shift();
        this.inFlightBytes -= head.bytes;
        this.o.metrics.count('recording_events_stored_total', countEvents(head.batch));
        this.done += head.batch.length;
        for (const item of head.batch) if (item.kind === 'event') item.stored?.();
        if (head.lostAfter !== undefined) this.redisLost(head.lostAfter, head.after);
        continue;
      }
      const f = head.outcome;
      const kind: RecordingTroubleKind = f.reason === 'oom' ? 'redis-oom' : f.reason === 'unreachable' ? 'redis-unreachable' : 'redis-error';
      this.o.metrics.count('recording_store_failures_total', 1, { reason: kind });
      if (this.o.mode === 'strict') {
        this.fail(kind, f.message);
        break;
      }
      // This batch and all sent after it, whatever their answers, go to the spool in order.
      this.tail = head.after;
      const back: StoreItem[] = [];
      for (const x of this.flights) {
        x.abandoned = true;
        back.push(...x.batch);
      }
      this.queue = back.concat(this.queue);
      this.queuedBytes += this.inFlightBytes;
      this.flights = [];
      this.inFlightBytes = 0;
      this.state = 'spooling';
      this.trouble(kind, 'spooling', `redis would not store the recording (${f.message}); spooling to disk`);
      this.scheduleRetry();
      break;
    }
    this.settle();
    this.kick();
  }

  private async run(): Promise<void> {
    this.running = true;
    try {
      for (;;) {
        if (this.failure || this.stopped) break;
        if (this.retryDue) {
          this.retryDue = false;
          await this.retry();
          continue;
        }
        if (this.queue.length === 0 || this.state !== 'spooling') break;
        const { batch } = this.takeBatch();
        this.settle();
        await this.spoolBatch(batch);
      }
    } finally {
      this.running = false;
      this.settle();
    }
    // Back to direct (the retry drained the spool): what queued meanwhile goes to Redis.
    if (this.state === 'direct' && !this.retryDue && !this.stopped && !this.failure) this.launch();
  }

  private async spoolBatch(batch: StoreItem[]): Promise<void> {
    const spool = this.o.spool;
    const after = this.tail;
    this.tail = lastEventId(batch) ?? after;
    try {
      if (!spool) throw new Error('no spool directory is configured');
      if (this.drainOffset < 0) this.drainOffset = await spool.itemsOffset();
      // The mark lets a drain (here or by uploadSpool) check each event's predecessor.
      await spool.append([{ kind: 'after', id: after }, ...batch]);
      this.o.metrics.count('recording_events_spooled_total', countEvents(batch));
      this.done += batch.length;
      this.settle();
      if (this.state === 'holding') this.state = 'spooling';
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      const kind: RecordingTroubleKind = code === 'ENOSPC' || code === 'EDQUOT' ? 'disk-full' : 'spool-error';
      this.o.metrics.count('recording_store_failures_total', 1, { reason: kind });
      // Back to the head of the queue, in order, to wait for either Redis or the disk.
      this.tail = after;
      this.queue.unshift(...batch);
      this.queuedBytes += batch.reduce((n, i) => n + itemSize(i), 0);
      this.state = 'holding';
      this.trouble(kind, 'holding-in-memory', `the spool cannot take the recording either (${e instanceof Error ? e.message : String(e)}); holding up to ${this.o.maxHeldBytes} bytes in memory`);
      if (this.queuedBytes > this.o.maxHeldBytes) this.dropOldest();
      this.scheduleRetry();
    }
  }

  /** A retry tick: drain the spool to Redis; once empty, go direct (the loop then sends the queue). */
  private async retry(): Promise<void> {
    const spool = this.o.spool;
    while (spool && this.drainOffset >= 0 && this.drainOffset < spool.bytes) {
      let next: number;
      let items: StoreItem[];
      try {
        ({ items, next } = await spool.read(this.drainOffset, BATCH_BYTES));
        if (items.length === 0) throw new Error(`spool ${spool.path} is unreadable at offset ${this.drainOffset}`);
      } catch (e) {
        this.o.metrics.count('recording_store_failures_total', 1, { reason: 'spool-error' });
        this.trouble('spool-error', this.state === 'holding' ? 'holding-in-memory' : 'spooling', e instanceof Error ? e.message : String(e));
        this.scheduleRetry();
        return;
      }
      try {
        // Each slice follows one drained (or confirmed) before it: the predecessor was stored.
        const r = await writeItems(this.o.redis, this.o.id, items, this.o, { after: this.drainTail, afterStored: true });
        this.drainTail = r.tail;
        if (r.lostAfter !== undefined) this.redisLost(r.lostAfter, undefined);
      } catch {
        // Still down. Held items get another chance at the disk; then wait for the next tick.
        if (this.state === 'holding') this.state = 'spooling';
        this.scheduleRetry();
        return;
      }
      this.o.metrics.count('recording_events_stored_total', countEvents(items));
      this.drainOffset = next;
    }
    const was = this.state;
    this.state = 'direct';
    this.retryDelay = RETRY_MIN_MS;
    if (was !== 'direct' && this.reported.size > 0) {
      this.reported.clear();
      this.o.onTrouble({ kind: 'recovered', sessionId: this.o.id, mode: this.o.mode, action: 'drained', message: 'redis stores the recording again; the spool is drained' });
    }
  }

  private scheduleRetry(): void {
    if (this.retryTimer || this.stopped) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.retryDue = true;
      this.kick();
    }, this.retryDelay);
    this.retryTimer.unref();
    this.retryDelay = Math.min(this.retryDelay * 2, RETRY_MAX_MS);
  }

  private dropOldest(): void {
    let events = 0;
    let bytes = 0;
    const keep: StoreItem[] = [];
    for (const item of this.queue) {
      // Metadata and index entries are small and say what the recording is: keep them.
      if (this.queuedBytes - bytes > this.o.maxHeldBytes / 2 && (item.kind === 'event' || item.kind === 'snapshot')) {
        bytes += itemSize(item);
        if (item.kind === 'event') events++;
        continue;
      }
      keep.push(item);
    }
    this.done += this.queue.length - keep.length;
    this.queue = keep;
    this.queuedBytes -= bytes;
    this.lost.events += events;
    this.lost.bytes += bytes;
    this.o.metrics.count('recording_events_lost_total', events);
    this.trouble('events-lost', 'dropping', `neither redis nor the spool would take the recording; ${this.lost.events} events dropped so far`, true);
  }

  /** Redis no longer has events it confirmed; they cannot be sent again, so the gap is reported. */
  private redisLost(streamEnd: string, expected: string | undefined): void {
    this.o.metrics.count('recording_store_failures_total', 1, { reason: 'redis-lost' });
    this.trouble('events-lost', 'continuing', `redis lost events it had confirmed: the stream ended at ${streamEnd}${expected ? `, not ${expected}` : ''}; recording goes on after the gap`, true);
  }

  private fail(kind: RecordingTroubleKind, message: string): void {
    this.failure = new RecordingError('ERR_NOT_STORED', `recording: session ${this.o.id} could not be recorded (${kind}: ${message}); strict recording ends the session`);
    this.queue = [];
    this.queuedBytes = 0;
    for (const x of this.flights) x.abandoned = true;
    this.flights = [];
    this.inFlightBytes = 0;
    this.trouble(kind, 'session-ended', message);
    // The file stays: the recording is short of its end, and uploadSpool (next start, or the
    // service's periodic run) marks it interrupted. Closed, so this process no longer owns it.
    void this.o.spool?.close().catch(() => {});
  }

  private trouble(kind: RecordingTroubleKind, action: RecordingTrouble['action'], message: string, always = false): void {
    if (!always && this.reported.has(kind)) return;
    this.reported.add(kind);
    this.o.onTrouble({ kind, sessionId: this.o.id, mode: this.o.mode, action, message });
  }
}

const BATCH_ITEMS = 1024;
const BATCH_BYTES = 4 * 1024 * 1024;
/**
 * Batches and bytes unanswered at once (bytes also at most highWaterBytes). Four keep Redis busy
 * while the recorder prepares the next (bench/recording.ts); the bytes bound the memory a
 * session holds beyond highWaterBytes.
 */
const MAX_FLIGHTS = 4;
const IN_FLIGHT_BYTES = 4 * 1024 * 1024;
const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 5000;

function lastEventId(items: readonly StoreItem[]): string | undefined {
  for (let i = items.length - 1; i >= 0; i--) {
    const item = items[i]!;
    if (item.kind === 'event') return streamId(item.t, item.seq);
  }
  return undefined;
}

function countEvents(items: readonly StoreItem[]): number {
  let n = 0;
  for (const i of items) if (i.kind === 'event') n++;
  return n;
}
