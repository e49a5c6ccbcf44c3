import type { Writable } from 'node:stream';
import { Command, type Cluster, type Redis } from 'ioredis';
import { decodeEvent, decodeSnapshot, encodeSnapshot, metaFromFields, type EncodedEvent } from './codec.js';
import { RecordingError } from './errors.js';
import { indexKeys, parseStreamId, recordingKeys, streamId } from './keys.js';
import type { RecordingEvent, RecordingMeta, ScreenSnapshot } from './model.js';

export type RedisClient = Redis | Cluster;

/**
 * One unit of work for Redis, in the order the session produced it. The same items are what the
 * spool file holds while Redis is away, so draining the spool is replaying them.
 */
export type StoreItem =
  | {
      readonly kind: 'event';
      readonly seq: number;
      readonly t: number;
      readonly event: EncodedEvent;
      readonly digest: Uint8Array;
      /** Called once Redis has confirmed the event: nothing reads its data after that, so it may be reused. */
      readonly stored?: () => void;
    }
  | { readonly kind: 'meta'; readonly fields: Readonly<Record<string, string>> }
  | { readonly kind: 'snapshot'; readonly snapshot: ScreenSnapshot }
  | { readonly kind: 'index'; readonly entry: IndexEntry };

/** What the search indexes learn about a recording; written at start and as commands appear. */
export interface IndexEntry {
  readonly startedAt: number;
  readonly user?: string;
  readonly host?: string;
  readonly login?: string;
  readonly commands?: readonly string[];
}

export type StoreFailureReason = 'unreachable' | 'oom' | 'error';

/** A write Redis did not confirm, classified so the mode can decide and the metric can say why. */
export class StoreFailure extends Error {
  override readonly name = 'StoreFailure';
  constructor(
    readonly reason: StoreFailureReason,
    message: string,
  ) {
    super(message);
  }
}

