import { execFile, spawn } from 'node:child_process';
import { closeSync, cpSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { basename, dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { parseAuthConfig } from '@portcullis/auth';
import { CliError } from '../common/errors.js';
import { loadStartConfig, serviceDir } from './config.js';

/*
 * `portcullis backup` and `portcullis restore`: the whole state of a Portcullis install in one
 * file. What has to be in it: Redis (users, roles, sessions, the serial counter, hosts, audit,
 * recordings), the CA keys and auth's TLS key (proxies and hosts pin its fingerprint, so a new
 * one would strand them), the proxy's credential and host key, web's directory, and the config.
 *
 * Redis is taken as an RDB snapshot through the replication protocol (`redis-cli --rdb`), which
 * Redis makes from one fork: a point-in-time copy however busy the service is, for the embedded
 * server (its socket) and an external one (its URL) alike. The files are copied beside it; they
 * only change on CA rotation or enrollment, which an operator does not run during a backup.
 *
 * The archive is a plain .tar.gz written 0600 and not encrypted here: it holds the CA private
 * keys, and the operator's own key management (age, gpg, a KMS-backed bucket) is a better place
 * for that secret than a passphrase typed on this command line. docs/operations.md shows how.
 */

const run = promisify(execFile);
const FORMAT = 'portcullis-backup';
const VERSION = 1;
/** Left out of the file copy: the embedded Redis (taken as RDB instead) and earlier restores' leftovers. */
const SKIP_TOP = /^(pre-restore-|\.restore-|\.backup-)/;

interface Manifest {
  readonly format: typeof FORMAT;
  readonly version: number;
  readonly createdAt: string;
  /** Where the Redis data came from: the embedded server is rebuilt by restore, an external one is not. */
  readonly redis: 'embedded' | 'external';
  readonly stateDir: string;
  readonly config: string | undefined;
}

type Log = (line: string) => void;

interface Target {
  readonly stateDir: string;
  readonly configPath: string | undefined;
  /** The embedded Redis's directory, or undefined when auth uses an external Redis (or runs elsewhere). */
  readonly embeddedDir: string | undefined;
  readonly redisUrl: string | undefined;
}

/** Where the state is and which Redis holds it, from the same config `portcullis start` reads. */
function target(o: { config?: string; state?: string; redisUrl?: string; env?: NodeJS.ProcessEnv }): Target {
  // The environment overrides `portcullis start` honours (REDIS_URL, PORTCULLIS_STATE_DIR) apply
  // here too: run with the service's environment, backup finds what the service uses.
  const c = loadStartConfig(o.config, { env: o.env ?? process.env });
  const stateDir = resolve(o.state ?? c.state_dir);
  const authDir = join(stateDir, 'auth');
  let redis: { embedded?: { stateDir: string }; url?: string } = {};
  try {
    redis = parseAuthConfig({ ...c.auth, state_dir: authDir }, { env: {}, baseDir: c.baseDir }).redis as typeof redis;
  } catch (e) {
    throw new CliError('ERR_CONFIG', `auth: ${e instanceof Error ? e.message : String(e)}`);
  }
  const url = o.redisUrl ?? redis.url;
  return {
    stateDir,
    configPath: o.config === undefined ? undefined : resolve(o.config),
    embeddedDir: url === undefined ? (redis.embedded?.stateDir ?? join(authDir, 'redis')) : undefined,
    redisUrl: url,
  };
}

/** Whether something answers on the embedded Redis's socket (the service is running). */
function socketAlive(path: string): Promise<boolean> {
  if (!existsSync(path)) return Promise.resolve(false);
  return new Promise((done) => {
    const s = createConnection(path);
    s.once('connect', () => (s.destroy(), done(true)));
    s.once('error', () => done(false));
  });
}

async function redisCli(args: readonly string[], password?: string): Promise<string> {
  try {
    return (await run('redis-cli', [...args], { maxBuffer: 1 << 20, env: password === undefined ? process.env : { ...process.env, REDISCLI_AUTH: password } })).stdout;
  } catch (e) {
    const err = e as { stderr?: string; message: string; code?: string };
    if (err.code === 'ENOENT') throw new CliError('ERR_CONFIG', 'redis-cli not found: install Debian\'s redis-tools (or redis-server)');
    throw new CliError('ERR_UNREACHABLE', `redis-cli ${args.filter((a) => !a.startsWith('redis')).join(' ')}: ${(err.stderr ?? err.message).trim().split('\n').pop()}`);
  }
}

/**
 * redis-cli's connection flags for a redis://, rediss:// or unix:// URL. The password goes
 * through REDISCLI_AUTH rather than the command line, where any local user could read it in ps.
 */
function urlArgs(url: string): { args: string[]; password: string | undefined } {
  if (url.startsWith('unix://')) return { args: ['-s', url.slice('unix://'.length)], password: undefined };
  const u = new URL(url);
  const password = u.password === '' ? undefined : decodeURIComponent(u.password);
  const user = u.username === '' ? [] : ['--user', decodeURIComponent(u.username)];
  u.username = '';
  u.password = '';
  return { args: [...(u.protocol === 'rediss:' ? ['--tls'] : []), ...user, '-u', u.toString()], password };
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

export async function backup(o: { config?: string; state?: string; redisUrl?: string; out: string; env?: NodeJS.ProcessEnv }, log: Log): Promise<void> {
  const t = target(o);
  if (!existsSync(join(t.stateDir, 'auth')) && t.redisUrl === undefined) throw new CliError('ERR_NOT_FOUND', `no auth state in ${t.stateDir} (is --state right?)`);
  const out = resolve(o.out);
  if (existsSync(out)) throw new CliError('ERR_USAGE', `${out} exists; backups are never overwritten`);
  // Staging beside the output: same file system for the final rename, private to this user.
  const stage = mkdtempSync(join(dirname(out), '.backup-'));
  let embedded = false;
  try {
    // 1. Redis, point in time.
    const rdb = join(stage, 'redis.rdb');
    const socket = t.embeddedDir === undefined ? undefined : join(t.embeddedDir, 'redis.sock');
    if (t.redisUrl !== undefined) {
      const c = urlArgs(t.redisUrl);
      await redisCli([...c.args, '--rdb', rdb], c.password);
    } else if (socket !== undefined && (await socketAlive(socket))) {
      embedded = true;
      await redisCli(['-s', socket, '--rdb', rdb]);
    } else if (t.embeddedDir !== undefined && existsSync(join(t.embeddedDir, 'appendonlydir'))) {
      // The service is stopped: its AOF directory is at rest, and a copy of it is as good as a snapshot.
      embedded = true;
      cpSync(join(t.embeddedDir, 'appendonlydir'), join(stage, 'appendonlydir'), { recursive: true });
    } else {
      throw new CliError('ERR_NOT_FOUND', `no Redis data: neither ${socket ?? 'a socket'} answers nor an AOF is in ${t.embeddedDir ?? '-'}`);
    }
    // redis-cli's exit code does not always say a transfer failed (a refused AUTH exits 0).
    if (existsSync(rdb) && !readFileSync(rdb).subarray(0, 5).equals(Buffer.from('REDIS'))) throw new CliError('ERR_REFUSED', 'the Redis snapshot is not an RDB file (refused by Redis?)');
    if (!existsSync(rdb) && !existsSync(join(stage, 'appendonlydir'))) throw new CliError('ERR_REFUSED', 'Redis sent no snapshot (refused by Redis?)');
    // 2. The files: CA keys, TLS, proxy credential, web; not the embedded Redis's own directory.
    const files = join(stage, 'state');
    mkdirSync(files, { mode: 0o700 });
    const skipRedis = t.embeddedDir === undefined ? undefined : resolve(t.embeddedDir);
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
    const manifest: Manifest = { format: FORMAT, version: VERSION, createdAt: new Date().toISOString(), redis: embedded ? 'embedded' : 'external', stateDir: t.stateDir, config: t.configPath };
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
    log(`portcullis: backup of ${t.stateDir} (${manifest.redis} Redis${t.configPath === undefined ? '' : ', config'}) written to ${out}`);
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}

/**
 * Turns an RDB into the embedded server's AOF directory. The embedded Redis runs with
 * appendonly (and then ignores a dump.rdb), so a temporary redis-server loads the RDB with
 * appendonly off, then switching it on makes Redis write a fresh AOF from memory: the same
 * files the embedded server would have made itself.
 */
async function rdbToAof(rdb: string, dir: string): Promise<void> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  renameSync(rdb, join(dir, 'restore.rdb'));
  const sock = join(dir, 'restore.sock');
  const server = spawn('redis-server', ['--port', '0', '--unixsocket', sock, '--unixsocketperm', '700', '--dir', dir, '--dbfilename', 'restore.rdb', '--appendonly', 'no', '--save', ''], { stdio: 'ignore' });
  const exited = new Promise<void>((ok) => server.once('exit', () => ok()));
  server.once('error', () => {});
  try {
    const deadline = Date.now() + 60_000;
    const until = async (what: string, ready: () => Promise<boolean>): Promise<void> => {
      while (!(await ready().catch(() => false))) {
        if (Date.now() > deadline || server.exitCode !== null) throw new CliError('ERR_REFUSED', `restore: the temporary redis-server did not ${what}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    await until('load the backup', async () => (await redisCli(['-s', sock, 'ping'])).trim() === 'PONG');
    await redisCli(['-s', sock, 'config', 'set', 'appendonly', 'yes']);
    await until('write its AOF', async () => {
      const info = await redisCli(['-s', sock, 'info', 'persistence']);
      return /aof_enabled:1/.test(info) && /aof_rewrite_in_progress:0/.test(info) && /aof_rewrite_scheduled:0/.test(info) && /aof_last_bgrewrite_status:ok/.test(info);
    });
    await redisCli(['-s', sock, 'shutdown', 'nosave']).catch(() => '');
    await exited;
  } finally {
    if (server.exitCode === null) server.kill('SIGTERM');
    rmSync(join(dir, 'restore.rdb'), { force: true });
    rmSync(sock, { force: true });
  }
}

export async function restore(o: { config?: string; state?: string; in: string; force?: boolean; env?: NodeJS.ProcessEnv }, log: Log): Promise<void> {
  const t = target(o);
  const file = resolve(o.in);
  if (!existsSync(file)) throw new CliError('ERR_NOT_FOUND', `${file} does not exist`);
  if (t.embeddedDir !== undefined && (await socketAlive(join(t.embeddedDir, 'redis.sock')))) throw new CliError('ERR_REFUSED', `portcullis is running on ${t.stateDir}: stop it first (systemctl stop portcullis)`);
  // Files written by root would be unreadable to the service's own user after the restore.
  if (process.getuid?.() === 0) log('portcullis: restoring as root: the files will belong to root; run as the service user (sudo -u portcullis) or chown -R the state directory afterwards');
  mkdirSync(t.stateDir, { recursive: true, mode: 0o700 });
  const present = ['auth', 'proxy', 'web'].filter((s) => existsSync(join(t.stateDir, s)));
  if (present.length > 0 && o.force !== true) throw new CliError('ERR_REFUSED', `${t.stateDir} already holds state (${present.join(', ')}); --force moves it aside and restores`);
  const stage = mkdtempSync(join(t.stateDir, '.restore-'));
  try {
    await tar(['-C', stage, '-xzf', file]);
    let manifest: Manifest;
    try {
      manifest = JSON.parse(readFileSync(join(stage, 'manifest.json'), 'utf8')) as Manifest;
    } catch {
      throw new CliError('ERR_CONFIG', `${basename(file)} is not a portcullis backup (no manifest.json)`);
    }
    if (manifest.format !== FORMAT || manifest.version !== VERSION) throw new CliError('ERR_CONFIG', `${basename(file)}: unsupported backup format ${manifest.format} ${manifest.version}`);
    // Nothing is deleted: what was here moves into one directory the operator removes when satisfied.
    if (present.length > 0) {
      const aside = join(t.stateDir, `pre-restore-${new Date().toISOString().replace(/[:.]/g, '-')}`);
      mkdirSync(aside, { mode: 0o700 });
      for (const s of present) renameSync(join(t.stateDir, s), join(aside, s));
      log(`portcullis: the state that was in ${t.stateDir} is now in ${aside}`);
    }
    for (const name of readdirSync(join(stage, 'state'))) renameSync(join(stage, 'state', name), join(t.stateDir, name));
    if (existsSync(join(stage, 'portcullis.yaml'))) {
      renameSync(join(stage, 'portcullis.yaml'), join(t.stateDir, 'portcullis.yaml.restored'));
      log(`portcullis: the backed-up config is in ${join(t.stateDir, 'portcullis.yaml.restored')} (compare with ${manifest.config ?? 'yours'})`);
    }
    if (t.embeddedDir !== undefined) {
      rmSync(join(t.embeddedDir, 'appendonlydir'), { recursive: true, force: true });
      if (existsSync(join(stage, 'appendonlydir'))) {
        mkdirSync(t.embeddedDir, { recursive: true, mode: 0o700 });
        renameSync(join(stage, 'appendonlydir'), join(t.embeddedDir, 'appendonlydir'));
      } else {
        await rdbToAof(join(stage, 'redis.rdb'), t.embeddedDir);
      }
      log(`portcullis: restored ${t.stateDir} and its embedded Redis from ${file}; start portcullis`);
    } else {
      // An external Redis belongs to its operator: loading an RDB means replacing its dump file while it is stopped.
      const rdb = join(t.stateDir, 'redis-restore.rdb');
      if (existsSync(join(stage, 'redis.rdb'))) renameSync(join(stage, 'redis.rdb'), rdb);
      log(`portcullis: restored the files of ${t.stateDir}; load ${rdb} into your Redis (stop it, put it in place of its dump.rdb with appendonly off, start it, then turn appendonly back on) before starting portcullis`);
    }
  } finally {
    rmSync(stage, { recursive: true, force: true });
  }
}
