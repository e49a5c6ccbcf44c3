import { mkdirSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { parsePublicKeyText, parseSignature, verifySignature } from '@portcullis/cert-core';
import type { CryptoBackend, PublicKey, SshSignature } from '@portcullis/cert-core';
import { nodeCrypto } from '@portcullis/cert-core/node';
import { Recorder, uploadSpool } from '@portcullis/recording';
import type {
  RecorderOptions,
  RecordingMetricName,
  RecordingMetrics,
  RecordingSigner,
  RecordingTrouble,
  RedisClient,
  SpoolFsync,
  SpoolUpload,
} from '@portcullis/recording';
import { Counter, type Registry } from 'prom-client';
import type { UserAccess } from './authority.js';
import type { AuditValue, ProxyAuditEvent } from './audit.js';
import { identityFields } from './audit.js';
import { ProxyError } from './errors.js';
import { PinnedHttps, apiError, jsonOf } from './pinned-https.js';
import type { SessionMeta, SessionTap } from './session/tap.js';

/**
 * auth's signature over a finished recording (its metadata and final digest). The proxy holds
 * no signing key of its own, so a stolen proxy disk cannot forge a recording's signature; auth
 * signs with a key kept for recordings only (POST /v1/proxy/recordings/sign).
 */
export interface RecordingSignatureService {
  signRecording(payload: Uint8Array): Promise<{ readonly signature: SshSignature; readonly publicKey: PublicKey }>;
}

export type RecorderTuning = Pick<
  RecorderOptions,
  'flushIntervalMs' | 'flushBytes' | 'snapshotBytes' | 'snapshotIntervalMs' | 'storeTimeoutMs' | 'highWaterBytes' | 'maxHeldBytes'
>;

export interface SessionRecordingOptions {
  readonly redis: RedisClient;
  /** Spool files, one per live session (`<state dir>/recordings`); created 0700 if missing. */
  readonly spoolDir: string;
  /**
   * Spool directories no process writes to any more (a previous run with another number of
   * workers): uploaded with every pass beside spoolDir, so their files are not left behind.
   */
  readonly adoptSpoolDirs?: readonly string[];
  /** Signs each finished recording; without it recordings are stored unsigned (tests only). */
  readonly signatures?: RecordingSignatureService;
  /** Recording keys expire this long after their last write (default: never). */
  readonly retentionMs?: number;
  /** How often spool files left behind are uploaded (default 60 s; also once at start). */
  readonly uploadIntervalMs?: number;
  readonly spoolFsync?: SpoolFsync;
  /** The proxy's audit sink: recording trouble and interrupted recordings are security events. */
  readonly audit?: (event: ProxyAuditEvent) => void;
  /** The proxy's metrics registry (ProxyMetrics.registry), for the recording_* counters. */
  readonly registry?: Registry;
  readonly log?: (level: 'info' | 'warn' | 'error', message: string) => void;
  readonly now?: () => number;
  /** Waits between attempts to have a recording signed while auth is unreachable. */
  readonly signRetryDelaysMs?: readonly number[];
  readonly tuning?: RecorderTuning;
}

export interface SessionRecording {
  /** For ProxyConfig.tap: a Recorder per session, in the mode the user's role chose. */
  readonly tap: (meta: SessionMeta, access: UserAccess) => SessionTap;
  /** Sessions being recorded now. */
  readonly live: number;
  /** Uploads spool files left by dead recorders now (the timer does it every minute). */
  uploadSpool(): Promise<readonly SpoolUpload[]>;
  /**
   * Waits up to `graceMs` (default 10 s) for sessions to finish recording, then stops the rest,
   * leaving their spool files for the next start. Call it after the proxy has stopped.
   */
  stop(options?: { readonly graceMs?: number }): Promise<void>;
}

/** Attempts, while auth is unreachable, before a finished recording is left for the spool upload. */
const SIGN_RETRY_DELAYS_MS = [250, 1_000, 4_000, 15_000, 30_000];

/**
 * Starts recording for a proxy: uploads what a previous run left in the spool directory (a proxy
 * killed mid-session leaves its sessions there, and they are marked interrupted), repeats that
 * every minute, and hands out a Recorder per session for ProxyConfig.tap.
 */
export async function startSessionRecording(o: SessionRecordingOptions): Promise<SessionRecording> {
  mkdirSync(o.spoolDir, { recursive: true, mode: 0o700 });
  const log = o.log ?? (() => {});
  const now = o.now ?? Date.now;
  const audit = o.audit ?? (() => {});
  const metrics = o.registry === undefined ? undefined : promRecordingMetrics(o.registry);
  const signer = o.signatures === undefined ? undefined : retryingSigner(o.signatures, o.signRetryDelaysMs ?? SIGN_RETRY_DELAYS_MS, log);
  const sessions = new Set<RecordedSession>();
  let stopped = false;

  const emit = (fields: Record<string, AuditValue | undefined>, warning: boolean): void => {
    const clean: Record<string, AuditValue> = {};
    for (const [k, v] of Object.entries(fields)) if (v !== undefined) clean[k] = v;
    try {
      audit({ name: 'session.recording', time: now(), severity: warning ? 'warning' : 'info', fields: clean });
    } catch (e) {
      log('error', `audit callback failed for session.recording: ${e instanceof Error ? e.message : String(e)}`);
    }
  };

  let uploading: Promise<readonly SpoolUpload[]> | undefined;
  const upload = (): Promise<readonly SpoolUpload[]> => {
    // One pass at a time: a slow Redis must not pile passes up over the same files.
    uploading ??= (async () => {
      const all: SpoolUpload[] = [];
      for (const dir of [o.spoolDir, ...(o.adoptSpoolDirs ?? [])]) {
        try {
          const results = await uploadSpool(dir, {
            redis: o.redis,
            ...(signer === undefined ? {} : { signer }),
            ...(o.retentionMs === undefined ? {} : { retentionMs: o.retentionMs }),
            ...(metrics === undefined ? {} : { metrics }),
          });
          for (const r of results) reportUpload(r, emit, log);
          all.push(...results);
        } catch (e) {
          log('warn', `recording: spool upload from ${dir} failed: ${e instanceof Error ? e.message : String(e)}`);
        }
      }
      return all;
    })().finally(() => (uploading = undefined));
    return uploading;
  };
  await upload();
  const timer = setInterval(() => void upload(), o.uploadIntervalMs ?? 60_000);
  timer.unref();

  return {
    tap(meta, access) {
      if (stopped) throw new Error('recording: stopped; no new sessions are recorded');
      const trouble = (t: RecordingTrouble): void => {
        const level = t.kind === 'recovered' ? 'info' : t.kind === 'events-lost' || t.action === 'session-ended' ? 'error' : 'warn';
        log(level, `recording of session ${t.sessionId} (${meta.user} as ${meta.login}@${meta.host}): ${t.kind}, ${t.action}: ${t.message}`);
        emit({ ...identityFields(meta), kind: t.kind, action: t.action, mode: t.mode, message: t.message }, t.kind !== 'recovered');
      };
      const recorder = new Recorder({
        redis: o.redis,
        mode: access.recordSession,
        spoolDir: o.spoolDir,
        recordInput: access.recordInput,
        onTrouble: trouble,
        now,
        ...(o.retentionMs === undefined ? {} : { retentionMs: o.retentionMs }),
        ...(signer === undefined ? {} : { signer }),
        ...(metrics === undefined ? {} : { metrics }),
        ...(o.spoolFsync === undefined ? {} : { spoolFsync: o.spoolFsync }),
        ...o.tuning,
      });
      const session = new RecordedSession(recorder, log, () => sessions.delete(session));
      sessions.add(session);
      return session;
    },
    get live() {
      return sessions.size;
    },
    uploadSpool: upload,
    async stop(options = {}) {
      stopped = true;
      clearInterval(timer);
      const grace = options.graceMs ?? 10_000;
      const all = Promise.allSettled([...sessions].map((s) => s.done));
      await Promise.race([all, sleep(grace, undefined, { ref: false })]);
      await Promise.allSettled([...sessions].map((s) => s.abandon()));
      await uploading;
    },
  };
}

/**
 * The tap for one session: a Recorder, plus what the proxy needs around it. A recording whose
 * end could not be completed (auth never signed, or strict mode lost Redis) is closed so that the
 * spool upload finishes it later, marked interrupted, instead of staying `live` forever.
 */
class RecordedSession implements SessionTap {
  readonly done: Promise<void>;
  #resolve!: () => void;
  #ending = false;

  constructor(
    private readonly recorder: Recorder,
    private readonly log: (level: 'info' | 'warn' | 'error', message: string) => void,
    private readonly forget: () => void,
  ) {
    this.done = new Promise((resolve) => (this.#resolve = resolve));
  }

  start(meta: SessionMeta): Promise<void> {
    return this.recorder.start(meta).catch((e: unknown) => {
      // The proxy ends the session with this message; nothing else will come for this recorder.
      this.#finish();
      throw e;
    });
  }

  output(channel: number, stream: 0 | 1, data: Uint8Array): void | Promise<void> {
    return this.recorder.output(channel, stream, data);
  }

  input(channel: number, data: Uint8Array): void | Promise<void> {
    return this.recorder.input(channel, data);
  }

  event(e: Parameters<SessionTap['event']>[0]): void | Promise<void> {
    return this.recorder.event(e);
  }

  async end(summary: Parameters<SessionTap['end']>[0]): Promise<void> {
    if (this.#ending) return;
    this.#ending = true;
    try {
      await this.recorder.end(summary);
      // Best effort with Redis away: the events are safe in the spool; the recorder drains it
      // when Redis returns, and a restart's upload does it if this process dies first.
    } catch (e) {
      this.log('error', `recording of session ${this.recorder.sessionId ?? '?'} could not be finished (${e instanceof Error ? e.message : String(e)}); the spool upload will mark it interrupted`);
      await this.recorder.stop().catch(() => {});
    } finally {
      this.#finish();
    }
  }

  /** Shutdown: stop retrying and leave the spool file for the next start. */
  async abandon(): Promise<void> {
    await this.recorder.stop();
    this.#finish();
  }

  #finish(): void {
    this.forget();
    this.#resolve();
  }
}

function reportUpload(
  r: SpoolUpload,
  emit: (fields: Record<string, AuditValue | undefined>, warning: boolean) => void,
  log: (level: 'info' | 'warn' | 'error', message: string) => void,
): void {
  if (r.skipped === 'live') return;
  if (r.error !== undefined) {
    log('warn', `recording: spool file ${r.path} not uploaded yet: ${r.error}`);
    return;
  }
  if (r.skipped === 'unreadable') {
    log('error', `recording: spool file ${r.path} is unreadable (${r.tornBytes} bytes); left in place for inspection`);
    emit({ sessionId: r.id, kind: 'spool-unreadable', action: 'kept', message: `spool file ${r.path} is unreadable` }, true);
    return;
  }
  const torn = r.tornBytes > 0 ? `, ${r.tornBytes} torn bytes at its end` : '';
  log(r.state === 'interrupted' ? 'warn' : 'info', `recording: uploaded ${r.uploadedEvents} events of session ${r.id} from its spool (${r.state}${torn})`);
  if (r.state === 'interrupted') {
    emit(
      {
        sessionId: r.id,
        kind: 'interrupted',
        action: 'uploaded',
        uploadedEvents: r.uploadedEvents,
        tornBytes: r.tornBytes,
        message: 'the recorder stopped before the session ended; the recording was finished from its spool and marked interrupted',
      },
      true,
    );
  }
}

/**
 * A RecordingSigner over auth. Its public key is whatever key auth last signed with, known
 * after the first signature (the recorder reads it only after sign() resolves), so the proxy
 * starts without auth and follows a key rotation. A signature that does not verify is refused:
 * a wrong answer must not end up in a recording as if it were auth's.
 */
export function retryingSigner(
  service: RecordingSignatureService,
  delaysMs: readonly number[],
  log: (level: 'info' | 'warn' | 'error', message: string) => void = () => {},
  crypto: CryptoBackend = nodeCrypto,
): RecordingSigner {
  let key: PublicKey | undefined;
  return {
    get publicKey(): PublicKey {
      if (key === undefined) throw new Error('recording signer: auth has not signed anything yet');
      return key;
    },
    async sign(data: Uint8Array): Promise<SshSignature> {
      for (let attempt = 0; ; attempt++) {
        try {
          const r = await service.signRecording(data);
          if (!verifySignature(crypto, r.publicKey, r.signature, data)) throw new Error('auth returned a signature that does not verify');
          key = r.publicKey;
          return r.signature;
        } catch (e) {
          const wait = delaysMs[attempt];
          if (wait === undefined) throw e;
          log('warn', `recording signer: attempt ${attempt + 1} failed (${e instanceof Error ? e.message : String(e)}); again in ${wait} ms`);
          await sleep(wait, undefined, { ref: false });
        }
      }
    },
  };
}

/** A signer with a key in memory, for tests and for a single machine whose auth is in-process. */
export function localSignatureService(signer: { readonly publicKey: PublicKey; sign(data: Uint8Array): SshSignature }): RecordingSignatureService {
  return { signRecording: async (payload) => ({ signature: signer.sign(payload), publicKey: signer.publicKey }) };
}

export interface HttpSignatureServiceOptions {
  /** https://host:port of auth. */
  readonly url: string;
  /** SHA-256 fingerprint of auth's TLS certificate (`AB:CD:...`), as auth prints it at start. */
  readonly fingerprint: string;
  /** The proxy's service credential from its enrollment (Bearer). */
  readonly credential: string;
  readonly timeoutMs?: number;
}

/** POST /v1/proxy/recordings/sign over the proxy's TLS connection to auth, pinned by fingerprint. */
export function httpSignatureService(o: HttpSignatureServiceOptions): RecordingSignatureService & { close(): void } {
  const http = new PinnedHttps({ url: o.url, fingerprint: o.fingerprint, ...(o.timeoutMs === undefined ? {} : { timeoutMs: o.timeoutMs }) });
  const what = 'signing a recording';
  return {
    async signRecording(payload) {
      const a = await http.request({
        method: 'POST',
        path: '/v1/proxy/recordings/sign',
        json: { payload: Buffer.from(payload).toString('base64') },
        headers: { authorization: `Bearer ${o.credential}` },
      });
      if (a.status !== 200) {
        const e = apiError(a);
        throw new ProxyError('ERR_AUTHORITY_UNAVAILABLE', `proxy: ${what}: auth answered ${a.status} ${e.code}: ${e.message}`);
      }
      const b = jsonOf(a, what) as { signature?: unknown; public_key?: unknown };
      if (typeof b.signature !== 'string' || typeof b.public_key !== 'string') {
        throw new ProxyError('ERR_AUTHORITY_UNAVAILABLE', `proxy: ${what}: auth answered without "signature" and "public_key"`);
      }
      return {
        signature: parseSignature(new Uint8Array(Buffer.from(b.signature, 'base64')), 'recording signature from auth'),
        publicKey: parsePublicKeyText(b.public_key, 'recording key from auth').key,
      };
    },
    close: () => http.close(),
  };
}

const METRIC_HELP: Readonly<Record<RecordingMetricName, readonly [string, readonly string[]]>> = {
  recording_events_stored_total: ['Recording events written to Redis (directly or drained from a spool).', []],
  recording_events_spooled_total: ['Recording events written to the local spool because Redis would not take them.', []],
  recording_events_lost_total: ['Recording events neither stored nor spooled (best effort with Redis and the disk failing).', []],
  recording_bytes_total: ['Session output and input bytes recorded.', []],
  recording_store_failures_total: ['Failed recording writes, by reason.', ['reason']],
  recording_spool_uploads_total: ['Spool files uploaded after their recorder stopped, by the state the recording ended in.', ['state']],
};

/** The recorder's counters as prom-client counters on the proxy's registry. */
function promRecordingMetrics(registry: Registry): RecordingMetrics {
  const counters = new Map<RecordingMetricName, Counter<string>>();
  for (const [name, [help, labelNames]] of Object.entries(METRIC_HELP) as [RecordingMetricName, readonly [string, readonly string[]]][]) {
    // Two recorders' wirings on one registry (tests, benchmarks) share the counters.
    const existing = registry.getSingleMetric(name);
    counters.set(name, existing instanceof Counter ? (existing as Counter<string>) : new Counter({ name, help, labelNames: [...labelNames], registers: [registry] }));
  }
  return {
    count(name, n = 1, labels) {
      const c = counters.get(name);
      if (c === undefined) return;
      if (labels === undefined) c.inc(n);
      else c.inc(labels, n);
    },
  };
}

