import { spawn } from 'node:child_process';
import { readFileSync, readdirSync, readlinkSync, realpathSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join, resolve as resolvePath } from 'node:path';
import { freePort } from './process.js';

export const REDIS_SERVER_PATH = '/usr/bin/redis-server';

export interface RedisOptions {
  /** Directory for redis.conf, the socket and any data files; the server's working directory. */
  readonly dir: string;
  /** Listen only on `<dir>/redis.sock` (no TCP port). Default: 127.0.0.1 on a free port. */
  readonly unixSocket?: boolean;
  /** TCP port to use instead of a free one (e.g. to restart a server on the same address). */
  readonly port?: number;
  /** requirepass; the url then carries it. */
  readonly password?: string;
  /** Run as redis-sentinel (`--sentinel`); extraConfig then holds the `sentinel ...` lines. */
  readonly sentinel?: boolean;
  /** More redis.conf lines, appended last (later lines win for single-value directives). */
  readonly extraConfig?: readonly string[];
  /** Milliseconds to wait for PING to answer (default 10 s). */
  readonly startTimeoutMs?: number;
}

export interface RedisHandle {
  /** redis://[:password@]127.0.0.1:port or unix://<dir>/redis.sock */
  readonly url: string;
  readonly port: number | undefined;
  readonly socketPath: string | undefined;
  readonly pid: number;
  /** The server's stdout and stderr so far (it logs to stdout). */
  log(): string;
  /** Sends a signal without waiting (a test simulating a crash uses SIGKILL). */
  kill(signal?: NodeJS.Signals): void;
  /** SIGTERM (SIGKILL after 5 s) and waits for the process to exit. Safe to call twice. */
  stop(): Promise<void>;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * One PING over a raw socket. The harness stays free of ioredis so a test of the client code
 * cannot be fooled by the same client code probing readiness.
 */
export function pingRedis(target: { readonly port: number } | { readonly path: string }, password?: string): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = 'path' in target ? connect(target.path) : connect(target.port, '127.0.0.1');
    let buf = '';
    const done = (ok: boolean): void => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(1_000, () => done(false));
    sock.on('error', () => done(false));
    sock.on('connect', () => {
      const auth = password === undefined ? '' : `AUTH ${password}\r\n`;
      sock.write(`${auth}PING\r\n`);
    });
    sock.on('data', (b: Buffer) => {
      buf += b.toString('latin1');
      if (buf.includes('+PONG\r\n')) done(true);
      else if (buf.includes('-')) done(false);
    });
  });
}

/**
 * Runs the machine's redis-server in the foreground, either on 127.0.0.1 and a free port or on
 * a unix socket in `dir`. Persistence is off unless extraConfig turns it on. Resolves once PING
 * answers; rejects with the server's output when it exits first. Callers must stop() it.
 */
export async function startRedis(opts: RedisOptions): Promise<RedisHandle> {
  const dir = resolvePath(opts.dir);
  for (let attempt = 1; ; attempt++) {
    const port = opts.unixSocket === true ? undefined : (opts.port ?? (await freePort()));
    try {
      return await launch(opts, dir, port);
    } catch (e) {
      // freePort releases the port before redis binds it; another process may take it first.
      const retry = opts.port === undefined && port !== undefined && attempt < 3;
      if (retry && e instanceof Error && /Address already in use/.test(e.message)) continue;
      throw e;
    }
  }
}

