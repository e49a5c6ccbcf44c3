import { open, readdir, rm, type FileHandle } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { checkRecordingId } from './keys.js';
import type { StoreItem } from './store.js';

/**
 * The spool: one append-only file per live session, `<dir>/<id>.spool`.
 *
 * It is created when the session starts and removed when the session's last event is in Redis,
 * so a file left behind means its recorder died (or never reached Redis again): the next start
 * uploads it and marks the recording interrupted. While Redis is reachable the file holds only
 * its header; while it is not (best-effort mode), every item goes here, in order, and drains
 * to Redis in the same order when Redis answers again.
 *
 * Record framing: u32 length | u8 kind | payload | u32 crc32(kind || payload). A record cut short
 * by a crash or a full disk fails its length or checksum and ends the readable prefix; a failed
 * append is truncated away so the next append starts on a record boundary.
 *
 * fsync policy ('interval' by default): data reaches the kernel on every append, so a killed
 * process loses nothing; fdatasync runs at most once a second, so a power loss costs at most the
 * last second of a Redis outage, as Redis' own appendfsync everysec. 'always' syncs every
 * append (safest, slowest); 'never' leaves it to the kernel.
 */
export type SpoolFsync = 'always' | 'interval' | 'never';

const KIND_HEADER = 1;
const KIND_EVENT = 2;
const KIND_META = 3;
const KIND_SNAPSHOT = 4;
const KIND_INDEX = 5;
/** The predecessor of the events that follow (readers that predate it skip unknown kinds). */
const KIND_AFTER = 6;
const SYNC_INTERVAL_MS = 1000;
/** No record is anywhere near this; a larger length is a torn or foreign file. */
const MAX_RECORD = 64 * 1024 * 1024;

export interface SpoolHeader {
  readonly version: 1;
  readonly id: string;
  /** The writing process, so uploadSpool leaves a live recorder's file alone. */
  readonly pid: number;
  /** The metadata hash at start: enough to create the recording if Redis never saw it. */
  readonly meta: Readonly<Record<string, string>>;
}

/** Spool files open in this process: uploadSpool must not take a live session's file. */
const openHere = new Set<string>();

export function isSpoolOpenHere(path: string): boolean {
  return openHere.has(path);
}

const enc = new TextEncoder();
const dec = new TextDecoder();

function frame(kind: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + 1 + payload.length + 4);
  const view = new DataView(out.buffer);
  view.setUint32(0, 1 + payload.length);
  out[4] = kind;
  out.set(payload, 5);
  view.setUint32(5 + payload.length, crc32(out.subarray(4, 5 + payload.length)));
  return out;
}

function encodeItem(item: StoreItem): Uint8Array {
  switch (item.kind) {
    case 'event': {
      const { head, data } = item.event;
      const payload = new Uint8Array(8 + head.length + data.length + item.digest.length);
      const view = new DataView(payload.buffer);
      view.setUint32(0, head.length);
      payload.set(head, 4);
      view.setUint32(4 + head.length, data.length);
      payload.set(data, 8 + head.length);
      payload.set(item.digest, 8 + head.length + data.length);
      return frame(KIND_EVENT, payload);
    }
    case 'meta':
      return frame(KIND_META, enc.encode(JSON.stringify(item.fields)));
    case 'snapshot':
      return frame(KIND_SNAPSHOT, enc.encode(JSON.stringify(item.snapshot)));
    case 'index':
      return frame(KIND_INDEX, enc.encode(JSON.stringify(item.entry)));
    case 'after':
      return frame(KIND_AFTER, enc.encode(item.id));
  }
}

function decodeItem(kind: number, payload: Uint8Array): StoreItem | undefined {
  switch (kind) {
    case KIND_EVENT: {
      const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
      const headLen = view.getUint32(0);
      const dataLen = view.getUint32(4 + headLen);
      const head = payload.slice(4, 4 + headLen);
      const data = payload.slice(8 + headLen, 8 + headLen + dataLen);
      const digest = payload.slice(8 + headLen + dataLen);
      const o = JSON.parse(dec.decode(head)) as { seq: number; t: number };
      return { kind: 'event', seq: o.seq, t: o.t, event: { head, data }, digest };
    }
    case KIND_META:
      return { kind: 'meta', fields: JSON.parse(dec.decode(payload)) as Record<string, string> };
    case KIND_SNAPSHOT:
      return { kind: 'snapshot', snapshot: JSON.parse(dec.decode(payload)) as never };
    case KIND_INDEX:
      return { kind: 'index', entry: JSON.parse(dec.decode(payload)) as never };
    case KIND_AFTER:
      return { kind: 'after', id: dec.decode(payload) };
    default:
      return undefined;
  }
}

export interface SpoolContents {
  readonly header: SpoolHeader | undefined;
  readonly items: StoreItem[];
  /** Bytes of whole, valid records (the readable prefix). */
  readonly validBytes: number;
  /** Bytes after the readable prefix (a record torn by a crash or a full disk). */
  readonly tornBytes: number;
}

