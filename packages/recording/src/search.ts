import { indexKeys, recordingKeys } from './keys.js';
import type { RecordingMeta, RecordingState } from './model.js';
import { readMeta, type RedisClient } from './store.js';

export interface RecordingQuery {
  readonly user?: string;
  readonly host?: string;
  readonly login?: string;
  readonly state?: RecordingState;
  /** Sessions started at or after this Unix ms. */
  readonly from?: number;
  /** Sessions started at or before this Unix ms. */
  readonly to?: number;
  /** Newest first; default 100. */
  readonly limit?: number;
}

function matches(meta: RecordingMeta, q: RecordingQuery): boolean {
  return (
    (q.user === undefined || meta.user === q.user) &&
    (q.host === undefined || meta.host === q.host) &&
    (q.login === undefined || meta.login === q.login) &&
    (q.state === undefined || meta.state === q.state) &&
    (q.from === undefined || meta.startedAt >= q.from) &&
    (q.to === undefined || meta.startedAt <= q.to)
  );
}

async function metas(redis: RedisClient, ids: readonly string[]): Promise<RecordingMeta[]> {
  // One HGETALL per recording: each lives in its own Cluster slot, so no cross-slot pipeline.
  const all = await Promise.all(ids.map((id) => readMeta(redis, id).catch(() => undefined)));
  return all.filter((m): m is RecordingMeta => m !== undefined);
}

/**
 * Recordings newest first, by user, host, login and time range. Reads the narrowest index the
 * query names and filters the rest, paging until `limit` matches or the index runs out; ids of
 * expired recordings are skipped (pruneRecordingIndexes removes them).
 */
export async function listRecordings(redis: RedisClient, q: RecordingQuery = {}): Promise<RecordingMeta[]> {
  const limit = q.limit ?? 100;
  const key =
    q.user !== undefined ? indexKeys.byUser(q.user) : q.host !== undefined ? indexKeys.byHost(q.host) : q.login !== undefined ? indexKeys.byLogin(q.login) : indexKeys.byTime;
  const out: RecordingMeta[] = [];
  const page = Math.max(limit, 50);
  for (let offset = 0; out.length < limit; offset += page) {
    const ids = await redis.zrevrangebyscore(key, q.to ?? '+inf', q.from ?? '-inf', 'LIMIT', offset, page);
    for (const meta of await metas(redis, ids)) if (matches(meta, q) && out.length < limit) out.push(meta);
    if (ids.length < page) break;
  }
  return out;
}

export interface CommandMatch {
  readonly meta: RecordingMeta;
  /** The indexed command lines (exec commands and typed lines) that contain the text. */
  readonly commands: readonly string[];
}

/** Escapes Redis glob specials so the text matches literally. */
function globLiteral(s: string): string {
  return s.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}

/**
 * Sessions in which a command containing `text` (case-insensitive) was run: exec commands
 * always, typed lines when input was recorded. The match runs in Redis (ZSCAN MATCH), so only
 * hits cross the network.
 */
export async function findRecordingsByCommand(redis: RedisClient, text: string, q: RecordingQuery = {}): Promise<CommandMatch[]> {
  const needle = text.toLowerCase();
  if (needle === '' || needle.includes('\n')) throw new TypeError('recording: command search text must be one non-empty line');
  const hits = new Map<string, string[]>();
  let cursor = '0';
  do {
    const [next, flat] = await redis.zscan(indexKeys.commands, cursor, 'MATCH', `*${globLiteral(needle)}*`, 'COUNT', 1000);
    cursor = next;
    for (let i = 0; i < flat.length; i += 2) {
      const member = flat[i]!;
      const cut = member.lastIndexOf('\n');
      const command = member.slice(0, cut);
      const id = member.slice(cut + 1);
      if (cut < 0 || !command.includes(needle)) continue;
      const list = hits.get(id) ?? [];
      list.push(command);
      hits.set(id, list);
    }
  } while (cursor !== '0');
  const found = (await metas(redis, [...hits.keys()])).filter((m) => matches(m, q));
  found.sort((a, b) => b.startedAt - a.startedAt);
  return found.slice(0, q.limit ?? 100).map((meta) => ({ meta, commands: hits.get(meta.id) ?? [] }));
}

/**
 * Retention for the indexes: recordings expire by themselves (PEXPIRE), index entries do not.
 * Removes entries older than `retentionMs` whose recording is gone; a long session that started
 * before the cutoff but still exists keeps its entries.
 */
export async function pruneRecordingIndexes(redis: RedisClient, opts: { readonly retentionMs: number; readonly now?: number }): Promise<number> {
  const cutoff = (opts.now ?? Date.now()) - opts.retentionMs;
  const gone = async (ids: readonly string[]): Promise<Set<string>> => {
    const exists = await Promise.all(ids.map((id) => redis.exists(recordingKeys(id).meta)));
    return new Set(ids.filter((_, i) => exists[i] === 0));
  };
  let removed = 0;
  const keys = [indexKeys.byTime, ...(await redis.smembers(indexKeys.registry))];
  for (const key of keys) {
    const old = await redis.zrangebyscore(key, '-inf', cutoff);
    const dead = [...(await gone(old))];
    if (dead.length > 0) removed += await redis.zrem(key, ...dead);
    if (key !== indexKeys.byTime && (await redis.zcard(key)) === 0) await redis.srem(indexKeys.registry, key);
  }
  const oldCommands = await redis.zrangebyscore(indexKeys.commands, '-inf', cutoff);
  const ids = [...new Set(oldCommands.map((m) => m.slice(m.lastIndexOf('\n') + 1)))];
  const dead = await gone(ids);
  const members = oldCommands.filter((m) => dead.has(m.slice(m.lastIndexOf('\n') + 1)));
  if (members.length > 0) removed += await redis.zrem(indexKeys.commands, ...members);
  return removed;
}
