import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  accessSync,
  chmodSync,
  closeSync,
  constants as fsConstants,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  readdirSync,
  readlinkSync,
  realpathSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { connect } from 'node:net';
import { join, resolve as resolvePath } from 'node:path';
import { StoreError } from './errors.js';

export const DEFAULT_REDIS_SERVER_PATH = '/usr/bin/redis-server';
const SETPRIV_PATH = '/usr/bin/setpriv';
// sun_path is 108 bytes on Linux, one of them the terminating NUL.
const MAX_SOCKET_PATH_BYTES = 107;

export interface EmbeddedRedisOptions {
  /**
   * A directory that belongs to this redis-server alone (the service passes `<state>/redis`):
   * config, socket, AOF files, log and pid files live here, and it is kept at mode 0700.
   */
  readonly stateDir: string;
  /** Default: Debian's /usr/bin/redis-server. */
  readonly redisServerPath?: string;
  /**
   * Listen on 127.0.0.1:port with a generated password instead of the unix socket. Only for
   * setups that cannot share a filesystem path with the client; the socket is the default.
   */
  readonly port?: number;
  /** How long start() and each restart wait for PING to answer (default 15 s). */
  readonly readyTimeoutMs?: number;
  /** How long stop() waits after SIGTERM before SIGKILL (default 10 s; AOF is fsynced on exit). */
  readonly stopTimeoutMs?: number;
  /** Delay before the first restart after a crash, doubled per failure up to maxMs. */
  readonly restartDelay?: { readonly initialMs: number; readonly maxMs: number };
  /**
   * Start redis-server through setpriv --pdeathsig so the kernel sends it SIGTERM when this
   * process dies, even by SIGKILL (default true when /usr/bin/setpriv exists).
   */
  readonly parentDeathSignal?: boolean;
  /** Lifecycle notices for logging and metrics; must not throw. */
  readonly onEvent?: (event: EmbeddedRedisEvent) => void;
}

export type EmbeddedRedisEvent =
  | { readonly type: 'started'; readonly pid: number; readonly restarts: number }
  | { readonly type: 'exited'; readonly pid: number; readonly code: number | null; readonly signal: string | null }
  | { readonly type: 'restart_failed'; readonly attempt: number; readonly error: StoreError }
  | { readonly type: 'orphan_stopped'; readonly pid: number };

/** Where clients reach the server: the unix socket, or loopback TCP with the password. */
export type EmbeddedRedisEndpoint =
  | { readonly path: string }
  | { readonly host: '127.0.0.1'; readonly port: number; readonly password: string };

type State = 'idle' | 'starting' | 'running' | 'stopping' | 'stopped';

// stateDirs supervised by this process; a second supervisor on one directory would kill and
// restart the first one's server in a loop, each thinking the other's is an orphan.
const activeDirs = new Set<string>();

/**
 * Supervises a private redis-server: writes its config, starts it, waits for PING, restarts it
 * with backoff when it dies, and stops it cleanly. A server left behind by a supervisor that
 * died (pid files in the state dir name both) is stopped on the next start.
 */
