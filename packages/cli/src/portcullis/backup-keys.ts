import { spawn } from 'node:child_process';
import { closeSync, createReadStream, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { Redis, type Cluster } from 'ioredis';
import type { RedisClient } from '@portcullis/store';
import { CliError } from '../common/errors.js';

/*
 * The Redis half of a backup in a form every topology can read back: one JSON line per key of
 * ours (`pc:*`) with its DUMP payload and its absolute expiry. DUMP/RESTORE carry every type
 * (hashes, sorted sets, streams) byte for byte, and RESTORE runs wherever the key's slot lives,
 * so a dump taken from a cluster loads into a single server and the other way round. The
 * payload is Redis's own serialization: RESTORE accepts it on the same or a newer Redis only.
 */

export const KEYS_FILE = 'redis-keys.ndjson';
const MATCH = 'pc:*';
const BATCH = 500;

/** One line of the keys file. */
export interface KeyEntry {
  readonly key: string;
  /** Unix milliseconds at which the key expires, or null for a key without a TTL. */
  readonly expiresAt: number | null;
  /** The DUMP payload, base64. */
  readonly dump: string;
}

/** Recordings are the one bulky thing in Redis; a backup carries them only when asked. */
export function isRecordingKey(key: string): boolean {
  return key.startsWith('pc:{rec:') || key.startsWith('pc:{recidx}');
}

/** The servers that own keys: every master of a cluster, or the one server. */
function owners(client: RedisClient): Redis[] {
  return client.isCluster ? (client as Cluster).nodes('master') : [client as Redis];
}

/** Every key of ours on every master (SCAN: the servers keep serving while it runs). */
export async function scanKeys(client: RedisClient, keep: (key: string) => boolean): Promise<{ node: Redis; keys: string[] }[]> {
  const out: { node: Redis; keys: string[] }[] = [];
  for (const node of owners(client)) {
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await node.scanBuffer(cursor, 'MATCH', MATCH, 'COUNT', 1000);
      cursor = next.toString();
      for (const k of batch) {
        const key = k.toString('utf8');
        if (keep(key)) keys.push(key);
      }
    } while (cursor !== '0');
    out.push({ node, keys: [...new Set(keys)] });
  }
  return out;
}

/**
 * Writes every kept key to `file` (created 0600). A key deleted or expired between SCAN and
 * DUMP is left out. Returns how many keys were written.
 */
export async function dumpKeys(client: RedisClient, file: string, keep: (key: string) => boolean): Promise<number> {
  const fd = openSync(file, 'wx', 0o600);
  let count = 0;
  try {
    for (const { node, keys } of await scanKeys(client, keep)) {
      for (let i = 0; i < keys.length; i += BATCH) {
        const batch = keys.slice(i, i + BATCH);
        const p = node.pipeline();
        for (const k of batch) p.dumpBuffer(k).pttl(k);
        const replies = (await p.exec()) ?? [];
        const readAt = Date.now();
        for (const [j, key] of batch.entries()) {
          const [dumpErr, dump] = replies[2 * j] ?? [];
          const [ttlErr, ttl] = replies[2 * j + 1] ?? [];
          if (dumpErr || ttlErr) throw new CliError('ERR_UNREACHABLE', `backup: reading ${key}: ${(dumpErr ?? ttlErr)?.message}`);
          if (!(dump instanceof Buffer) || typeof ttl !== 'number' || ttl === -2) continue;
          const entry: KeyEntry = { key, expiresAt: ttl < 0 ? null : readAt + ttl, dump: dump.toString('base64') };
          writeSync(fd, `${JSON.stringify(entry)}\n`);
          count++;
        }
      }
    }
  } finally {
    closeSync(fd);
  }
  return count;
}

/** The entries of a keys file, line by line (a recordings-heavy file need not fit in memory at once). */
export async function* readKeys(file: string): AsyncGenerator<KeyEntry> {
  const lines = createInterface({ input: createReadStream(file), crlfDelay: Infinity });
  let n = 0;
  for await (const line of lines) {
    n++;
    if (line.trim() === '') continue;
    let e: Partial<KeyEntry>;
    try {
      e = JSON.parse(line) as Partial<KeyEntry>;
    } catch {
      throw new CliError('ERR_CONFIG', `restore: ${KEYS_FILE} line ${n} is not JSON`);
    }
    if (typeof e.key !== 'string' || !e.key.startsWith('pc:') || typeof e.dump !== 'string' || !(e.expiresAt === null || typeof e.expiresAt === 'number')) {
      throw new CliError('ERR_CONFIG', `restore: ${KEYS_FILE} line ${n}: expected {key: "pc:…", expiresAt: ms|null, dump: base64}`);
    }
    yield e as KeyEntry;
  }
}

