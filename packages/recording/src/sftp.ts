/**
 * Per-file audit from an SFTP channel: follows both byte streams of SFTP version 3
 * (draft-ietf-secsh-filexfer-02, the version OpenSSH speaks), pairs each request with its reply
 * by request id, and reports what happened to which path.
 *
 * Reads and writes are summed per handle and reported when the handle is closed, so a 1 GiB
 * upload is one `write` operation, not 32768. Memory is bounded: a packet's bulk data (WRITE
 * and DATA payloads) is counted and skipped, never buffered; only the first HEAD_MAX bytes of a
 * packet are kept, which hold every field read here. The parser never throws: garbage is
 * counted in `stats` and skipped.
 */

/** OpenSSH's own limit (SFTP_MAX_MSG_LENGTH); a longer claim means the stream is not SFTP. */
export const SFTP_MAX_PACKET = 256 * 1024;
/** Enough for a RENAME of two 4 KiB paths (PATH_MAX) plus the fixed fields. */
const HEAD_MAX = 8 * 1024 + 64;
/** OpenSSH's client keeps at most 64 requests in flight; far more means we lost track. */
const MAX_PENDING = 4096;
const MAX_HANDLES = 1024;

// Packet types (filexfer-02 section 3).
const FXP_INIT = 1;
const FXP_OPEN = 3;
const FXP_CLOSE = 4;
const FXP_READ = 5;
const FXP_WRITE = 6;
const FXP_SETSTAT = 9;
const FXP_OPENDIR = 11;
const FXP_REMOVE = 13;
const FXP_MKDIR = 14;
const FXP_RMDIR = 15;
const FXP_RENAME = 18;
const FXP_SYMLINK = 20;
const FXP_EXTENDED = 200;
const FXP_VERSION = 2;
const FXP_STATUS = 101;
const FXP_HANDLE = 102;
const FXP_DATA = 103;

const FX_OK = 0;

/** SSH_FXF_* open flags, named. */
const OPEN_FLAGS: readonly (readonly [number, SftpOpenFlag])[] = [
  [0x01, 'read'],
  [0x02, 'write'],
  [0x04, 'append'],
  [0x08, 'create'],
  [0x10, 'truncate'],
  [0x20, 'exclusive'],
];
export type SftpOpenFlag = 'read' | 'write' | 'append' | 'create' | 'truncate' | 'exclusive';

/** What the audit log says about one SFTP operation. `status` is the SSH_FX_* code of the reply. */
export type SftpOperation =
  | { readonly op: 'open'; readonly path: string; readonly flags: readonly SftpOpenFlag[]; readonly ok: boolean; readonly status?: number }
  /** Bytes moved through one handle, reported at close (complete: false when the session ended first). */
  | { readonly op: 'read' | 'write'; readonly path: string; readonly bytes: number; readonly complete: boolean }
  | { readonly op: 'remove' | 'mkdir' | 'rmdir' | 'opendir'; readonly path: string; readonly ok: boolean; readonly status: number }
  | { readonly op: 'setstat'; readonly path: string; readonly mode?: number; readonly ok: boolean; readonly status: number }
  | { readonly op: 'rename' | 'symlink'; readonly path: string; readonly target: string; readonly ok: boolean; readonly status: number };

const OPS = new Set(['open', 'read', 'write', 'remove', 'mkdir', 'rmdir', 'opendir', 'setstat', 'rename', 'symlink']);

export function isSftpOperation(v: unknown): v is SftpOperation {
  if (typeof v !== 'object' || v === null) return false;
  const o = v as Record<string, unknown>;
  return typeof o.op === 'string' && OPS.has(o.op) && typeof o.path === 'string';
}

export interface SftpParserStats {
  packets: number;
  /** Packets whose length claim exceeded SFTP_MAX_PACKET: skipped unread. */
  oversized: number;
  /** Packets too short for their own fields, or of a type that cannot go that way. */
  malformed: number;
  /** Replies to requests never seen (the parser joined late or the peer misbehaves). */
  unmatched: number;
  /** Requests or handles forgotten because the bounds were reached. */
  evicted: number;
}