async function launch(opts: RedisOptions, dir: string, port: number | undefined): Promise<RedisHandle> {
  const socketPath = port === undefined ? join(dir, 'redis.sock') : undefined;
  const lines = [
    port === undefined ? 'port 0' : `port ${port}`,
    'bind 127.0.0.1',
    ...(socketPath === undefined ? [] : [`unixsocket "${socketPath}"`, 'unixsocketperm 700']),
    `dir "${dir}"`,
    'daemonize no',
    'logfile ""',
    'save ""',
    'appendonly no',
    ...(opts.password === undefined ? [] : [`requirepass "${opts.password}"`]),
    ...(opts.extraConfig ?? []),
  ];
  const configPath = join(dir, opts.sentinel === true ? 'sentinel.conf' : 'redis.conf');
  writeFileSync(configPath, lines.join('\n') + '\n', { mode: 0o600 });
  const args = opts.sentinel === true ? [configPath, '--sentinel'] : [configPath];
  const child = spawn(REDIS_SERVER_PATH, args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.setEncoding('utf8');
  child.stderr.setEncoding('utf8');
  child.stdout.on('data', (s: string) => (output += s));
  child.stderr.on('data', (s: string) => (output += s));
  // A test runner that dies without calling stop() must not leave a server behind.
  const killOnExit = (): void => {
    child.kill('SIGKILL');
  };
  process.once('exit', killOnExit);
  let done = false;
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  void exited.then(() => {
    done = true;
    process.removeListener('exit', killOnExit);
  });
  const spawnError = new Promise<never>((_, reject) =>
    child.once('error', (e) => reject(new Error(`cannot run ${REDIS_SERVER_PATH}: ${e.message}`))),
  );

  const handle: RedisHandle = {
    url:
      socketPath !== undefined
        ? `unix://${socketPath}`
        : `redis://${opts.password === undefined ? '' : `:${encodeURIComponent(opts.password)}@`}127.0.0.1:${port}`,
    port,
    socketPath,
    pid: child.pid ?? -1,
    log: () => output,
    kill: (signal = 'SIGTERM') => {
      if (!done) child.kill(signal);
    },
    async stop() {
      if (done) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };

  const deadline = Date.now() + (opts.startTimeoutMs ?? 10_000);
  const target = socketPath !== undefined ? { path: socketPath } : { port: port ?? 0 };
  const ready = (async (): Promise<RedisHandle> => {
    for (;;) {
      if (done) throw new Error(`redis-server ${configPath} exited before answering PING (code ${child.exitCode}):\n${output}`);
      if (await pingRedis(target, opts.password)) return handle;
      if (Date.now() > deadline) {
        await handle.stop();
        throw new Error(`redis-server ${configPath} did not answer PING in time:\n${output}`);
      }
      await sleep(25);
    }
  })();
  return Promise.race([ready, spawnError]);
}

/**
 * Pids of redis-server processes whose working directory is `dir` or below it (redis chdirs
 * to its `dir`). Tests use it to prove that nothing they started outlives them, even when other
 * test files run their own servers at the same time.
 */
export function redisProcessesUnder(dir: string): number[] {
  const root = realpathSync(resolvePath(dir));
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const exe = readlinkSync(`/proc/${entry}/exe`);
      if (!/redis-(server|check-rdb|check-aof)/.test(exe)) continue;
      const cwd = readlinkSync(`/proc/${entry}/cwd`);
      if (cwd === root || cwd.startsWith(root + '/')) pids.push(Number(entry));
    } catch {
      // The process ended while we looked, or is not ours to read.
    }
  }
  return pids;
}

/**
 * Whether a process with this pid is running. A zombie (exited, not yet reaped by whoever
 * inherited it) counts as gone: it holds no socket, file or memory any more.
 */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    // Field 3 of /proc/PID/stat, after the parenthesised command name, is the state.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** The part of an ioredis client redisSnapshot reads with (the harness has no ioredis of its own). */
export interface SnapshotSource {
  keys(pattern: string): Promise<string[]>;
  type(key: string): Promise<string>;
  get(key: string): Promise<string | null>;
  hgetall(key: string): Promise<Record<string, string>>;
  smembers(key: string): Promise<string[]>;
  zrange(key: string, start: number, stop: number, withScores: 'WITHSCORES'): Promise<string[]>;
  lrange(key: string, start: number, stop: number): Promise<string[]>;
  xrange(key: string, start: string, end: string): Promise<[string, string[]][]>;
  pttl(key: string): Promise<number>;
}

/**
 * Every key with its type and readable value (so a test can also search it for a secret that
 * must not be stored), to prove a refused request changed nothing. TTLs drift, so only whether
 * one is set. `ignore` leaves out keys a refusal is expected to change (audit, rate counters).
 */
export async function redisSnapshot(redis: SnapshotSource, ignore: (key: string) => boolean = () => false): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const key of (await redis.keys('*')).sort()) {
    if (ignore(key)) continue;
    const type = await redis.type(key);
    let value: unknown;
    if (type === 'hash') value = await redis.hgetall(key);
    else if (type === 'string') value = await redis.get(key);
    else if (type === 'set') value = (await redis.smembers(key)).sort();
    else if (type === 'zset') value = await redis.zrange(key, 0, -1, 'WITHSCORES');
    else if (type === 'list') value = await redis.lrange(key, 0, -1);
    else if (type === 'stream') value = await redis.xrange(key, '-', '+');
    else value = type;
    out[key] = { type, value, expires: (await redis.pttl(key)) > 0 };
  }
  return out;
}
