import { encodeSignature, formatPublicKey } from '@portcullis/cert-core';
import { encodeEvent, metaToFields } from './codec.js';
import { chainEvent, hex, initialDigest, signedRecordingPayload } from './digest.js';
import { NO_METRICS, type RecordingMetrics } from './health.js';
import type { RecordingMeta, RecordingState } from './model.js';
import type { RecordingSigner } from './recorder.js';
import { SpoolFile, isSpoolOpenHere, listSpoolFiles, type SpoolHeader } from './spool.js';
import { lastEntry, readMeta, writeItems, type RedisClient, type StoreItem } from './store.js';

export interface UploadSpoolOptions {
  readonly redis: RedisClient;
  /** Signs recordings finished here (interrupted ones); without it they stay unsigned. */
  readonly signer?: RecordingSigner;
  readonly retentionMs?: number;
  readonly storeTimeoutMs?: number;
  readonly metrics?: RecordingMetrics;
  /** Upload files of processes that still run (default false: a live recorder owns its file). */
  readonly takeLiveFiles?: boolean;
}

export interface SpoolUpload {
  readonly id: string;
  readonly path: string;
  /** ended: the session had finished and only the upload was late; interrupted: its recorder died. */
  readonly state?: RecordingState;
  readonly uploadedEvents: number;
  /** Bytes at the end of the file that did not form a whole record (cut by the crash). */
  readonly tornBytes: number;
  readonly skipped?: 'live' | 'unreadable';
  readonly error?: string;
}

const SLICE = 1024 * 1024;

function processRuns(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Uploads the spool files recorders left in `dir` (run it when the service starts): every item
 * goes to Redis in order (writes are idempotent, so what Redis already had is not duplicated),
 * then a recording that never ended gets a final `end` event marked interrupted, its metadata
 * says `interrupted`, and it is signed when a signer is given. The file is removed only once all
 * of that is stored; a failure leaves it for the next attempt.
 */
export async function uploadSpool(dir: string, opts: UploadSpoolOptions): Promise<SpoolUpload[]> {
  const results: SpoolUpload[] = [];
  for (const { id, path } of await listSpoolFiles(dir)) {
    if (isSpoolOpenHere(path)) {
      results.push({ id, path, uploadedEvents: 0, tornBytes: 0, skipped: 'live' });
      continue;
    }
    try {
      results.push(await uploadOne(id, path, opts));
    } catch (e) {
      results.push({ id, path, uploadedEvents: 0, tornBytes: 0, error: e instanceof Error ? e.message : String(e) });
    }
  }
  return results;
}

async function uploadOne(id: string, path: string, opts: UploadSpoolOptions): Promise<SpoolUpload> {
  const spool = await SpoolFile.openExisting(path);
  const write = { timeoutMs: opts.storeTimeoutMs ?? 10_000, retentionMs: opts.retentionMs };
  let header: SpoolHeader | undefined;
  let uploaded = 0;
  let offset = 0;
  // The file's marks name each appended run's predecessor; slices continue from the last event.
  let after: string | undefined;
  try {
    for (;;) {
      const slice = await spool.read(offset, SLICE);
      header ??= slice.header;
      if (offset === 0) {
        if (!header || header.id !== id) return { id, path, uploadedEvents: 0, tornBytes: spool.bytes, skipped: 'unreadable' };
        if (header.pid !== process.pid && processRuns(header.pid) && opts.takeLiveFiles !== true) {
          return { id, path, uploadedEvents: 0, tornBytes: 0, skipped: 'live' };
        }
        // The metadata first: Redis may never have seen this session start.
        if (!(await readMeta(opts.redis, id))) await writeItems(opts.redis, id, [{ kind: 'meta', fields: header.meta }], write);
      }
      if (slice.next === offset) break;
      ({ tail: after } = await writeItems(opts.redis, id, slice.items, write, { after, afterStored: true }));
      uploaded += slice.items.filter((i) => i.kind === 'event').length;
      offset = slice.next;
    }
  } finally {
    await spool.close();
  }
  const tornBytes = spool.bytes - offset;
  const meta = await readMeta(opts.redis, id);
  if (!meta) throw new Error(`recording ${id}: no metadata after upload`);
  let state = meta.state;
  if (meta.state === 'live') {
    await finishInterrupted(meta, opts, write);
    state = 'interrupted';
  }
  (opts.metrics ?? NO_METRICS).count('recording_spool_uploads_total', 1, { state });
  await spool.remove();
  return { id, path, state, uploadedEvents: uploaded, tornBytes };
}

async function finishInterrupted(meta: RecordingMeta, opts: UploadSpoolOptions, write: { timeoutMs: number; retentionMs: number | undefined }): Promise<void> {
  const last = await lastEntry(opts.redis, meta.id);
  const seq = (last?.seq ?? 0) + 1;
  const t = last?.t ?? 0;
  const event = encodeEvent({
    type: 'end',
    seq,
    t,
    reason: 'the recorder stopped before the session ended; uploaded from its spool',
    bytesIn: meta.bytesIn,
    bytesOut: meta.bytesOut,
    interrupted: true,
  });
  const digest = chainEvent(last?.digest ?? initialDigest(meta.id), event);
  const final: { -readonly [K in keyof RecordingMeta]: RecordingMeta[K] } = {
    ...meta,
    state: 'interrupted',
    endedAt: meta.startedAt + t,
    endReason: 'recorder stopped',
    lastSeq: seq,
    digest: hex(digest),
  };
  if (opts.signer) {
    const sig = await opts.signer.sign(signedRecordingPayload(final));
    final.signature = Buffer.from(encodeSignature(sig)).toString('base64');
    final.signedBy = formatPublicKey(opts.signer.publicKey);
  }
  const items: StoreItem[] = [
    { kind: 'event', seq, t, event, digest },
    { kind: 'meta', fields: metaToFields(final) },
  ];
  await writeItems(opts.redis, meta.id, items, write, { after: last?.id ?? '0-0', afterStored: true });
}
