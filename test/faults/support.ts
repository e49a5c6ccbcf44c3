// What the fault tests share: the end-to-end system (test/e2e/support) with the proxy's session
// recording switched on, and the levers to break its parts for real — stop and restart
// redis-server on its port with its data, find the sshd process that serves one connection.
import { existsSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { after, before } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { SSHD_PATH, hasTool, processAlive, redisProcessesUnder, startRedis } from '@portcullis/harness';
import type { RedisHandle } from '@portcullis/harness';
import { startSessionRecording } from '@portcullis/proxy';
import type { ProxyAuditEvent, RecorderTuning, SessionRecording, SessionTap } from '@portcullis/proxy';
import { readRecordingEvents, readRecordingMeta } from '@portcullis/recording';
import type { RecordingMeta, RedisClient } from '@portcullis/recording';
import { startSystem } from '../e2e/support/portcullis.js';
import type { Identity, System, SystemOptions } from '../e2e/support/portcullis.js';

export { exited } from '../e2e/support/portcullis.js';

/** Polls `probe` until it gives a value; generous deadlines, the machine is shared. */
export async function until<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

const missingTools = [...['ssh', 'redis-server'].filter((t) => !hasTool(t)), ...(existsSync(SSHD_PATH) ? [] : [SSHD_PATH])];
/** A recorded system's skip reason where ssh, redis-server or the test sshd is missing, else false. */
export const skipWithoutTools: string | false = missingTools.length > 0 ? `needs ${missingTools.join(', ')}` : false;

export interface RecordedSuite {
  /** Set once the suite's `before` has run. */
  readonly r: RecordedSystem;
  /** alice (role dev) with a 10-minute certificate. */
  readonly alice: Identity;
}

/**
 * Registers, in the calling describe block, a `before` that starts a recorded system and mints
 * alice a certificate, and an `after` that runs `beforeStop` and stops the system.
 */
export function recordedSuite(o: { readonly beforeStop?: () => void } = {}): RecordedSuite {
  let r: RecordedSystem | undefined;
  let alice: Identity | undefined;
  before(async () => {
    r = await startRecordedSystem();
    alice = await (await r.sys.user('alice', ['dev'])).mint({ ttl: 600 });
  });
  after(async () => {
    o.beforeStop?.();
    await r?.stop();
  });
  return {
    get r() {
      if (r === undefined) throw new Error('recordedSuite: the system is not started (used outside a test?)');
      return r;
    },
    get alice() {
      if (alice === undefined) throw new Error('recordedSuite: alice has no certificate (used outside a test?)');
      return alice;
    },
  };
}

export interface RecordedSystem {
  readonly sys: System;
  readonly recording: SessionRecording;
  /** The recorder's own connection to Redis (the proxy's, not auth's). */
  readonly recorderRedis: RedisClient;
  /** The proxy's and the recorder's log lines, `level message`. */
  readonly logs: string[];
  readonly redis: RedisControl;
  stop(): Promise<void>;
}

export interface RecordedSystemOptions extends SystemOptions {
  /** The spool directory (default: `spool` in the system's temp dir). */
  readonly spoolDir?: string;
  readonly uploadIntervalMs?: number;
  readonly tuning?: RecorderTuning;
}

/** The e2e system with recording as `portcullis start` wires it: same Redis, proxy's metrics and audit. */
export async function startRecordedSystem(o: RecordedSystemOptions = {}): Promise<RecordedSystem> {
  const logs: string[] = [];
  const log = (level: string, message: string): void => void logs.push(`${level} ${message}`);
  let tap: ((...a: Parameters<SessionRecording['tap']>) => SessionTap) | undefined;
  const sys = await startSystem({ ...o, proxy: { log, tap: (meta, access) => tap!(meta, access), ...o.proxy } });
  const recorderRedis = sys.auth.context.redis.duplicate();
  recorderRedis.on('error', () => {});
  let recording: SessionRecording;
  try {
    recording = await startSessionRecording({
      redis: recorderRedis,
      spoolDir: o.spoolDir ?? sys.dir.file('spool'),
      registry: sys.proxy.metrics.registry,
      audit: (e: ProxyAuditEvent) => sys.audit.push(e),
      log,
      uploadIntervalMs: o.uploadIntervalMs ?? 1_000,
      // Short, so a test that stops Redis sees the spool at once rather than after retries.
      tuning: { storeTimeoutMs: 1_000, ...o.tuning },
    });
  } catch (e) {
    recorderRedis.disconnect();
    await sys.stop();
    throw e;
  }
  tap = recording.tap;
  const redis = redisControl(sys);
  return {
    sys,
    recording,
    recorderRedis,
    logs,
    redis,
    async stop() {
      await sys.proxy.stop({ graceMs: 0 }).catch(() => {});
      await recording.stop({ graceMs: 1_000 });
      recorderRedis.disconnect();
      await redis.close();
      await sys.stop();
    },
  };
}

export interface RedisControl {
  readonly port: number;
  /**
   * Stops redis-server as an operator's restart does: SIGTERM, after turning RDB saving on so
   * the shutdown writes the data set (users, tokens, recordings) that start() loads again.
   */
  stop(): Promise<void>;
  /** Starts redis-server again on the same port and directory (nothing when it runs). */
  start(): Promise<void>;
  /** Stops a server start() made (teardown). */
  close(): Promise<void>;
}

function redisControl(sys: System): RedisControl {
  // The e2e system runs one redis-server on TCP, never a cluster.
  const port = Number((sys.auth.context.redis.options as { port?: number }).port);
  let restarted: RedisHandle | undefined;
  let stopped = false;
  return {
    port,
    async stop() {
      stopped = true;
      await sys.auth.context.redis.config('SET', 'save', '3600 1');
      const pids = redisProcessesUnder(sys.dir.path);
      if (pids.length !== 1) throw new Error(`expected one redis-server under ${sys.dir.path}, found ${pids.join(', ') || 'none'}`);
      process.kill(pids[0]!, 'SIGTERM');
      await until('redis-server to exit', () => !processAlive(pids[0]!), 10_000);
      restarted = undefined;
    },
    async start() {
      if (!stopped) return;
      restarted = await startRedis({ dir: sys.dir.path, port });
      stopped = false;
    },
    async close() {
      await restarted?.stop();
    },
  };
}

/** Everything a recording holds of channel output (stdout and stderr, in order), and its gaps. */
export async function recordedOutput(redis: RedisClient, id: string): Promise<{ output: Buffer; gaps: number; lost: number; types: string[] }> {
  const chunks: Buffer[] = [];
  let gaps = 0;
  let lost = 0;
  const types: string[] = [];
  for await (const item of readRecordingEvents(redis, id)) {
    if (item.kind === 'gap') gaps++;
    if (item.kind !== 'event') continue;
    types.push(item.event.type);
    if (item.event.type === 'output') chunks.push(Buffer.from(item.event.data));
    if (item.event.type === 'lost') lost += item.event.events;
  }
  return { output: Buffer.concat(chunks), gaps, lost, types };
}

/** Waits until the recording is no longer live, and returns its metadata. */
export function recordingEnded(redis: RedisClient, id: string, timeoutMs = 30_000): Promise<RecordingMeta> {
  return until(
    `recording ${id} to end`,
    async () => {
      const m = await readRecordingMeta(redis, id).catch(() => undefined);
      return m !== undefined && m.state !== 'live' ? m : undefined;
    },
    timeoutMs,
  );
}

/** The value of one proxy metric (summed over labels matching `labels`). */
export async function metricValue(sys: System, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = sys.proxy.metrics.registry.getSingleMetric(name);
  if (m === undefined) return 0;
  const { values } = await m.get();
  return values.filter((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l)).reduce((n, v) => n + v.value, 0);
}

/** Pids whose parent is `pid`. */
export function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(entry));
    } catch {
      // Gone while we looked.
    }
  }
  return out;
}

/** The pid of the sshd listener started with this config file (the harness keeps it private). */
export function sshdListenerPid(configPath: string): number {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (!readlinkSync(`/proc/${entry}/exe`).includes('sshd')) continue;
      // sshd rewrites its argv as a process title (`sshd: /usr/sbin/sshd -D -e -f PATH [listener] ...`).
      const title = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (/\[listener\]| -D /.test(title) && title.includes(` -f ${configPath}`)) return Number(entry);
    } catch {
      // Gone, or not ours to read.
    }
  }
  throw new Error(`no sshd -D -f ${configPath} running`);
}
