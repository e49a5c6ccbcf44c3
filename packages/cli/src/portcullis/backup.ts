import { execFile, spawn } from 'node:child_process';
import { closeSync, cpSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { basename, dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { parseAuthConfig } from '@portcullis/auth';
import { connectRedis, type RedisConfig, type RedisConnection } from '@portcullis/store';
import { CliError } from '../common/errors.js';
import { KEYS_FILE, deleteKeys, describeKeys, dumpKeys, isRecordingKey, readKeys, restoreKeys, scanKeys, temporaryRedis } from './backup-keys.js';
import { loadStartConfig } from './config.js';

/*
 * `portcullis backup` and `portcullis restore`: the whole state of a Portcullis install in one
 * file. What has to be in it: Redis (users, roles, sessions, the serial counter, hosts, audit,
 * and recordings when asked), the CA keys and auth's TLS key (proxies and hosts pin its
 * fingerprint, so a new one would strand them), the proxy's credential and host key, web's
 * directory, and the config.
 *
 * Redis goes in as a keys file (backup-keys.ts): DUMP payloads of every `pc:*` key, so a backup
 * of any topology (embedded, a URL, Sentinel, Cluster) restores into any other. The embedded
 * server is read from one snapshot (an RDB through `redis-cli --rdb` while it runs, its AOF at
 * rest when stopped, loaded into a private redis-server): a point-in-time copy. An external
 * Redis is read key by key while it serves: not one instant, which the serial floor
 * (auth/src/ca/serials.ts) makes safe for certificates. Version 1 archives (an RDB or AOF) are
 * still read, through the same private redis-server.
 *
 * The archive is a plain .tar.gz written 0600 and not encrypted here: it holds the CA private
 * keys, and the operator's own key management (age, gpg, a KMS-backed bucket) is a better place
 * for that secret than a passphrase typed on this command line. docs/operations.md shows how.
 */

const run = promisify(execFile);
const FORMAT = 'portcullis-backup';
const VERSION = 2;
/** Left out of the file copy: the embedded Redis (taken as keys instead) and earlier restores' leftovers. */
const SKIP_TOP = /^(pre-restore-|\.restore-|\.backup-)/;

interface ManifestV1 {
  readonly format: typeof FORMAT;
  readonly version: 1;
  readonly createdAt: string;
  readonly redis: 'embedded' | 'external';
  readonly stateDir: string;
  readonly config: string | undefined;
}

interface Manifest {
  readonly format: typeof FORMAT;
  readonly version: 2;
  readonly createdAt: string;
  readonly redis: {
    /** The topology it was read from (any restores into any). */
    readonly source: RedisConnection['kind'];
    /** The keys file in the archive and how many keys it holds. */
    readonly file: typeof KEYS_FILE;
    readonly keys: number;
    /** Whether session recordings (`pc:{rec:…}`, `pc:{recidx}…`) are in it. */
    readonly recordings: boolean;
    /** One snapshot (embedded) or read key by key while serving (external). */
    readonly pointInTime: boolean;
  };
  readonly stateDir: string;
  readonly config: string | undefined;
}

type Log = (line: string) => void;

interface Target {
  readonly stateDir: string;
  readonly configPath: string | undefined;
  readonly redis: RedisConfig;
  /** The embedded Redis's directory, or undefined when auth uses an external Redis. */
  readonly embeddedDir: string | undefined;
}

/** Where the state is and which Redis holds it, from the same config `portcullis start` reads. */
function target(o: { config?: string; state?: string; redisUrl?: string; env?: NodeJS.ProcessEnv }): Target {
  // The environment overrides `portcullis start` honours (REDIS_URL, PORTCULLIS_STATE_DIR) apply
  // here too: run with the service's environment, backup finds what the service uses.
  const c = loadStartConfig(o.config, { env: o.env ?? process.env });
  const stateDir = resolve(o.state ?? c.state_dir);
  const authDir = join(stateDir, 'auth');
  let redis: RedisConfig;
  try {
    redis = o.redisUrl !== undefined ? { url: o.redisUrl } : parseAuthConfig({ ...c.auth, state_dir: authDir }, { env: {}, baseDir: c.baseDir }).redis;
  } catch (e) {
    throw new CliError('ERR_CONFIG', `auth: ${e instanceof Error ? e.message : String(e)}`);
  }
  return {
    stateDir,
    configPath: o.config === undefined ? undefined : resolve(o.config),
    redis,
    embeddedDir: 'embedded' in redis ? resolve(redis.embedded.stateDir) : undefined,
  };
}

/**
 * How redis-cli reaches the embedded server: its unix socket, or (with `redis.embedded.port`)
 * loopback TCP with the password the supervisor generated, passed through REDISCLI_AUTH rather
 * than argv, where any local user could read it in ps.
 */
function embeddedCli(t: Target): { args: string[]; env: NodeJS.ProcessEnv; alive(): Promise<boolean> } {
  const dir = t.embeddedDir!;
  const port = 'embedded' in t.redis ? t.redis.embedded.port : undefined;
  const answers = (o: { path: string } | { port: number; host: string }): Promise<boolean> =>
    new Promise((done) => {
      const s = createConnection(o);
      s.once('connect', () => (s.destroy(), done(true)));
      s.once('error', () => done(false));
    });
  if (port === undefined) {
    const path = join(dir, 'redis.sock');
    return { args: ['-s', path], env: process.env, alive: async () => existsSync(path) && (await answers({ path })) };
  }
  const pw = join(dir, 'password');
  const env = existsSync(pw) ? { ...process.env, REDISCLI_AUTH: readFileSync(pw, 'utf8').trim() } : process.env;
  return { args: ['-h', '127.0.0.1', '-p', String(port)], env, alive: () => answers({ host: '127.0.0.1', port }) };
}

async function redisCli(args: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<string> {
  try {
    return (await run('redis-cli', [...args], { maxBuffer: 1 << 20, env })).stdout;
  } catch (e) {
    const err = e as { stderr?: string; message: string; code?: string };
    if (err.code === 'ENOENT') throw new CliError('ERR_CONFIG', 'redis-cli not found: install Debian\'s redis-tools (or redis-server)');
    throw new CliError('ERR_UNREACHABLE', `redis-cli ${args.join(' ')}: ${(err.stderr ?? err.message).trim().split('\n').pop()}`);
  }
}

async function connect(t: Target, what: string): Promise<RedisConnection> {
  try {
    return await connectRedis(t.redis, { readyTimeoutMs: 15_000 });
  } catch (e) {
    throw new CliError('ERR_UNREACHABLE', `${what}: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/**
 * Writes the keys of a snapshot (an RDB file or an AOF directory inside `dir`) to `keysFile`
 * through a private redis-server. `dir` is removed afterwards.
 */
async function snapshotKeys(dir: string, load: { rdb: string } | { aofDir: string }, keysFile: string, keep: (key: string) => boolean): Promise<number> {
  if ('rdb' in load && !readFileSync(join(dir, load.rdb)).subarray(0, 5).equals(Buffer.from('REDIS'))) {
    // redis-cli's exit code does not always say a transfer failed (a refused AUTH exits 0).
    throw new CliError('ERR_REFUSED', 'the Redis snapshot is not an RDB file (refused by Redis?)');
  }
  const server = await temporaryRedis(dir, load);
  try {
    return await dumpKeys(server.client, keysFile, keep);
  } finally {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

function tar(args: readonly string[]): Promise<void> {
  return new Promise((ok, fail) => {
    const p = spawn('tar', [...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.once('error', fail);
    p.once('exit', (code) => (code === 0 ? ok() : fail(new CliError('ERR_REFUSED', `tar: ${err.trim() || `exit ${code}`}`))));
  });
}

export interface BackupOptions {
  readonly config?: string;
  readonly state?: string;
  /** An external Redis to read instead of the one the config names. */
  readonly redisUrl?: string;
  readonly out: string;
  /** Session recordings too (default false: they can outweigh everything else by far). */
  readonly includeRecordings?: boolean;
  readonly env?: NodeJS.ProcessEnv;
}

export async function backup(o: BackupOptions, log: Log): Promise<void> {
  const t = target(o);
  if (!existsSync(join(t.stateDir, 'auth')) && t.embeddedDir !== undefined) throw new CliError('ERR_NOT_FOUND', `no auth state in ${t.stateDir} (is --state right?)`);
  const out = resolve(o.out);
  if (existsSync(out)) throw new CliError('ERR_USAGE', `${out} exists; backups are never overwritten`);
  const recordings = o.includeRecordings === true;
  const keep = (key: string): boolean => recordings || !isRecordingKey(key);
  // Staging beside the output: same file system for the final rename, private to this user.
  const stage = mkdtempSync(join(dirname(out), '.backup-'));
  try {
    // 1. Redis, as a keys file any topology can load.
    const keysFile = join(stage, KEYS_FILE);
    let keys: number;
    let source: RedisConnection['kind'];
    if (t.embeddedDir !== undefined) {
      source = 'embedded';
      const cli = embeddedCli(t);
      const snap = join(stage, 'snapshot');
      mkdirSync(snap, { mode: 0o700 });
      if (await cli.alive()) {
        await redisCli([...cli.args, '--rdb', join(snap, 'dump.rdb')], cli.env);
        if (!existsSync(join(snap, 'dump.rdb'))) throw new CliError('ERR_REFUSED', 'Redis sent no snapshot (refused by Redis?)');
        keys = await snapshotKeys(snap, { rdb: 'dump.rdb' }, keysFile, keep);
      } else if (existsSync(join(t.embeddedDir, 'appendonlydir'))) {
        // The service is stopped: its AOF directory is at rest, and a copy of it is as good as a snapshot.
        cpSync(join(t.embeddedDir, 'appendonlydir'), join(snap, 'appendonlydir'), { recursive: true });
        keys = await snapshotKeys(snap, { aofDir: 'appendonlydir' }, keysFile, keep);
      } else {
        throw new CliError('ERR_NOT_FOUND', `no Redis data: the embedded Redis (${cli.args.join(' ')}) does not answer and no AOF is in ${t.embeddedDir}`);
      }
    } else {
      const conn = await connect(t, 'backup');
      try {
        source = conn.kind;
        keys = await dumpKeys(conn.client, keysFile, keep);
      } finally {
        await conn.close();
      }
    }
    // 2. The files: CA keys, TLS, proxy credential, web; not the embedded Redis's own directory.
    const files = join(stage, 'state');
    mkdirSync(files, { mode: 0o700 });
    const skipRedis = t.embeddedDir;
    if (existsSync(t.stateDir)) {
      for (const name of readdirSync(t.stateDir)) {
        if (SKIP_TOP.test(name)) continue;
        cpSync(join(t.stateDir, name), join(files, name), {
          recursive: true,
          preserveTimestamps: true,
          filter: (src) => skipRedis === undefined || (resolve(src) !== skipRedis && !resolve(src).startsWith(`${skipRedis}/`)),
        });
      }
    }
    // 3. The config, so a rebuilt machine starts the same way.
    if (t.configPath !== undefined) cpSync(t.configPath, join(stage, 'portcullis.yaml'));
    const manifest: Manifest = {
      format: FORMAT,
      version: VERSION,
      createdAt: new Date().toISOString(),
      redis: { source, file: KEYS_FILE, keys, recordings, pointInTime: source === 'embedded' },
      stateDir: t.stateDir,
      config: t.configPath,
    };
    writeFileSync(join(stage, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`, { mode: 0o600 });
    // The archive exists as 0600 before tar writes a byte into it (tar keeps an existing file's mode).
    const tmp = `${out}.partial`;
    closeSync(openSync(tmp, 'wx', 0o600));
    try {
      await tar(['-C', stage, '-czf', tmp, '.']);
      renameSync(tmp, out);
    } catch (e) {
      rmSync(tmp, { force: true });
      throw e;
    }
    log(`portcullis: backup of ${t.stateDir} (${keys} Redis keys from ${source} Redis, recordings ${recordings ? 'included' : 'left out'}${t.configPath === undefined ? '' : ', config'}) written to ${out}`);
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

function readManifest(stage: string, file: string): Manifest | ManifestV1 {
  let m: Partial<Manifest | ManifestV1>;
  try {
    m = JSON.parse(readFileSync(join(stage, 'manifest.json'), 'utf8')) as Partial<Manifest | ManifestV1>;
  } catch {
    throw new CliError('ERR_CONFIG', `${basename(file)} is not a portcullis backup (no manifest.json)`);
  }
  if (m.format !== FORMAT || (m.version !== 1 && m.version !== 2)) throw new CliError('ERR_CONFIG', `${basename(file)}: unsupported backup format ${String(m.format)} ${String(m.version)} (this portcullis reads ${FORMAT} 1 and 2)`);
  return m as Manifest | ManifestV1;
}

export interface RestoreOptions {
  readonly config?: string;
  readonly state?: string;
  /** An external Redis to restore into instead of the one the config names. */
  readonly redisUrl?: string;
  readonly in: string;
  /** Move existing files aside and replace the Redis keys of ours instead of refusing. */
  readonly force?: boolean;
  readonly env?: NodeJS.ProcessEnv;
  /** The clock that decides which keys expired since the backup (default Date.now). */
  readonly now?: () => number;
}

export async function restore(o: RestoreOptions, log: Log): Promise<void> {
  const t = target(o);
  const now = o.now ?? Date.now;
  const file = resolve(o.in);
  if (!existsSync(file)) throw new CliError('ERR_NOT_FOUND', `${file} does not exist`);
  if (t.embeddedDir !== undefined && (await embeddedCli(t).alive())) throw new CliError('ERR_REFUSED', `portcullis is running on ${t.stateDir}: stop it first (systemctl stop portcullis)`);
  // Files written by root would be unreadable to the service's own user after the restore.
  if (process.getuid?.() === 0) log('portcullis: restoring as root: the files will belong to root; run as the service user (sudo -u portcullis) or chown -R the state directory afterwards');
  // A restore that fails leaves no trace: a state directory made here goes again with the stage.
  const madeStateDir = mkdirSync(t.stateDir, { recursive: true, mode: 0o700 });
  const stage = mkdtempSync(join(t.stateDir, '.restore-'));
  let restored = false;
  let conn: RedisConnection | undefined;
  try {
    await tar(['-C', stage, '-xzf', file]);
    const manifest = readManifest(stage, file);
    const recordings = manifest.version === 1 || manifest.redis.recordings;
    // Only the kinds of keys the backup holds are in the way: a backup without recordings
    // leaves the target's recordings as they are.
    const ours = (key: string): boolean => recordings || !isRecordingKey(key);

    // Everything in the way is found before anything changes, and named in one refusal.
    const inTheWay: string[] = [];
    const present = ['auth', 'proxy', 'web'].filter((s) => existsSync(join(t.stateDir, s)));
    if (present.length > 0) inTheWay.push(`${t.stateDir} holds ${present.join(', ')}`);
    const strayAof = t.embeddedDir !== undefined && !t.embeddedDir.startsWith(`${join(t.stateDir, 'auth')}/`) && existsSync(join(t.embeddedDir, 'appendonlydir')) ? join(t.embeddedDir, 'appendonlydir') : undefined;
    if (strayAof !== undefined) inTheWay.push(`the embedded Redis has data in ${strayAof}`);
    let existing: string[] = [];
    if (t.embeddedDir === undefined) {
      conn = await connect(t, 'restore');
      existing = (await scanKeys(conn.client, ours)).flatMap((n) => n.keys);
      if (existing.length > 0) inTheWay.push(`redis at ${conn.target} holds ${describeKeys(existing)}`);
    }
    if (inTheWay.length > 0 && o.force !== true) {
      throw new CliError('ERR_REFUSED', `restore: the target already holds portcullis state: ${inTheWay.join('; ')}. Nothing was changed; --force moves the files aside (into pre-restore-<time>/) and replaces the Redis keys`);
    }

    // The keys to load: a version 2 keys file, or a version 1 snapshot read through a private redis-server.
    let keysFile = join(stage, KEYS_FILE);
    if (manifest.version === 1) {
      keysFile = join(stage, `v1-${KEYS_FILE}`);
      const snap = join(stage, 'snapshot');
      mkdirSync(snap, { mode: 0o700 });
      if (existsSync(join(stage, 'redis.rdb'))) {
        renameSync(join(stage, 'redis.rdb'), join(snap, 'dump.rdb'));
        await snapshotKeys(snap, { rdb: 'dump.rdb' }, keysFile, () => true);
      } else if (existsSync(join(stage, 'appendonlydir'))) {
        renameSync(join(stage, 'appendonlydir'), join(snap, 'appendonlydir'));
        await snapshotKeys(snap, { aofDir: 'appendonlydir' }, keysFile, () => true);
      } else {
        throw new CliError('ERR_CONFIG', `${basename(file)}: a version 1 backup without redis.rdb or appendonlydir`);
      }
    }
    if (!existsSync(keysFile)) throw new CliError('ERR_CONFIG', `${basename(file)}: no ${KEYS_FILE} in the archive`);

    // Nothing is deleted on disk: what was here moves into one directory the operator removes when satisfied.
    if (present.length > 0 || strayAof !== undefined) {
      const aside = join(t.stateDir, `pre-restore-${new Date(now()).toISOString().replace(/[:.]/g, '-')}`);
      mkdirSync(aside, { mode: 0o700 });
      for (const s of present) renameSync(join(t.stateDir, s), join(aside, s));
      if (strayAof !== undefined) renameSync(strayAof, join(aside, 'embedded-appendonlydir'));
      log(`portcullis: the state that was in ${t.stateDir} is now in ${aside}`);
    }
    for (const name of readdirSync(join(stage, 'state'))) renameSync(join(stage, 'state', name), join(t.stateDir, name));
    if (existsSync(join(stage, 'portcullis.yaml'))) {
      renameSync(join(stage, 'portcullis.yaml'), join(t.stateDir, 'portcullis.yaml.restored'));
      log(`portcullis: the backed-up config is in ${join(t.stateDir, 'portcullis.yaml.restored')} (compare with ${manifest.config ?? 'yours'})`);
    }

    // The embedded server is started on its (now empty) directory just for the load; its AOF keeps the keys.
    if (conn === undefined) conn = await connect(t, 'restore');
    const r = await restoreKeys(conn.client, readKeys(keysFile), now);
    // Replace means replace: keys of ours the backup does not have go (after the load, so no key is ever missing in between).
    const stale = existing.filter((k) => !r.keys.has(k));
    await deleteKeys(conn.client, stale);
    log(
      `portcullis: restored ${t.stateDir} and ${r.restored} Redis keys into ${conn.target}` +
        `${r.expired > 0 ? ` (${r.expired} expired since the backup and were left out)` : ''}` +
        `${stale.length > 0 ? `; deleted ${stale.length} keys the backup did not have` : ''}` +
        `${recordings ? '' : '; the backup holds no recordings: the target\'s were left as they were'}; start portcullis`,
    );
    restored = true;
  } finally {
    await conn?.close();
    rmSync(stage, { recursive: true, force: true });
    if (!restored && madeStateDir !== undefined && readdirSync(t.stateDir).length === 0) rmSync(madeStateDir, { recursive: true, force: true });
  }
}