/** A Buffer over the same memory (Buffer.from(Uint8Array) would copy). */
function view(b: Uint8Array): Buffer {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

export function itemSize(item: StoreItem): number {
  switch (item.kind) {
    case 'event':
      return item.event.head.length + item.event.data.length + 64;
    case 'snapshot':
      return item.snapshot.screen.length + 64;
    default:
      return 256;
  }
}

/** Redis said the event is already there: a retried write after a lost acknowledgement. */
const DUPLICATE = /equal or smaller than the target stream top item/;

export function classifyRedisError(e: unknown): StoreFailure {
  const message = e instanceof Error ? e.message : String(e);
  if (/^OOM\b|\bOOM command not allowed/.test(message)) return new StoreFailure('oom', message);
  if (
    /Connection is closed|ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|ENOTFOUND|max retries per request|enableOfflineQueue|Stream isn't writeable|timed out|LOADING|CLUSTERDOWN|TRYAGAIN|MOVED|ASK/.test(
      message,
    )
  ) {
    return new StoreFailure('unreachable', message);
  }
  return new StoreFailure('error', message);
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new StoreFailure('unreachable', `redis did not answer in ${ms} ms (timed out)`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

export interface WriteOptions {
  /** Milliseconds before an unanswered write counts as failed (its late success is harmless). */
  readonly timeoutMs: number;
  /** Keys expire this long after their last write. */
  readonly retentionMs: number | undefined;
}

/**
 * Writes items for one recording: a pipeline on the recording's slot, then one on the index
 * slot. Every write is idempotent (explicit stream ids, absolute hash values, set members), so a
 * batch may be sent again after a timeout or a drain without duplicating anything.
 */
export async function writeItems(redis: RedisClient, id: string, items: readonly StoreItem[], opts: WriteOptions): Promise<void> {
  const keys = recordingKeys(id);
  const p = redis.pipeline();
  let meta: Record<string, string> | undefined;
  let events = false;
  let snapshots = false;
  const indexes: IndexEntry[] = [];
  // Events with bulk data go as commands of their own, sent now and in order ahead of the
  // pipeline on the same connection: a pipeline concatenates every command into one buffer
  // before writing it, a copy of all the output (and garbage) that a lone command avoids.
  const bulk: Promise<unknown>[] = [];
  for (const item of items) {
    switch (item.kind) {
      case 'event':
        events = true;
        if (item.event.data.length >= BULK_BYTES && p.length === 0 && !redis.isCluster) {
          const prefix = (redis as Redis).options.keyPrefix;
          const xadd = new StreamAdd('xadd', [keys.events, streamId(item.t, item.seq), 'e', view(item.event.head), 'd', view(item.event.data), 'h', view(item.digest)], prefix ? { keyPrefix: prefix } : {});
          void redis.sendCommand(xadd);
          bulk.push(xadd.promise);
        } else {
          p.xadd(keys.events, streamId(item.t, item.seq), 'e', view(item.event.head), 'd', view(item.event.data), 'h', view(item.digest));
        }
        break;
      case 'meta':
        meta = { ...meta, ...item.fields };
        break;
      case 'snapshot':
        snapshots = true;
        p.zadd(keys.snapshots, item.snapshot.t, encodeSnapshot(item.snapshot));
        break;
      case 'index':
        indexes.push(item.entry);
    }
  }
  // Metadata last: lastSeq in the hash never runs ahead of the stream it describes.
  if (meta) p.hset(keys.meta, meta);
  if (opts.retentionMs !== undefined) {
    if (events) p.pexpire(keys.events, opts.retentionMs);
    if (meta) p.pexpire(keys.meta, opts.retentionMs);
    if (snapshots) p.pexpire(keys.snapshots, opts.retentionMs);
  }
  // Everything is sent before anything is awaited: the sink may call again before this answers,
  // and its XADDs must not reach the stream ahead of these (Redis would refuse these ids then).
  const answers: Promise<void>[] = [];
  if (bulk.length > 0) answers.push(bulkChecked(bulk, opts.timeoutMs));
  if (p.length > 0) answers.push(execChecked(p, opts.timeoutMs));
  if (indexes.length > 0) {
    const q = redis.pipeline();
    for (const entry of indexes) addIndexCommands(q, id, entry);
    answers.push(execChecked(q, opts.timeoutMs));
  }
  await Promise.all(answers);
}

type Pipeline = ReturnType<RedisClient['pipeline']>;

function addIndexCommands(q: Pipeline, id: string, e: IndexEntry): void {
  const registered: string[] = [];
  q.zadd(indexKeys.byTime, e.startedAt, id);
  for (const [key, value] of [
    [indexKeys.byUser, e.user],
    [indexKeys.byHost, e.host],
    [indexKeys.byLogin, e.login],
  ] as const) {
    if (value === undefined) continue;
    const k = key(value);
    q.zadd(k, e.startedAt, id);
    registered.push(k);
  }
  if (registered.length > 0) q.sadd(indexKeys.registry, ...registered);
  for (const c of e.commands ?? []) q.zadd(indexKeys.commands, e.startedAt, `${c.toLowerCase()}\n${id}`);
}

/** An event at least this large is written as a command of its own rather than in the pipeline. */
const BULK_BYTES = 64 * 1024;

/**
 * A command whose large arguments go to the socket as they are. ioredis copies a command with
 * any Buffer argument into one new Buffer before writing it (Command#toWritable): for a bulk
 * event, a copy of its data and as much garbage outside V8's heap, which is what drives V8's
 * full collections. Here the small parts are encoded and the large ones written between them,
 * corked so they leave in one writev. Only for commands sent on their own: a pipeline writes
 * what toWritable returns to its own buffer, not to this socket.
 */
class StreamAdd extends Command {
  override toWritable(socket: object): string | Buffer {
    const out = socket as Writable;
    let parts: (string | Buffer)[] = [`*${this.args.length + 1}\r\n$${this.name.length}\r\n${this.name}\r\n`];
    out.cork();
    for (const arg of this.args) {
      const b = Buffer.isBuffer(arg) ? arg : Buffer.from(String(arg));
      parts.push(`$${b.length}\r\n`);
      if (b.length < BULK_BYTES) {
        parts.push(b, '\r\n');
        continue;
      }
      out.write(joinParts(parts));
      out.write(b);
      parts = ['\r\n'];
    }
    process.nextTick(() => out.uncork());
    // ioredis writes this to the same socket right away, still corked.
    return joinParts(parts);
  }
}

function joinParts(parts: readonly (string | Buffer)[]): Buffer {
  return Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : p)));
}