/** Parses spool bytes from `offset`; stops at the first record that is short or fails its checksum. */
export function parseSpool(bytes: Uint8Array, offset = 0, maxBytes = Infinity): SpoolContents {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = offset;
  let header: SpoolHeader | undefined;
  const items: StoreItem[] = [];
  let taken = 0;
  while (at + 4 <= bytes.length && taken < maxBytes) {
    const len = view.getUint32(at);
    if (len < 1 || len > MAX_RECORD || at + 4 + len + 4 > bytes.length) break;
    const body = bytes.subarray(at + 4, at + 4 + len);
    if (crc32(body) !== view.getUint32(at + 4 + len)) break;
    const kind = body[0]!;
    const payload = body.subarray(1);
    try {
      if (kind === KIND_HEADER) header = JSON.parse(dec.decode(payload)) as SpoolHeader;
      else {
        const item = decodeItem(kind, payload);
        if (item) items.push(item);
      }
    } catch {
      break;
    }
    at += 4 + len + 4;
    taken += 4 + len + 4;
  }
  return { header, items, validBytes: at - offset, tornBytes: bytes.length - at };
}

export function readSpoolFile(path: string): SpoolContents {
  return parseSpool(new Uint8Array(readFileSync(path)));
}

export function spoolPath(dir: string, id: string): string {
  return join(dir, `${checkRecordingId(id)}.spool`);
}

/** Spool files in a directory, by session id. */
export async function listSpoolFiles(dir: string): Promise<{ id: string; path: string }[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  return names.filter((n) => n.endsWith('.spool')).map((n) => ({ id: n.slice(0, -'.spool'.length), path: join(dir, n) }));
}

/** The open spool file of one live session. Appends are serialized by its one caller (the sink). */
export class SpoolFile {
  private size = 0;
  private dirty = false;
  private syncTimer: NodeJS.Timeout | undefined;
  private closed = false;

  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    private readonly fsync: SpoolFsync,
  ) {}

  /** Creates (or truncates) the file and writes the header, synced: the file's existence is the claim that the session was live. */
  static async create(dir: string, header: SpoolHeader, fsync: SpoolFsync): Promise<SpoolFile> {
    const path = spoolPath(dir, header.id);
    const fh = await open(path, 'w+', 0o600);
    const f = new SpoolFile(path, fh, fsync);
    openHere.add(path);
    try {
      await f.write(frame(KIND_HEADER, enc.encode(JSON.stringify(header))));
      if (fsync !== 'never') await fh.datasync();
    } catch (e) {
      openHere.delete(path);
      await fh.close().catch(() => {});
      await rm(path, { force: true });
      throw e;
    }
    return f;
  }

  /** Opens a file another (dead) recorder left, read-only, for uploadSpool. */
  static async openExisting(path: string): Promise<SpoolFile> {
    const fh = await open(path, 'r');
    const f = new SpoolFile(path, fh, 'never');
    f.size = (await fh.stat()).size;
    return f;
  }

  get bytes(): number {
    return this.size;
  }

  /** Appends items as one write; on failure (ENOSPC...) the file is cut back to where it was. */
  async append(items: readonly StoreItem[]): Promise<void> {
    const parts = items.map(encodeItem);
    const total = parts.reduce((n, p) => n + p.length, 0);
    const buf = Buffer.allocUnsafe(total);
    let at = 0;
    for (const p of parts) {
      buf.set(p, at);
      at += p.length;
    }
    await this.write(buf);
    if (this.fsync === 'always') await this.fh.datasync();
    else if (this.fsync === 'interval') this.scheduleSync();
  }

  private async write(buf: Uint8Array): Promise<void> {
    const before = this.size;
    try {
      let done = 0;
      while (done < buf.length) {
        const { bytesWritten } = await this.fh.write(buf, done, buf.length - done, before + done);
        done += bytesWritten;
      }
      this.size = before + buf.length;
    } catch (e) {
      await this.fh.truncate(before).catch(() => {});
      throw e;
    }
  }

  /** Reads whole records from `offset`, about `maxBytes` of them (at least one), for draining. */
  async read(offset: number, maxBytes: number): Promise<{ items: StoreItem[]; next: number; header?: SpoolHeader }> {
    if (offset + 4 > this.size) return { items: [], next: offset };
    const lenBuf = await this.readAt(offset, 4);
    const first = 4 + new DataView(lenBuf.buffer).getUint32(0) + 4;
    const buf = await this.readAt(offset, Math.min(this.size - offset, Math.max(maxBytes, first)));
    const parsed = parseSpool(buf, 0, maxBytes);
    return { items: parsed.items, next: offset + parsed.validBytes, ...(parsed.header ? { header: parsed.header } : {}) };
  }

  private async readAt(offset: number, len: number): Promise<Uint8Array> {
    const buf = new Uint8Array(len);
    let got = 0;
    while (got < len) {
      const { bytesRead } = await this.fh.read(buf, got, len - got, offset + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return buf.subarray(0, got);
  }

  /** The header's end: where items start. */
  async itemsOffset(): Promise<number> {
    return 4 + new DataView((await this.readAt(0, 4)).buffer).getUint32(0) + 4;
  }

  private scheduleSync(): void {
    this.dirty = true;
    if (this.syncTimer || this.closed) return;
    this.syncTimer = setTimeout(() => {
      this.syncTimer = undefined;
      if (!this.dirty || this.closed) return;
      this.dirty = false;
      this.fh.datasync().catch(() => {
        // A failed sync is retried on the next append; the data is still in the kernel.
        this.dirty = true;
      });
    }, SYNC_INTERVAL_MS);
    this.syncTimer.unref();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    openHere.delete(this.path);
    clearTimeout(this.syncTimer);
    if (this.dirty && this.fsync !== 'never') await this.fh.datasync().catch(() => {});
    await this.fh.close();
  }

  /** Closes and deletes: everything in it is in Redis. */
  async remove(): Promise<void> {
    await this.close();
    await rm(this.path, { force: true });
  }
}