export class EmbeddedRedis {
  readonly stateDir: string;
  #endpoint: EmbeddedRedisEndpoint | undefined;
  readonly #opts: EmbeddedRedisOptions;
  readonly #redisServerPath: string;
  readonly #files: { conf: string; pid: string; supervisor: string; log: string; password: string; socket: string };
  #state: State = 'idle';
  #child: ChildProcess | undefined;
  #childExited: Promise<void> = Promise.resolve();
  #childStartedAt = 0;
  #output = '';
  #logOffset = 0;
  #restarts = 0;
  #starting: Promise<void> | undefined;
  #restartTimer: NodeJS.Timeout | undefined;
  #wakeRestart: (() => void) | undefined;
  #restartLoop: Promise<void> | undefined;
  readonly #killOnExit = (): void => {
    // Synchronous by necessity ('exit' handlers cannot wait); redis finishes its own shutdown.
    this.#child?.kill('SIGTERM');
  };

  constructor(options: EmbeddedRedisOptions) {
    if (typeof options.stateDir !== 'string' || options.stateDir.length === 0) {
      throw new TypeError('store: "stateDir" expected a non-empty path');
    }
    this.#opts = options;
    this.stateDir = resolvePath(options.stateDir);
    this.#redisServerPath = options.redisServerPath ?? DEFAULT_REDIS_SERVER_PATH;
    const f = (n: string): string => join(this.stateDir, n);
    this.#files = {
      conf: f('redis.conf'),
      pid: f('redis.pid'),
      supervisor: f('supervisor.pid'),
      log: f('redis.log'),
      password: f('password'),
      socket: f('redis.sock'),
    };
    if (options.port === undefined) {
      const bytes = Buffer.byteLength(this.#files.socket);
      if (bytes > MAX_SOCKET_PATH_BYTES) {
        throw new StoreError(
          'ERR_CONFIG',
          `store: unix socket path ${this.#files.socket} is ${bytes} bytes, over the ${MAX_SOCKET_PATH_BYTES} Linux allows; use a shorter state directory`,
        );
      }
      this.#endpoint = { path: this.#files.socket };
    } else if (!Number.isInteger(options.port) || options.port < 1 || options.port > 65535) {
      throw new TypeError(`store: "port" expected an integer 1-65535, got ${options.port}`);
    }
  }

  /** Where clients connect. Over TCP the password is read or made by start(), so call it first. */
  get endpoint(): EmbeddedRedisEndpoint {
    if (this.#endpoint === undefined) throw new TypeError('store: EmbeddedRedis.endpoint read before start()');
    return this.#endpoint;
  }

  /** The running server's pid, if any. */
  get pid(): number | undefined {
    return this.#child?.exitCode === null ? this.#child.pid : undefined;
  }

  /** How many times the server was restarted after dying on its own. */
  get restarts(): number {
    return this.#restarts;
  }

  /** The last lines redis-server wrote since its latest launch (its log and stderr). */
  logTail(lines = 20): string {
    let fromFile = '';
    try {
      const size = statSync(this.#files.log).size;
      const start = Math.max(this.#logOffset, size - 16_384);
      const fd = openSync(this.#files.log, 'r');
      try {
        const buf = Buffer.alloc(Math.max(0, size - start));
        readSync(fd, buf, 0, buf.length, start);
        fromFile = buf.toString('utf8');
      } finally {
        closeSync(fd);
      }
    } catch {
      // No log yet: redis failed before opening it, and its stderr says why.
    }
    const all = `${this.#output}${fromFile}`.split('\n').filter((l) => l.trim() !== '');
    return all.slice(-lines).join('\n');
  }

  start(): Promise<void> {
    if (this.#state === 'starting' && this.#starting) return this.#starting;
    if (this.#state === 'running') return Promise.resolve();
    if (this.#state === 'stopping') throw new TypeError('store: EmbeddedRedis.start() called while stopping');
    this.#state = 'starting';
    this.#starting = this.#startOnce().then(
      () => {
        this.#state = 'running';
      },
      (e: unknown) => {
        this.#state = 'stopped';
        this.#release();
        throw e;
      },
    );
    return this.#starting;
  }

  async #startOnce(): Promise<void> {
    try {
      accessSync(this.#redisServerPath, fsConstants.X_OK);
    } catch {
      throw new StoreError(
        'ERR_UNAVAILABLE',
        `store: no executable redis-server at ${this.#redisServerPath} (install Debian's redis-server, or configure an external Redis)`,
      );
    }
    this.#prepareDir();
    this.#claim();
    await this.#stopOrphans();
    this.#writeConfig();
    // Keep the previous run's log for whoever investigates why it ended.
    if (existsSync(this.#files.log)) renameSync(this.#files.log, `${this.#files.log}.1`);
    process.on('exit', this.#killOnExit);
    await this.#launch();
    this.#emit({ type: 'started', pid: this.pid ?? -1, restarts: this.#restarts });
  }

  #prepareDir(): void {
    mkdirSync(this.stateDir, { recursive: true, mode: 0o700 });
    // mkdir leaves an existing directory's mode alone; the AOF holds every secret hash.
    chmodSync(this.stateDir, 0o700);
    const port = this.#opts.port;
    if (port !== undefined) {
      let password: string;
      if (existsSync(this.#files.password)) {
        password = readFileSync(this.#files.password, 'utf8').trim();
        chmodSync(this.#files.password, 0o600);
      } else {
        password = randomBytes(32).toString('hex');
        writeFileSync(this.#files.password, password + '\n', { mode: 0o600, flag: 'wx' });
      }
      this.#endpoint = { host: '127.0.0.1', port, password };
    }
  }

  /** Refuses a state dir that another live supervisor owns, then records this process as owner. */
  #claim(): void {
    const dir = realpathSync(this.stateDir);
    if (activeDirs.has(dir)) {
      throw new StoreError('ERR_UNAVAILABLE', `store: embedded redis state directory ${dir} is already supervised in this process`);
    }
    const other = readPid(this.#files.supervisor);
    if (other !== undefined && other !== process.pid && isSupervisorProcess(other)) {
      throw new StoreError(
        'ERR_UNAVAILABLE',
        `store: embedded redis state directory ${dir} is supervised by another live process (pid ${other})`,
      );
    }
    activeDirs.add(dir);
    writeFileSync(this.#files.supervisor, `${process.pid}\n`, { mode: 0o600 });
  }

  #release(): void {
    process.removeListener('exit', this.#killOnExit);
    try {
      activeDirs.delete(realpathSync(this.stateDir));
      if (readPid(this.#files.supervisor) === process.pid) rmSync(this.#files.supervisor, { force: true });
    } catch {
      // The directory is gone; nothing to release.
    }
  }

  /** Stops redis-servers working in our state dir whose supervisor is gone (see #claim). */
  async #stopOrphans(): Promise<void> {
    const dir = realpathSync(this.stateDir);
    const exe = realpathSync(this.#redisServerPath);
    const pids = new Set<number>();
    const recorded = readPid(this.#files.pid);
    if (recorded !== undefined && isRedisIn(recorded, exe, dir)) pids.add(recorded);
    // The pid file can be missing (deleted, or redis died before writing it); the process
    // table is the ground truth.
    for (const pid of redisProcessesIn(exe, dir)) pids.add(pid);
    for (const pid of pids) {
      await terminate(pid, this.#opts.stopTimeoutMs ?? 10_000);
      this.#emit({ type: 'orphan_stopped', pid });
    }
    rmSync(this.#files.pid, { force: true });
  }

  #writeConfig(): void {
    const e = this.endpoint;
    const lines = [
      '# Written by portcullis on every start; edits here are overwritten.',
      'daemonize no',
      'supervised no',
      // Loopback only, even if someone edits the port: this server holds every secret hash.
      'bind 127.0.0.1',
      'protected-mode yes',
      ...('path' in e
        ? ['port 0', `unixsocket ${quote(e.path)}`, 'unixsocketperm 700']
        : [`port ${e.port}`, `requirepass ${quote(e.password)}`]),
      `dir ${quote(this.stateDir)}`,
      `pidfile ${quote(this.#files.pid)}`,
      `logfile ${quote(this.#files.log)}`,
      'loglevel notice',
      // The AOF is the persistence: at most a second of writes is lost on a power cut.
      'appendonly yes',
      'appendfsync everysec',
      'save ""',
    ];
    writeFileSync(this.#files.conf, lines.join('\n') + '\n', { mode: 0o600 });
    chmodSync(this.#files.conf, 0o600);
  }

  async #launch(): Promise<void> {
    this.#output = '';
    this.#logOffset = existsSync(this.#files.log) ? statSync(this.#files.log).size : 0;
    const useSetpriv = this.#opts.parentDeathSignal ?? isExecutable(SETPRIV_PATH);
    const server = [this.#redisServerPath, this.#files.conf];
    const argv = useSetpriv ? [SETPRIV_PATH, '--pdeathsig', 'TERM', '--', ...server] : server;
    // umask 077 so the AOF and log are 0600 even if copied out of the 0700 directory; the
    // shell and setpriv exec in place, so the child's pid stays the server's pid.
    const child = spawn('/bin/sh', ['-c', 'umask 077 && exec "$@"', 'sh', ...argv], {
      cwd: this.stateDir,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.#child = child;
    this.#childStartedAt = Date.now();
    const keep = (s: string): void => {
      this.#output = (this.#output + s).slice(-8_192);
    };
    child.stdout?.setEncoding('utf8').on('data', keep);
    child.stderr?.setEncoding('utf8').on('data', keep);
    let spawnError: Error | undefined;
    // Only a server that once answered PING is restarted by the exit handler; a launch that
    // fails is retried by whoever called #launch (start() does not retry, the restart loop does).
    let ready = false;
    child.once('error', (err) => {
      spawnError = err;
    });
    this.#childExited = new Promise((resolve) => {
      child.once('close', (code, signal) => {
        if (child.pid !== undefined) this.#emit({ type: 'exited', pid: child.pid, code, signal });
        resolve();
        if (ready && this.#child === child && this.#state === 'running') this.#scheduleRestart();
      });
    });
    // The pid is the server's (see above); written before redis writes its
    // own copy so that a crash in between still leaves a trace for #stopOrphans.
    if (child.pid !== undefined) writeFileSync(this.#files.pid, `${child.pid}\n`, { mode: 0o600 });

    const timeoutMs = this.#opts.readyTimeoutMs ?? 15_000;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (spawnError !== undefined || child.exitCode !== null || child.signalCode !== null) {
        await this.#childExited;
        const how = spawnError?.message ?? (child.signalCode !== null ? `signal ${child.signalCode}` : `code ${child.exitCode}`);
        throw this.#unavailable(`exited (${how}) before answering PING`);
      }
      if (await ping(this.endpoint)) {
        ready = true;
        return;
      }
      if (Date.now() > deadline) {
        await this.#kill(child);
        throw this.#unavailable(`did not answer PING within ${timeoutMs} ms`);
      }
      await sleep(50);
    }
  }

  #unavailable(what: string): StoreError {
    const tail = this.logTail();
    return new StoreError(
      'ERR_UNAVAILABLE',
      `store: embedded redis-server (${this.#files.conf}) ${what}; last log lines:\n${tail || '(none)'}`,
      { logTail: tail },
    );
  }

  #scheduleRestart(): void {
    // A server that ran for a while before dying starts a fresh backoff sequence.
    const ranMs = Date.now() - this.#childStartedAt;
    const { initialMs, maxMs } = this.#opts.restartDelay ?? { initialMs: 200, maxMs: 10_000 };
    this.#restartLoop = (async () => {
      let failures = ranMs > 60_000 ? 0 : Math.min(this.#restarts, 6);
      for (let attempt = 1; this.#state === 'running'; attempt++) {
        await new Promise<void>((resolve) => {
          this.#wakeRestart = resolve;
          this.#restartTimer = setTimeout(resolve, Math.min(initialMs * 2 ** failures, maxMs));
        });
        this.#wakeRestart = undefined;
        if (this.#state !== 'running') return;
        try {
          await this.#launch();
          this.#restarts++;
          this.#emit({ type: 'started', pid: this.pid ?? -1, restarts: this.#restarts });
          return;
        } catch (e) {
          failures++;
          const error = e instanceof StoreError ? e : new StoreError('ERR_UNAVAILABLE', `store: embedded redis-server restart failed: ${String(e)}`);
          this.#emit({ type: 'restart_failed', attempt, error });
        }
      }
    })();
  }

  /** Stops the server (SIGTERM: redis fsyncs the AOF and exits) and waits for it. */
  async stop(): Promise<void> {
    if (this.#state === 'starting') await this.#starting?.catch(() => undefined);
    if (this.#state !== 'running') return;
    // Set before any await: the restart loop launches only while the state is 'running'.
    this.#state = 'stopping';
    clearTimeout(this.#restartTimer);
    this.#wakeRestart?.();
    const child = this.#child;
    if (child !== undefined) await this.#kill(child);
    await this.#restartLoop;
    this.#child = undefined;
    this.#release();
    this.#state = 'stopped';
  }

  async #kill(child: ChildProcess): Promise<void> {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), this.#opts.stopTimeoutMs ?? 10_000);
      await this.#childExited;
      clearTimeout(timer);
    } else {
      await this.#childExited;
    }
  }

  #emit(event: EmbeddedRedisEvent): void {
    try {
      this.#opts.onEvent?.(event);
    } catch {
      // A faulty listener must not take the supervisor down with it.
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

// redis.conf arguments go through sdssplitargs: double quotes with backslash escapes.
function quote(value: string): string {
  if (/[\u0000-\u001f\u007f]/.test(value)) throw new TypeError(`store: redis.conf value ${JSON.stringify(value)} has control characters`);
  return `"${value.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

function readPid(path: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(path, 'utf8').trim(), 10);
    return Number.isInteger(pid) && pid > 1 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function readlinkQuiet(path: string): string | undefined {
  try {
    return readlinkSync(path);
  } catch {
    return undefined;
  }
}

// The pid in a file may have been reused by an unrelated process since; only a node process
// (what a supervisor is) counts as a live owner.
function isSupervisorProcess(pid: number): boolean {
  const exe = readlinkQuiet(`/proc/${pid}/exe`);
  if (exe === undefined) return false;
  try {
    return exe === realpathSync(process.execPath);
  } catch {
    return false;
  }
}

// Identifies our server by its binary and working directory (redis chdirs to `dir`), not by
// its title, which redis rewrites.
function isRedisIn(pid: number, exe: string, dir: string): boolean {
  return readlinkQuiet(`/proc/${pid}/exe`) === exe && readlinkQuiet(`/proc/${pid}/cwd`) === dir;
}

function redisProcessesIn(exe: string, dir: string): number[] {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  return entries.filter((e) => /^\d+$/.test(e)).map(Number).filter((pid) => isRedisIn(pid, exe, dir));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return readlinkQuiet(`/proc/${pid}/exe`) !== undefined || !existsSync('/proc/self/exe');
  } catch {
    return false;
  }
}

async function terminate(pid: number, timeoutMs: number): Promise<void> {
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = Date.now() + timeoutMs;
  while (alive(pid)) {
    if (Date.now() > deadline) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        return;
      }
    }
    await sleep(50);
  }
}

/** One PING (after AUTH over TCP) on a fresh connection; true only for +PONG. */
function ping(endpoint: EmbeddedRedisEndpoint): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = 'path' in endpoint ? connect(endpoint.path) : connect(endpoint.port, endpoint.host);
    let buf = '';
    const done = (ok: boolean): void => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(1_000, () => done(false));
    sock.on('error', () => done(false));
    sock.on('connect', () => {
      const cmds = 'path' in endpoint ? [['PING']] : [['AUTH', endpoint.password], ['PING']];
      sock.write(cmds.map(resp).join(''));
    });
    sock.on('data', (b: Buffer) => {
      buf += b.toString('latin1');
      // -LOADING while the AOF is replayed, -ERR/-WRONGPASS otherwise: not ready (yet).
      if (buf.includes('+PONG\r\n')) done(true);
      else if (buf.startsWith('-') || buf.includes('\r\n-')) done(false);
    });
  });
}

function resp(args: readonly string[]): string {
  return `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;
}