type Pending =
  | { readonly kind: 'open'; readonly path: string; readonly flags: readonly SftpOpenFlag[] }
  | { readonly kind: 'opendir' | 'remove' | 'mkdir' | 'rmdir'; readonly path: string }
  | { readonly kind: 'setstat'; readonly path: string; readonly mode: number | undefined }
  | { readonly kind: 'rename' | 'symlink'; readonly path: string; readonly target: string }
  | { readonly kind: 'read'; readonly handle: string }
  | { readonly kind: 'write'; readonly handle: string; readonly bytes: number }
  | { readonly kind: 'close'; readonly handle: string };

interface OpenFile {
  readonly path: string;
  read: number;
  written: number;
  reads: number;
  writes: number;
}

/** Frames one direction's byte stream into packet heads, skipping the bulk of long packets. */
class Framer {
  private readonly head = new Uint8Array(HEAD_MAX);
  private have = 0;
  private want = 4;
  private length = -1;
  private skip = 0;

  constructor(
    private readonly onPacket: (type: number, body: Uint8Array, length: number) => void,
    private readonly stats: SftpParserStats,
  ) {}

  push(chunk: Uint8Array): void {
    let i = 0;
    while (i < chunk.length) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - i);
        this.skip -= n;
        i += n;
        continue;
      }
      const n = Math.min(this.want - this.have, chunk.length - i);
      this.head.set(chunk.subarray(i, i + n), this.have);
      this.have += n;
      i += n;
      if (this.have < this.want) return;
      if (this.length < 0) {
        const len = new DataView(this.head.buffer, 0, 4).getUint32(0);
        if (len === 0 || len > SFTP_MAX_PACKET) {
          if (len !== 0) this.stats.oversized++;
          else this.stats.malformed++;
          this.skip = len;
          this.reset();
          continue;
        }
        this.length = len;
        this.want = 4 + Math.min(len, HEAD_MAX - 4);
        continue;
      }
      this.stats.packets++;
      const body = this.head.subarray(5, this.have);
      this.onPacket(this.head[4] ?? 0, body, this.length - 1);
      this.skip = this.length - (this.have - 4);
      this.reset();
    }
  }

  private reset(): void {
    this.have = 0;
    this.want = 4;
    this.length = -1;
  }
}

/** Reads SSH wire fields from a (possibly truncated) packet head; `ok` turns false on overrun. */
class Fields {
  private at = 0;
  ok = true;
  private static readonly text = new TextDecoder('utf-8', { fatal: false });

  constructor(private readonly b: Uint8Array) {}

  u32(): number {
    if (this.at + 4 > this.b.length) {
      this.ok = false;
      return 0;
    }
    const v = ((this.b[this.at]! << 24) | (this.b[this.at + 1]! << 16) | (this.b[this.at + 2]! << 8) | this.b[this.at + 3]!) >>> 0;
    this.at += 4;
    return v;
  }

  u64(): number {
    const hi = this.u32();
    const lo = this.u32();
    return hi * 2 ** 32 + lo;
  }

  /** The length of a string field, leaving its bytes unread (they may lie past the head). */
  lengthOnly(): number {
    return this.u32();
  }

  bytes(): Uint8Array {
    const n = this.u32();
    if (!this.ok || this.at + n > this.b.length) {
      this.ok = false;
      return new Uint8Array(0);
    }
    const v = this.b.subarray(this.at, this.at + n);
    this.at += n;
    return v;
  }

  string(): string {
    return Fields.text.decode(this.bytes());
  }

  handle(): string {
    return Buffer.from(this.bytes()).toString('hex');
  }
}

