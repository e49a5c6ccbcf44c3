import { Worker } from 'node:worker_threads';
import type { EncodedEvent } from './codec.js';
import { chainEvent, initialDigest } from './digest.js';
import type { RecordingSink } from './sink.js';
import type { StoreItem } from './store.js';

/** An event waiting for its link in the chain, holding its place in the queue meanwhile. */
interface Unhashed {
  readonly kind: 'unhashed';
  readonly seq: number;
  readonly t: number;
  readonly event: EncodedEvent;
  readonly stored: (() => void) | undefined;
  digest: Uint8Array | undefined;
}

/**
 * The recorder's digest chain (digest.ts) in front of its sink. A large event is hashed on a
 * worker thread rather than on the event loop, where SHA-256 of every recorded byte was the
 * largest cost left in a bulk download; items behind it wait here, so the sink still receives
 * everything in the order it was recorded. Small events are hashed in place when nothing waits,
 * which is the interactive case.
 */
export class DigestChain {
  private last: Uint8Array;
  private readonly held: (StoreItem | Unhashed)[] = [];
  private heldByteCount = 0;
  /** The chain's work, one event after another: each link needs the one before. */
  private tail: Promise<void> = Promise.resolve();

  constructor(
    id: string,
    private readonly sink: RecordingSink,
  ) {
    this.last = initialDigest(id);
  }

  /** The chain's last value: the final one once settled() has resolved. */
  get digest(): Uint8Array {
    return this.last;
  }

  /** Bytes of events waiting for their digest (they count against the session's backpressure). */
  get heldBytes(): number {
    return this.heldByteCount;
  }

  /** Resolves once everything passed in so far has gone on to the sink. */
  settled(): Promise<void> {
    return this.tail;
  }

  enqueue(item: StoreItem): void {
    if (this.held.length === 0) this.sink.enqueue(item);
    else this.held.push(item);
  }

  event(seq: number, t: number, event: EncodedEvent, stored: (() => void) | undefined): void {
    if (this.held.length === 0 && event.data.length < OFFLOAD_BYTES) {
      this.last = chainEvent(this.last, event);
      this.sink.enqueue(eventItem(seq, t, event, this.last, stored));
      return;
    }
    const u: Unhashed = { kind: 'unhashed', seq, t, event, stored, digest: undefined };
    this.held.push(u);
    this.heldByteCount += event.head.length + event.data.length;
    this.tail = this.tail.then(async () => {
      this.last = await this.link(this.last, event);
      u.digest = this.last;
      this.release();
    });
  }

  /** chainEvent on the hashing thread: the same bytes (copied into shared memory), the same OpenSSL. */
  private async link(prev: Uint8Array, ev: EncodedEvent): Promise<Uint8Array> {
    const n = prev.length + 8 + ev.head.length + ev.data.length;
    if (n > SCRATCH_BYTES) return chainEvent(prev, ev);
    const sab = scratchPool.pop() ?? new SharedArrayBuffer(SCRATCH_BYTES);
    const b = Buffer.from(sab, 0, n);
    b.set(prev, 0);
    let at = prev.length;
    at = b.writeUInt32BE(ev.head.length, at);
    b.set(ev.head, at);
    at = b.writeUInt32BE(ev.data.length, at + ev.head.length);
    b.set(ev.data, at);
    try {
      return await hashShared(sab, n);
    } catch {
      return chainEvent(prev, ev);
    } finally {
      if (scratchPool.length < 8) scratchPool.push(sab);
    }
  }

  private release(): void {
    for (let head = this.held[0]; head !== undefined; head = this.held[0]) {
      if (head.kind === 'unhashed') {
        if (head.digest === undefined) return;
        this.heldByteCount -= head.event.head.length + head.event.data.length;
        this.sink.enqueue(eventItem(head.seq, head.t, head.event, head.digest, head.stored));
      } else {
        this.sink.enqueue(head);
      }
      this.held.shift();
    }
  }
}

function eventItem(seq: number, t: number, event: EncodedEvent, digest: Uint8Array, stored: (() => void) | undefined): StoreItem {
  return stored ? { kind: 'event', seq, t, event, digest, stored } : { kind: 'event', seq, t, event, digest };
}

/** Events at least this large are hashed off the event loop (below, the hop costs more than it saves). */
const OFFLOAD_BYTES = 64 * 1024;

/** Memory for the bytes of one link, shared by all chains: each holds one only while hashing. */
const scratchPool: SharedArrayBuffer[] = [];
/** A bulk event (256 KiB less room, recorder.ts) with its head and the previous digest. */
const SCRATCH_BYTES = 256 * 1024 + 4096;

// One hashing thread for the process, started on first use. It keeps the process alive only
// while it has work, as a pending write would. Should it die, what it had is hashed in place and
// the next link starts another.
const HASHER = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
parentPort.on('message', ({ id, sab, n }) => {
  parentPort.postMessage({ id, digest: createHash('sha256').update(new Uint8Array(sab, 0, n)).digest() });
});
`;
let hasher: Worker | undefined;
let nextId = 0;
const waiting = new Map<number, { resolve: (d: Uint8Array) => void; reject: (e: unknown) => void }>();

function hashShared(sab: SharedArrayBuffer, n: number): Promise<Uint8Array> {
  if (!hasher) {
    const w = new Worker(HASHER, { eval: true });
    w.on('message', (m: { id: number; digest: Uint8Array }) => {
      waiting.get(m.id)?.resolve(new Uint8Array(m.digest));
      waiting.delete(m.id);
      if (waiting.size === 0) w.unref();
    });
    const lost = (e: unknown): void => {
      if (hasher === w) hasher = undefined;
      for (const x of waiting.values()) x.reject(e);
      waiting.clear();
    };
    w.on('error', lost);
    w.on('exit', (code) => lost(new Error(`the hashing thread exited (${code})`)));
    hasher = w;
  }
  const w = hasher;
  const id = nextId++;
  if (waiting.size === 0) w.ref();
  return new Promise((resolve, reject) => {
    waiting.set(id, { resolve, reject });
    w.postMessage({ id, sab, n });
  });
}
