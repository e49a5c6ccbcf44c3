import type { Writable } from 'node:stream';
import { Command, type Cluster, type Redis } from 'ioredis';
import { decodeEvent, decodeSnapshot, encodeSnapshot, metaFromFields, type EncodedEvent } from './codec.js';
import { RecordingError } from './errors.js';
import { indexKeys, parseStreamId, recordingKeys, streamId, type RecordingKeys } from './keys.js';
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
  | { readonly kind: 'index'; readonly entry: IndexEntry }
  /** In a spool file: the events after it follow this stream id (see StreamPosition). */
  | { readonly kind: 'after'; readonly id: string };

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
 * Where a write continues the stream. `after` is the id of the event the first written event
 * follows ('0-0': none yet), undefined when nobody knows (a spool file written before marks).
 * `afterStored` says Redis once confirmed `after`: a stream that now ends below it lost
 * confirmed events (failover to a replica behind its master, restart without persistence,
 * eviction), which nothing can bring back, so the write goes on after the stream's end and
 * reports the gap. Without it, a stream ending below `after` means an earlier write was refused
 * and this one is refused too.
 */
export interface StreamPosition {
  readonly after: string | undefined;
  readonly afterStored: boolean;
}

export interface WriteResult {
  /** The id of the last event written (`after` when there was none): the next write's `after`. */
  readonly tail: string | undefined;
  /** Where the stream ended when it had lost confirmed events: the gap starts after it. */
  readonly lostAfter?: string;
}

/** Lua shared by the scripts below: does an event follow the stream? */
const FOLLOWS_LUA = `
local function lastId(ev)
  local last = redis.call('XREVRANGE', ev, '+', '-', 'COUNT', 1)[1]
  return last and last[1] or '0-0'
end
-- Where the stream ends against id: -1 below, 0 at, 1 above. Without reading an entry
-- (XREVRANGE would copy the last event's data into Lua): XSETID refuses an id below the last
-- entry. Leaves the last id at id when the stream ends there, which undoes a refusal.
local function compare(ev, id)
  if redis.call('XLEN', ev) == 0 then
    redis.call('DEL', ev)
    return id == '0-0' and 0 or -1
  end
  if id == '0-0' then return 1 end
  local r = redis.pcall('XSETID', ev, id)
  if type(r) == 'table' and r.err then return 1 end
  local t, s = string.match(id, '^(%d+)-(%d+)$')
  local under = s == '0' and (tostring(tonumber(t) - 1) .. '-18446744073709551615') or (t .. '-' .. tostring(tonumber(s) - 1))
  r = redis.pcall('XSETID', ev, under)
  if type(r) == 'table' and r.err then return 0 end
  return -1
end
-- 'add' (with where the stream ended, when below a confirmed predecessor), 'present', or false.
local function decide(ev, stored, after, id, h)
  if after == '' then
    if compare(ev, id) < 0 then return 'add' end
  else
    local c = compare(ev, after)
    if c == 0 then return 'add' end
    if c < 0 and stored then return 'add', lastId(ev) end
  end
  local have = redis.call('XRANGE', ev, id, id)[1]
  if have and have[2][6] == h then return 'present' end
  return false
end
`;

/**
 * Appends one batch to a recording, atomically and only in sequence: each event is added if the
 * stream ends exactly at the event it follows, skipped if the stream already holds it (same
 * id, same chain digest: a resend after a lost answer, a drain after a crash), and otherwise
 * the script fails with PCGAP before writing anything more. So a write after a refused one
 * (OOM, then memory freed) is refused as well and goes back in order behind it, instead of
 * landing above it and leaving an id below the stream's top that XADD can never store.
 * Metadata and snapshots follow the events, in the same script. '#!lua' without flags: when
 * Redis is out of memory the script is refused before it starts (without it, Redis checks only
 * until the script's first write, and XSETID counts). Only for events below
 * BULK_BYTES: Lua copies every argument twice, so bulk events go as BULK_GUARD and XADD.
 *
 * ARGV: retention ms or '', afterStored '1'|'0', n, n x (after, id, e, d, h), m, m x (score,
 * snapshot), k, k x (field, value). An empty `after` (first event only) is "unknown": added
 * above the top. Sent with EVAL, not EVALSHA: a failover or restart empties the script cache,
 * and a NOSCRIPT answer resent later would land behind batches sent after it.
 */
