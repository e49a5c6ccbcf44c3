import type { RecordingEvent, ScreenSnapshot } from './model.js';
import { decodeEntry, readEntries, snapshotAtOrBefore, type RedisClient, type StoredEntry } from './store.js';

/**
 * What a player receives: a screen to start from (after a seek or when joining live), events,
 * and gaps (sequence numbers that are missing: a damaged or incomplete recording says so).
 */
export type ReplayItem =
  | { readonly kind: 'screen'; readonly snapshot: ScreenSnapshot }
  | { readonly kind: 'event'; readonly event: RecordingEvent }
  | { readonly kind: 'gap'; readonly from: number; readonly to: number };

export interface ReadEventsOptions {
  /**
   * Start near this offset (ms): from the latest snapshot at or before it, then every event after
   * the snapshot. Events before fromMs still come (a player applies them at once) so the screen
   * is exact at fromMs; without a snapshot everything from the start comes.
   */
  readonly fromMs?: number;
  /** Only this channel's snapshots (default: any). */
  readonly channel?: number;
}

/** Tracks sequence numbers and turns a jump into a gap item. */
export class GapDetector {
  constructor(private next = 1) {}

  check(seq: number): ReplayItem | undefined {
    const expected = this.next;
    this.next = seq + 1;
    return seq > expected ? { kind: 'gap', from: expected, to: seq - 1 } : undefined;
  }
}

export async function* replayFromEntries(entries: AsyncIterable<StoredEntry>, gaps: GapDetector): AsyncGenerator<ReplayItem> {
  for await (const entry of entries) {
    const gap = gaps.check(entry.seq);
    if (gap) yield gap;
    yield { kind: 'event', event: decodeEntry(entry) };
  }
}

/** A recording's events from any offset, starting from the nearest snapshot before it. */
export async function* readRecordingEvents(redis: RedisClient, id: string, opts: ReadEventsOptions = {}): AsyncGenerator<ReplayItem> {
  let start = '-';
  let gaps = new GapDetector();
  if (opts.fromMs !== undefined && opts.fromMs > 0) {
    const snap = await snapshotAtOrBefore(redis, id, opts.fromMs, opts.channel);
    if (snap) {
      yield { kind: 'screen', snapshot: snap };
      start = `(${snap.t}-${snap.seq}`;
      gaps = new GapDetector(snap.seq + 1);
    }
  }
  yield* replayFromEntries(readEntries(redis, id, start), gaps);
}

export interface PlaybackOptions {
  /** 2 plays twice as fast (default 1). */
  readonly speed?: number;
  /** Pauses longer than this (ms of recording time) are cut to it: idle skipping. */
  readonly idleLimitMs?: number;
  /** Events before this offset are applied without waiting (a seek). */
  readonly fromMs?: number;
}

/**
 * How long to wait (wall-clock ms) before showing an event at offset `t` after one at `prevT`.
 * Pure, so players in the terminal, the browser and tests schedule the same way.
 */
export function playbackDelay(prevT: number, t: number, opts: PlaybackOptions = {}): number {
  if (t <= (opts.fromMs ?? 0)) return 0;
  const from = Math.max(prevT, opts.fromMs ?? 0);
  const gap = Math.min(Math.max(0, t - from), opts.idleLimitMs ?? Infinity);
  const speed = opts.speed ?? 1;
  if (!(speed > 0)) throw new TypeError(`recording: speed must be above 0, got ${speed}`);
  return gap / speed;
}

/** The wall-clock time (ms from play start) of each event offset. */
export function playbackSchedule(offsets: readonly number[], opts: PlaybackOptions = {}): number[] {
  const out: number[] = [];
  let wall = 0;
  let prev = 0;
  for (const t of offsets) {
    wall += playbackDelay(prev, t, opts);
    prev = t;
    out.push(wall);
  }
  return out;
}

export interface PlayOptions extends PlaybackOptions {
  readonly signal?: AbortSignal;
  /** Injectable for tests and for a paused player (default: setTimeout). */
  readonly sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

function defaultSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (ms <= 0 || signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * Drives a player: hands each item to `show` at its time, at the given speed, with idle time
 * cut. Screens and gaps are shown at once; the terminal or browser player does the drawing.
 */
export async function play(items: AsyncIterable<ReplayItem>, show: (item: ReplayItem) => void | Promise<void>, opts: PlayOptions = {}): Promise<void> {
  const sleep = opts.sleep ?? defaultSleep;
  let prevT: number | undefined;
  for await (const item of items) {
    if (opts.signal?.aborted) return;
    if (item.kind === 'event') {
      const t = item.event.t;
      if (prevT !== undefined) await sleep(playbackDelay(prevT, t, opts), opts.signal);
      if (opts.signal?.aborted) return;
      prevT = t;
    } else if (item.kind === 'screen') {
      prevT = item.snapshot.t;
    }
    await show(item);
  }
}