/** "12 keys (3 user, 2 ca, …; e.g. pc:{ca}:serial, …)": what an operator needs to judge a refusal. */
export function describeKeys(keys: readonly string[]): string {
  const groups = new Map<string, number>();
  for (const k of keys) {
    const tag = /^pc:\{([^}:]*)/.exec(k)?.[1] ?? k;
    groups.set(tag, (groups.get(tag) ?? 0) + 1);
  }
  const by = [...groups].sort((a, b) => b[1] - a[1]).map(([t, n]) => `${n} ${t}`).join(', ');
  const sample = [...keys].sort().slice(0, 5).join(', ');
  return `${keys.length} key${keys.length === 1 ? '' : 's'} (${by}; e.g. ${sample}${keys.length > 5 ? ', …' : ''})`;
}

/**
 * RESTOREs every entry (REPLACE, ABSTTL: a key expires when it would have without the backup,
 * and one already past its expiry is not brought back). On a cluster each command goes to the
 * master of its key's slot; keys that share a hash tag share that slot, as they did before.
 */
export async function restoreKeys(client: RedisClient, entries: AsyncIterable<KeyEntry>, now: () => number): Promise<{ restored: number; expired: number; keys: Set<string> }> {
  let restored = 0;
  let expired = 0;
  const keys = new Set<string>();
  let pending: Promise<void>[] = [];
  // Recorded rather than rejected: a RESTORE can fail while the loop awaits the next line, when
  // nothing awaits its promise yet (an unhandled rejection ends the process).
  let failure: CliError | undefined;
  const flush = async (): Promise<void> => {
    await Promise.all(pending);
    pending = [];
    if (failure !== undefined) throw failure;
  };
  for await (const e of entries) {
    keys.add(e.key);
    if (e.expiresAt !== null && e.expiresAt <= now()) {
      expired++;
      continue;
    }
    const payload = Buffer.from(e.dump, 'base64');
    const args = e.expiresAt === null ? [e.key, '0', payload, 'REPLACE'] : [e.key, String(e.expiresAt), payload, 'REPLACE', 'ABSTTL'];
    pending.push(
      client.call('RESTORE', ...args).then(
        () => undefined,
        (err: Error) => {
          failure ??= new CliError('ERR_REFUSED', `restore: RESTORE ${e.key}: ${err.message}${/payload version/i.test(err.message) ? ' (the backup came from a newer Redis than this one)' : ''}`);
        },
      ),
    );
    restored++;
    if (pending.length >= BATCH) await flush();
  }
  await flush();
  return { restored, expired, keys };
}

/** Deletes keys one by one (each may live on another cluster node). */
export async function deleteKeys(client: RedisClient, keys: readonly string[]): Promise<void> {
  for (let i = 0; i < keys.length; i += BATCH) await Promise.all(keys.slice(i, i + BATCH).map((k) => client.unlink(k)));
}

/**
 * A private redis-server on a unix socket in `dir`, loading what is there (an RDB by name, or
 * an AOF directory), for reading a snapshot key by key. Stopped without saving by `stop`.
 */
export async function temporaryRedis(dir: string, load: { rdb: string } | { aofDir: string }): Promise<{ client: Redis; stop(): Promise<void> }> {
  // The socket in a short private directory of its own: a unix socket path has 107 bytes at most,
  // and the staging directory beside a backup can be deep.
  const sockDir = mkdtempSync(join(tmpdir(), 'pc-snap-'));
  const sock = join(sockDir, 'redis.sock');
  const source = 'rdb' in load ? ['--dbfilename', load.rdb, '--appendonly', 'no'] : ['--appendonly', 'yes', '--appenddirname', load.aofDir, '--dbfilename', 'none.rdb'];
  const server = spawn('redis-server', ['--port', '0', '--unixsocket', sock, '--unixsocketperm', '700', '--dir', dir, ...source, '--save', ''], { stdio: 'ignore' });
  const exited = new Promise<void>((ok) => server.once('exit', () => ok()));
  let spawnError: Error | undefined;
  server.once('error', (e) => (spawnError = e));
  const client = new Redis({ path: sock, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  client.on('error', () => {});
  const stop = async (): Promise<void> => {
    client.disconnect();
    if (server.exitCode === null) server.kill('SIGKILL');
    await exited;
    rmSync(sockDir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (spawnError !== undefined || server.exitCode !== null) {
      client.disconnect();
      rmSync(sockDir, { recursive: true, force: true });
      if (spawnError !== undefined) throw new CliError('ERR_CONFIG', `redis-server: ${spawnError.message} (install Debian's redis-server)`);
      throw new CliError('ERR_REFUSED', `the temporary redis-server could not load the snapshot (exit ${server.exitCode})`);
    }
    try {
      await client.connect();
      // PING answers LOADING while the data is read; ready means every key is there.
      if ((await client.ping()) === 'PONG') return { client, stop };
    } catch {
      client.disconnect();
    }
    if (Date.now() > deadline) {
      await stop();
      throw new CliError('ERR_REFUSED', 'the temporary redis-server did not load the snapshot within 60 s');
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}