const APPEND_SCRIPT = `#!lua
${FOLLOWS_LUA}
local ev, ttl, stored = KEYS[1], ARGV[1], ARGV[2] == '1'
local n = tonumber(ARGV[3])
local i = 4
local gap = false
if n > 0 then
  local top = nil
  for k = 1, n do
    local after, id, h = ARGV[i], ARGV[i + 1], ARGV[i + 4]
    local verdict, lost = 'add', nil
    if top == nil or top ~= after then verdict, lost = decide(ev, k == 1 and stored, after, id, h) end
    if lost then gap = lost end
    if verdict == 'add' then
      redis.call('XADD', ev, id, 'e', ARGV[i + 2], 'd', ARGV[i + 3], 'h', h)
      top = id
    elseif verdict == 'present' then
      top = nil
    else
      return redis.error_reply('PCGAP event ' .. id .. ' follows ' .. (after == '' and '?' or after) .. ' but the stream ends at ' .. lastId(ev))
    end
    i = i + 5
  end
  if ttl ~= '' then redis.call('PEXPIRE', ev, ttl) end
end
local m = tonumber(ARGV[i])
i = i + 1
for k = 1, m do
  redis.call('ZADD', KEYS[3], ARGV[i], ARGV[i + 1])
  i = i + 2
end
if m > 0 and ttl ~= '' then redis.call('PEXPIRE', KEYS[3], ttl) end
local f = tonumber(ARGV[i])
if f > 0 then
  redis.call('HSET', KEYS[2], unpack(ARGV, i + 1, i + 2 * f))
  if ttl ~= '' then redis.call('PEXPIRE', KEYS[2], ttl) end
end
return gap
`;

/**
 * The same check for one bulk event, whose plain XADD follows it on the connection with its
 * data uncopied. Where the event does not follow, the stream's last id is set to the largest
 * there is, so that this XADD and every later one fail until a write that does follow sets it
 * back: a guard passed, then its XADD refused and memory freed, still stops the next event.
 * allow-oom: the guard must run (and poison) when Redis refuses writes, or a later XADD could
 * pass unguarded once memory is freed. Returns {'add', stream end before a gap or ''} or
 * {'present'}.
 */
const BULK_GUARD = `#!lua flags=allow-oom
${FOLLOWS_LUA}
local ev, ttl, stored, after, id, h = KEYS[1], ARGV[1], ARGV[2] == '1', ARGV[3], ARGV[4], ARGV[5]
local verdict, lost = decide(ev, stored, after, id, h)
if verdict then return {verdict, lost or ''} end
local top = lastId(ev)
if redis.call('EXISTS', ev) == 0 then
  redis.call('XGROUP', 'CREATE', ev, 'pc-refused', '$', 'MKSTREAM')
  if ttl ~= '' then redis.call('PEXPIRE', ev, ttl) end
end
redis.call('XSETID', ev, '18446744073709551615-18446744073709551615')
return redis.error_reply('PCGAP event ' .. id .. ' follows ' .. (after == '' and '?' or after) .. ' but the stream ends at ' .. top)
`;

/**
 * Writes items for one recording: on the recording's slot, runs of small events (with the
 * metadata and snapshots after them) as APPEND_SCRIPT and each bulk event as BULK_GUARD and its
 * XADD; then a pipeline on the index slot (sets: idempotent). All is sent before anything is
 * awaited: the sink may call again before this answers, and one connection runs commands in
 * the order sent.
 */