export class SftpStreamParser {
  readonly stats: SftpParserStats = { packets: 0, oversized: 0, malformed: 0, unmatched: 0, evicted: 0 };
  /** The version from INIT/VERSION; undefined until seen. */
  version: number | undefined;
  private readonly pending = new Map<number, Pending>();
  private readonly files = new Map<string, OpenFile>();
  private out: SftpOperation[] = [];
  private readonly client = new Framer((t, b, n) => this.fromClient(t, b, n), this.stats);
  private readonly server = new Framer((t, b, n) => this.fromServer(t, b, n), this.stats);

  /** Bytes the client sent; returns the operations they completed (usually none: replies do). */
  clientData(chunk: Uint8Array): SftpOperation[] {
    this.client.push(chunk);
    return this.take();
  }

  /** Bytes the server sent; returns the operations its replies completed. */
  serverData(chunk: Uint8Array): SftpOperation[] {
    this.server.push(chunk);
    return this.take();
  }

  /** The channel closed: reports what moved through handles that were never closed. */
  end(): SftpOperation[] {
    for (const [handle, file] of this.files) {
      this.files.delete(handle);
      this.report(file, false);
    }
    this.pending.clear();
    return this.take();
  }

  private take(): SftpOperation[] {
    const ops = this.out;
    this.out = [];
    return ops;
  }

  private request(id: number, p: Pending): void {
    if (this.pending.size >= MAX_PENDING) {
      const oldest = this.pending.keys().next().value;
      if (oldest !== undefined) this.pending.delete(oldest);
      this.stats.evicted++;
    }
    this.pending.set(id, p);
  }

  private fromClient(type: number, body: Uint8Array, bodyLength: number): void {
    const f = new Fields(body);
    if (type === FXP_INIT) {
      const v = f.u32();
      if (f.ok) this.version = v;
      else this.stats.malformed++;
      return;
    }
    const id = f.u32();
    let p: Pending | undefined;
    switch (type) {
      case FXP_OPEN: {
        const path = f.string();
        const pflags = f.u32();
        p = { kind: 'open', path, flags: OPEN_FLAGS.filter(([bit]) => (pflags & bit) !== 0).map(([, name]) => name) };
        break;
      }
      case FXP_CLOSE:
        p = { kind: 'close', handle: f.handle() };
        break;
      case FXP_READ:
        p = { kind: 'read', handle: f.handle() };
        break;
      case FXP_WRITE: {
        const handle = f.handle();
        f.u64();
        const bytes = f.lengthOnly();
        // The data string must fit the packet: id, handle, offset and its own length precede it.
        if (bytes > bodyLength) f.ok = false;
        p = { kind: 'write', handle, bytes };
        break;
      }
      case FXP_OPENDIR:
      case FXP_REMOVE:
      case FXP_MKDIR:
      case FXP_RMDIR: {
        const kind = type === FXP_OPENDIR ? 'opendir' : type === FXP_REMOVE ? 'remove' : type === FXP_MKDIR ? 'mkdir' : 'rmdir';
        p = { kind, path: f.string() };
        break;
      }
      case FXP_SETSTAT: {
        const path = f.string();
        p = { kind: 'setstat', path, mode: permissions(f) };
        break;
      }
      case FXP_RENAME: {
        const path = f.string();
        p = { kind: 'rename', path, target: f.string() };
        break;
      }
      case FXP_SYMLINK: {
        // OpenSSH sends (target, link), the reverse of the draft; both ends of our sessions are
        // OpenSSH, so read it OpenSSH's way: the link is created at the second path.
        const target = f.string();
        p = { kind: 'symlink', path: f.string(), target };
        break;
      }
      case FXP_EXTENDED: {
        const name = f.string();
        if (name === 'posix-rename@openssh.com') {
          const path = f.string();
          p = { kind: 'rename', path, target: f.string() };
        }
        break;
      }
      default:
        // STAT, REALPATH, READDIR...: nothing to audit, and their replies are ignored.
        if (type < 3 || (type > 20 && type !== FXP_EXTENDED)) this.stats.malformed++;
        return;
    }
    if (!f.ok) {
      this.stats.malformed++;
      return;
    }
    if (p) this.request(id, p);
  }

