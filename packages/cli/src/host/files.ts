import { randomBytes } from 'node:crypto';
import {
  closeSync,
  fchmodSync,
  fchownSync,
  fsyncSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';

/*
 * How enrollment touches the disk. sshd reads these files while we write them (the KRL and the
 * user CA file on every login attempt), and a half-written RevokedKeys file blocks every
 * certificate login, so every file is replaced whole: written beside its target, flushed, then
 * renamed over it, and the directory flushed so the rename survives a crash.
 */

const isRoot = typeof process.geteuid === 'function' && process.geteuid() === 0;

function fsyncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // Some filesystems refuse to fsync a directory; the rename itself is still atomic.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** A name beside `path` that sshd's `*.conf` Include and our own readers never match. */
export function siblingTempPath(path: string, tag = 'tmp'): string {
  return join(dirname(path), `.${basename(path)}.${tag}-${process.pid}-${randomBytes(4).toString('hex')}`);
}

/** Directories we create are root's and world-readable, as /etc/ssh itself is. */
export function ensureDir(path: string): void {
  mkdirSync(path, { recursive: true, mode: 0o755 });
}

/** Writes a new file (it must not exist) and flushes it: the first half of an atomic replace. */
export function writeNewFile(path: string, data: string | Uint8Array, mode: number): void {
  ensureDir(dirname(path));
  const fd = openSync(path, 'wx', mode);
  try {
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    let off = 0;
    while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
    // The umask may have narrowed the mode given to open(); the mode is part of the contract.
    fchmodSync(fd, mode);
    if (isRoot) fchownSync(fd, 0, 0);
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    rmSync(path, { force: true });
    throw e;
  }
  closeSync(fd);
}

/** Replaces `path` with `data` atomically, with `mode`, owned by root when we are root. */
export function writeFileAtomic(path: string, data: string | Uint8Array, mode: number): void {
  const temp = siblingTempPath(path);
  writeNewFile(temp, data, mode);
  try {
    renameSync(temp, path);
  } catch (e) {
    rmSync(temp, { force: true });
    throw e;
  }
  fsyncDir(dirname(path));
}

export function renameDurably(from: string, to: string): void {
  renameSync(from, to);
  fsyncDir(dirname(to));
}

export function readIfExists(path: string): Buffer | undefined {
  try {
    return readFileSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

interface Previous {
  readonly path: string;
  /** undefined: the file did not exist. */
  readonly data: Buffer | undefined;
  readonly mode: number;
}

/**
 * The files one command changes, with what they held before, so that a failure part-way
 * (sshd -t refusing the result) puts every one back. Writing what a file already holds, with
 * the mode it already has, is skipped: a second run changes nothing it does not have to.
 */
export class FileChanges {
  readonly #previous: Previous[] = [];
  readonly #changed: string[] = [];

  /** Writes atomically; returns false when the file already held exactly this. */
  write(path: string, data: string | Uint8Array, mode: number): boolean {
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : Buffer.from(data);
    const old = readIfExists(path);
    const st = old === undefined ? undefined : lstatSync(path);
    const oldMode = st === undefined ? 0 : st.mode & 0o7777;
    // Same bytes, mode and owner: nothing to do (a second join leaves such files alone).
    if (old !== undefined && st !== undefined && old.equals(bytes) && oldMode === mode && (!isRoot || (st.uid === 0 && st.gid === 0))) return false;
    this.#remember(path, old, oldMode);
    writeFileAtomic(path, bytes, mode);
    this.#changed.push(path);
    return true;
  }

  /** Records a file the caller is about to put in place itself (by rename). */
  track(path: string): void {
    const old = readIfExists(path);
    this.#remember(path, old, old === undefined ? 0 : lstatSync(path).mode & 0o7777);
    this.#changed.push(path);
  }

  get changed(): readonly string[] {
    return this.#changed;
  }

  /** Restores every file written, newest first; returns what it could not restore. */
  rollback(): string[] {
    const failed: string[] = [];
    for (const p of [...this.#previous].reverse()) {
      try {
        if (p.data === undefined) unlinkSync(p.path);
        else writeFileAtomic(p.path, p.data, p.mode);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') failed.push(`${p.path}: ${(e as Error).message}`);
      }
    }
    this.#previous.length = 0;
    this.#changed.length = 0;
    return failed;
  }

  #remember(path: string, data: Buffer | undefined, mode: number): void {
    // The first state seen is the one to go back to.
    if (!this.#previous.some((p) => p.path === path)) this.#previous.push({ path, data, mode });
  }
}