async function bulkChecked(writes: Promise<unknown>[], timeoutMs: number): Promise<void> {
  const settled = Promise.allSettled(writes);
  let results: PromiseSettledResult<unknown>[];
  try {
    results = await withTimeout(settled, timeoutMs);
  } catch (e) {
    throw e instanceof StoreFailure ? e : classifyRedisError(e);
  }
  for (const r of results) {
    if (r.status === 'rejected') {
      const err: unknown = r.reason;
      if (!(err instanceof Error && DUPLICATE.test(err.message))) throw classifyRedisError(err);
    }
  }
}

async function execChecked(p: Pipeline, timeoutMs: number): Promise<void> {
  let results: [Error | null, unknown][] | null;
  try {
    results = await withTimeout(p.exec(), timeoutMs);
  } catch (e) {
    throw e instanceof StoreFailure ? e : classifyRedisError(e);
  }
  if (!results) throw new StoreFailure('unreachable', 'redis pipeline returned nothing');
  for (const [err] of results) {
    if (err && !DUPLICATE.test(err.message)) throw classifyRedisError(err);
  }
}

export async function readMeta(redis: RedisClient, id: string): Promise<RecordingMeta | undefined> {
  const fields = await redis.hgetall(recordingKeys(id).meta);
  if (Object.keys(fields).length === 0) return undefined;
  return metaFromFields(id, fields);
}

export async function requireMeta(redis: RedisClient, id: string): Promise<RecordingMeta> {
  const meta = await readMeta(redis, id);
  if (!meta) throw new RecordingError('ERR_NOT_FOUND', `recording: no recording ${id}`);
  return meta;
}

/** A stream entry as stored, before decoding: what verify hashes and what readers decode. */
export interface StoredEntry {
  readonly id: string;
  readonly seq: number;
  readonly t: number;
  readonly head: Uint8Array;
  readonly data: Uint8Array;
  readonly digest: Uint8Array | undefined;
}

export function entryFromReply(idBuf: Buffer, fields: Buffer[]): StoredEntry {
  const id = idBuf.toString('latin1');
  const parsed = parseStreamId(id);
  const get = (name: string): Buffer | undefined => {
    for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i]!.toString('latin1') === name) return fields[i + 1];
    return undefined;
  };
  const head = get('e');
  if (!parsed || !head) throw new RecordingError('ERR_CORRUPT', `recording: stream entry ${id} is not an event`);
  const digest = get('h');
  return {
    id,
    seq: parsed.seq,
    t: parsed.t,
    head: new Uint8Array(head),
    data: new Uint8Array(get('d') ?? Buffer.alloc(0)),
    digest: digest ? new Uint8Array(digest) : undefined,
  };
}

/**
 * Stored entries from `start` (a stream id, `-`, or `(id` for exclusive) in pages, so reading a
 * long recording never holds more than a page of replies.
 */
export async function* readEntries(redis: RedisClient, id: string, start = '-', pageSize = 512): AsyncGenerator<StoredEntry> {
  const key = recordingKeys(id).events;
  let from = start;
  for (;;) {
    const page = await redis.xrangeBuffer(key, from, '+', 'COUNT', pageSize);
    for (const [eid, fields] of page) yield entryFromReply(eid, fields);
    const last = page[page.length - 1];
    if (page.length < pageSize || !last) return;
    from = `(${last[0].toString('latin1')}`;
  }
}

export function decodeEntry(e: StoredEntry): RecordingEvent {
  const ev = decodeEvent(e.head, e.data);
  if (ev.seq !== e.seq || ev.t !== e.t) {
    throw new RecordingError('ERR_CORRUPT', `recording: stream entry ${e.id} holds event ${ev.t}-${ev.seq}`);
  }
  return ev;
}

export async function lastEntry(redis: RedisClient, id: string): Promise<StoredEntry | undefined> {
  const page = await redis.xrevrangeBuffer(recordingKeys(id).events, '+', '-', 'COUNT', 1);
  const first = page[0];
  return first ? entryFromReply(first[0], first[1]) : undefined;
}

/** The latest snapshot taken at or before `t` ms (the latest of all when t is undefined). */
export async function snapshotAtOrBefore(redis: RedisClient, id: string, t?: number, channel?: number): Promise<ScreenSnapshot | undefined> {
  const members = await redis.zrevrangebyscore(recordingKeys(id).snapshots, t === undefined ? '+inf' : t, '-inf', 'LIMIT', 0, 16);
  for (const m of members) {
    const s = decodeSnapshot(m);
    if (s && (channel === undefined || s.channel === channel)) return s;
  }
  return undefined;
}