  private fromServer(type: number, body: Uint8Array, bodyLength: number): void {
    const f = new Fields(body);
    if (type === FXP_VERSION) {
      const v = f.u32();
      if (f.ok) this.version = v;
      return;
    }
    if (type < FXP_STATUS || type > 201) {
      this.stats.malformed++;
      return;
    }
    const id = f.u32();
    if (!f.ok) {
      this.stats.malformed++;
      return;
    }
    const p = this.pending.get(id);
    if (!p) {
      // Replies to STAT, READDIR and the like land here too; only count what we should know.
      if (type === FXP_HANDLE) this.stats.unmatched++;
      return;
    }
    this.pending.delete(id);
    switch (type) {
      case FXP_STATUS:
        this.status(p, f.u32(), f.ok);
        return;
      case FXP_HANDLE: {
        const handle = f.handle();
        if (!f.ok) {
          this.stats.malformed++;
          return;
        }
        if (p.kind === 'open') {
          this.open(handle, p.path);
          this.out.push({ op: 'open', path: p.path, flags: p.flags, ok: true });
        } else if (p.kind === 'opendir') {
          this.out.push({ op: 'opendir', path: p.path, ok: true, status: FX_OK });
        }
        return;
      }
      case FXP_DATA: {
        const n = f.lengthOnly();
        if (!f.ok || n > bodyLength) {
          this.stats.malformed++;
          return;
        }
        if (p.kind === 'read') {
          const file = this.files.get(p.handle);
          if (file) {
            file.read += n;
            file.reads++;
          }
        }
        return;
      }
      default:
        return;
    }
  }

  private status(p: Pending, code: number, ok: boolean): void {
    if (!ok) {
      this.stats.malformed++;
      return;
    }
    const success = code === FX_OK;
    switch (p.kind) {
      case 'open':
        this.out.push({ op: 'open', path: p.path, flags: p.flags, ok: false, status: code });
        return;
      case 'read':
        return;
      case 'write': {
        const file = this.files.get(p.handle);
        if (file && success) {
          file.written += p.bytes;
          file.writes++;
        }
        return;
      }
      case 'close': {
        const file = this.files.get(p.handle);
        if (file) {
          this.files.delete(p.handle);
          this.report(file, true);
        }
        return;
      }
      case 'setstat':
        this.out.push({ op: 'setstat', path: p.path, ...(p.mode === undefined ? {} : { mode: p.mode }), ok: success, status: code });
        return;
      case 'rename':
      case 'symlink':
        this.out.push({ op: p.kind, path: p.path, target: p.target, ok: success, status: code });
        return;
      default:
        this.out.push({ op: p.kind, path: p.path, ok: success, status: code });
    }
  }

  private open(handle: string, path: string): void {
    if (this.files.size >= MAX_HANDLES) {
      const [oldest, file] = this.files.entries().next().value ?? [];
      if (oldest !== undefined && file) {
        this.files.delete(oldest);
        this.report(file, false);
      }
      this.stats.evicted++;
    }
    this.files.set(handle, { path, read: 0, written: 0, reads: 0, writes: 0 });
  }

  private report(file: OpenFile, complete: boolean): void {
    if (file.reads > 0) this.out.push({ op: 'read', path: file.path, bytes: file.read, complete });
    if (file.writes > 0) this.out.push({ op: 'write', path: file.path, bytes: file.written, complete });
  }
}

/** The permissions field of an ATTRS structure (filexfer-02 section 5), if present. */
function permissions(f: Fields): number | undefined {
  const flags = f.u32();
  if (flags & 0x1) f.u64(); // size
  if (flags & 0x2) {
    f.u32(); // uid
    f.u32(); // gid
  }
  if (!(flags & 0x4)) return undefined;
  const mode = f.u32();
  return f.ok ? mode & 0o7777 : undefined;
}