export async function writeItems(
  redis: RedisClient,
  id: string,
  items: readonly StoreItem[],
  opts: WriteOptions,
  at: StreamPosition = { after: undefined, afterStored: true },
): Promise<WriteResult> {
  const keys = recordingKeys(id);
  const retention = opts.retentionMs === undefined ? '' : String(opts.retentionMs);
  const bulk = !redis.isCluster;
  let after = at.after;
  let first = true;
  const sent: Promise<string | undefined>[] = [];
  let run: (string | Buffer)[] = [];
  let runEvents = 0;
  const snapshots: string[] = [];
  let meta: Record<string, string> | undefined;
  const indexes: IndexEntry[] = [];
  const stored = (): string => {
    const s = first && at.afterStored ? '1' : '0';
    first = false;
    return s;
  };
  const sendRun = (withTail: boolean): void => {
    if (runEvents === 0 && !withTail) return;
    const args: (string | Buffer)[] = [retention, stored(), String(runEvents), ...run];
    if (withTail) {
      const fields = meta ? Object.entries(meta).flat() : [];
      args.push(String(snapshots.length / 2), ...snapshots, String(fields.length / 2), ...fields);
    } else {
      args.push('0', '0');
    }
    const events = runEvents;
    sent.push(checked(sendScript(redis, APPEND_SCRIPT, [keys.events, keys.meta, keys.snapshots], args), opts.timeoutMs).then((r) => (events > 0 && typeof r === 'string' ? r : undefined)));
    run = [];
    runEvents = 0;
  };
  for (const item of items) {
    switch (item.kind) {
      case 'after':
        after = item.id;
        break;
      case 'event': {
        const sid = streamId(item.t, item.seq);
        if (bulk && item.event.data.length >= BULK_BYTES) {
          sendRun(false);
          const guard = sendScript(redis, BULK_GUARD, [keys.events], [retention, stored(), after ?? '', sid, view(item.digest)]);
          const xadd = sendScript(redis, undefined, [keys.events], [sid, 'e', view(item.event.head), 'd', view(item.event.data), 'h', view(item.digest)]);
          sent.push(checked(bulkAnswer(guard, xadd), opts.timeoutMs));
        } else {
          run.push(after ?? '', sid, view(item.event.head), view(item.event.data), view(item.digest));
          runEvents++;
        }
        after = sid;
        break;
      }
      case 'meta':
        meta = { ...meta, ...item.fields };
        break;
      case 'snapshot':
        snapshots.push(String(item.snapshot.t), encodeSnapshot(item.snapshot));
        break;
      case 'index':
        indexes.push(item.entry);
    }
  }
  // Metadata last: lastSeq never runs ahead of the stream it describes.
  sendRun(snapshots.length > 0 || meta !== undefined);
  const answers: Promise<unknown>[] = [...sent];
  if (indexes.length > 0) {
    const q = redis.pipeline();
    for (const entry of indexes) addIndexCommands(q, id, entry);
    answers.push(execChecked(q, opts.timeoutMs));
  }
  await Promise.all(answers);
  let lostAfter: string | undefined;
  for (const p of sent) lostAfter ??= await p;
  return lostAfter === undefined ? { tail: after } : { tail: after, lostAfter };
}

/** A guard's answer and its XADD's: the XADD must add what the guard let through, and nothing else. */
async function bulkAnswer(guard: Promise<unknown>, xadd: Promise<unknown>): Promise<string | undefined> {
  const [g, x] = await Promise.allSettled([guard, xadd]);
  if (g.status === 'rejected') throw g.reason;
  const [verdict, gap] = g.value as [string, string?];
  if (verdict === 'add') {
    if (x.status === 'rejected') throw x.reason;
    return gap === '' ? undefined : gap;
  }
  // Already stored: the XADD was refused ("equal or smaller", or after a refusal "exhausted").
  if (x.status === 'fulfilled' || !(x.reason instanceof Error && /equal or smaller|exhausted the last possible ID/.test(x.reason.message))) {
    throw new StoreFailure('error', `redis stored an event the guard found already stored (${x.status === 'rejected' ? String(x.reason) : 'added'})`);
  }
  return undefined;
}

/** EVAL of `script`, or XADD when there is none; sent now, large arguments uncopied. */
function sendScript(redis: RedisClient, script: string | undefined, keys: readonly string[], args: readonly (string | Buffer)[]): Promise<unknown> {
  // A cluster client routes and retries commands itself; there the arguments are copied.
  if (redis.isCluster) {
    return script === undefined ? redis.call('xadd', ...keys, ...args) : redis.eval(script, keys.length, ...keys, ...args);
  }
  const prefix = (redis as Redis).options.keyPrefix;
  const cmdOpts = { replyEncoding: 'utf8' as const, ...(prefix ? { keyPrefix: prefix } : {}) };
  const cmd = script === undefined ? new UncopiedCommand('xadd', [...keys, ...args], cmdOpts) : new UncopiedCommand('eval', [script, keys.length, ...keys, ...args], cmdOpts);
  void redis.sendCommand(cmd);
  return cmd.promise;
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

/** An argument at least this large goes to the socket as it is, not copied. */
const BULK_BYTES = 64 * 1024;

/**
 * A command whose large arguments go to the socket as they are. ioredis copies a command with
 * any Buffer argument into one new Buffer before writing it (Command#toWritable): for a batch of
 * bulk events, a copy of their data and as much garbage outside V8's heap, which is what drives
 * V8's full collections. Here the small parts are encoded and the large ones written between
 * them, corked so they leave in one writev. Only for commands sent on their own: a pipeline
 * writes what toWritable returns to its own buffer, not to this socket.
 */
class UncopiedCommand extends Command {
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

async function checked<T>(p: Promise<T>, timeoutMs: number): Promise<T> {
  try {
    return await withTimeout(p, timeoutMs);
  } catch (e) {
    throw e instanceof StoreFailure ? e : classifyRedisError(e);
  }
}

async function execChecked(p: Pipeline, timeoutMs: number): Promise<void> {
  const results = await checked(p.exec(), timeoutMs);
  if (!results) throw new StoreFailure('unreachable', 'redis pipeline returned nothing');
  for (const [err] of results) if (err) throw classifyRedisError(err);
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
