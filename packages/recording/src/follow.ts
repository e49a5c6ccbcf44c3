import { recordingKeys } from './keys.js';
import { GapDetector, replayFromEntries, type ReplayItem } from './replay.js';
import { entryFromReply, readEntries, readMeta, requireMeta, snapshotAtOrBefore, type RedisClient, type StoredEntry } from './store.js';

export interface FollowOptions {
  /** Start from the latest terminal snapshot (default true), not from the first event. */
  readonly fromScreen?: boolean;
  /** Snapshots of this channel only (default: any). */
  readonly channel?: number;
  readonly signal?: AbortSignal;
  /** XREAD BLOCK timeout; after each one the recording's state is checked (default 5 s). */
  readonly blockMs?: number;
}

/**
 * Watches a recording as it is written: the current screen, then every event as it arrives,
 * until the session ends (its `end` event), the recording stops being live (a recorder that
 * died: state interrupted after uploadSpool), or the signal aborts. It reads only Redis, so any
 * proxy can show a session running on another. Blocking reads use a connection of their own.
 */
export async function* followRecording(redis: RedisClient, id: string, opts: FollowOptions = {}): AsyncGenerator<ReplayItem> {
  await requireMeta(redis, id);
  const key = recordingKeys(id).events;
  let start = '-';
  let lastId = '0-0';
  let gaps = new GapDetector();
  if (opts.fromScreen !== false) {
    const snap = await snapshotAtOrBefore(redis, id, undefined, opts.channel);
    if (snap) {
      yield { kind: 'screen', snapshot: snap };
      lastId = `${snap.t}-${snap.seq}`;
      start = `(${lastId}`;
      gaps = new GapDetector(snap.seq + 1);
    }
  }
  let ended = false;
  const track = async function* (entries: AsyncIterable<StoredEntry>): AsyncGenerator<ReplayItem> {
    for await (const item of replayFromEntries(entries, gaps)) {
      if (item.kind === 'event') {
        lastId = `${item.event.t}-${item.event.seq}`;
        if (item.event.type === 'end') ended = true;
      }
      yield item;
    }
  };
  yield* track(readEntries(redis, id, start));
  if (ended || opts.signal?.aborted) return;

  const conn = redis.duplicate();
  const abort = (): void => conn.disconnect();
  opts.signal?.addEventListener('abort', abort, { once: true });
  try {
    while (!ended && !opts.signal?.aborted) {
      let reply: [Buffer, [Buffer, Buffer[]][]][] | null;
      try {
        reply = (await conn.xreadBuffer('COUNT', 512, 'BLOCK', opts.blockMs ?? 5000, 'STREAMS', key, lastId)) as typeof reply;
      } catch (e) {
        if (opts.signal?.aborted) return;
        throw e;
      }
      if (!reply) {
        const meta = await readMeta(redis, id);
        if (!meta || meta.state !== 'live') {
          // Whatever was written between the last read and the state change, then stop.
          yield* track(readEntries(redis, id, `(${lastId}`));
          return;
        }
        continue;
      }
      const entries = (reply[0]?.[1] ?? []).map(([eid, fields]) => entryFromReply(eid, fields));
      yield* track(
        (async function* () {
          yield* entries;
        })(),
      );
    }
  } finally {
    opts.signal?.removeEventListener('abort', abort);
    conn.disconnect();
  }
}
