import type { Readable, Writable } from 'node:stream';

/** How a pump stopped: its source ended, its destination closed, or the session was torn down. */
export type PumpEnd = 'end' | 'closed' | 'aborted';

export interface PumpOptions {
  /**
   * Sees every chunk before it is written. A returned promise holds the pump until it
   * settles: that is the recorder's backpressure. A rejection stops the pump (the caller's
   * `onError` decides what that means for the session).
   */
  readonly onChunk?: (chunk: Buffer) => void | Promise<void>;
  readonly onError?: (e: unknown) => void;
  readonly signal: AbortSignal;
}

/**
 * Copies `src` into `dst` with backpressure both ways and no buffer of its own: while the tap
 * holds a chunk, or `dst.write` says its buffer is full (ssh2 channels: 2 MiB, one window), the
 * source is paused until the tap settles or 'drain'. An ssh2 channel that is paused stops
 * adjusting its window, so a slow client slows the target down, and the other way round. Does
 * not end `dst`; the caller decides (EOF and close order matter).
 *
 * Chunks come from 'data' events, one per SSH packet as ssh2 pushes it, rather than read(),
 * which concatenates whatever is buffered into a fresh copy (up to a window, 2 MiB) each time:
 * under load that copy and its garbage were the relay's largest cost (bench/proxy.ts: proxy CPU
 * per GiB 2.1 s -> 1.7 s). `for await` would destroy the source on an early exit.
 *
 * (Corking the destination's socket so that the packets of one read leave in one writev was
 * tried as well and measured slower: 3.6 s per GiB.)
 */
export function pump(src: Readable, dst: Writable, o: PumpOptions): Promise<PumpEnd> {
  return new Promise<PumpEnd>((resolve) => {
    let state: 'flowing' | 'tap' | 'drain' | 'done' = 'flowing';
    let ended = false;

    const finish = (how: PumpEnd): void => {
      if (state === 'done') return;
      state = 'done';
      // Leave what comes later buffered in the source, not emitted to nobody.
      src.pause();
      src.removeListener('data', onData);
      src.removeListener('end', onEnd);
      src.removeListener('close', onSrcClose);
      dst.removeListener('drain', onDrain);
      dst.removeListener('close', onDstClose);
      o.signal.removeEventListener('abort', onAbort);
      resolve(how);
    };
    /** Writes; false (and paused, waiting for 'drain') when the destination is full. */
    const write = (chunk: Buffer): boolean => {
      if (dst.write(chunk)) return true;
      state = 'drain';
      src.pause();
      dst.once('drain', onDrain);
      return false;
    };
    const proceed = (): void => {
      if (ended) finish('end');
      else src.resume();
    };
    function onData(chunk: Buffer): void {
      if (state === 'done') return;
      if (state !== 'flowing') {
        // A paused stream emits nothing more; should one anyway, the chunk goes back in front.
        src.unshift(chunk);
        return;
      }
      let waiting: void | Promise<void>;
      try {
        waiting = o.onChunk?.(chunk);
      } catch (e) {
        o.onError?.(e);
        finish('aborted');
        return;
      }
      if (!(waiting instanceof Promise)) {
        write(chunk);
        return;
      }
      state = 'tap';
      src.pause();
      waiting.then(
        () => {
          if (state !== 'tap') return;
          state = 'flowing';
          if (write(chunk)) proceed();
        },
        (e: unknown) => {
          if (state === 'done') return;
          o.onError?.(e);
          finish('aborted');
        },
      );
    }
    function onDrain(): void {
      if (state !== 'drain') return;
      state = 'flowing';
      proceed();
    }
    function onEnd(): void {
      ended = true;
      // A chunk waiting for drain was written already; one held by the tap is written first.
      if (state !== 'tap') finish('end');
    }
    function onSrcClose(): void {
      // ssh2 emits 'close' after 'end' on an orderly close; a bare close means the channel died.
      if (!ended) finish('closed');
    }
    function onDstClose(): void {
      finish('closed');
    }
    function onAbort(): void {
      finish('aborted');
    }

    if (o.signal.aborted) {
      finish('aborted');
      return;
    }
    src.once('end', onEnd);
    src.once('close', onSrcClose);
    dst.once('close', onDstClose);
    o.signal.addEventListener('abort', onAbort, { once: true });
    src.on('data', onData);
  });
}

/**
 * Resolves once everything written to `w` so far has been handed on (for an ssh2 channel:
 * sent within the peer's window), or when `w` closes first. A zero-length write queues behind
 * the data already buffered and completes right after it.
 */
export function flushed(w: Writable, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    if (!w.writable || signal.aborted) {
      resolve();
      return;
    }
    const done = (): void => {
      w.removeListener('close', done);
      signal.removeEventListener('abort', done);
      resolve();
    };
    w.once('close', done);
    signal.addEventListener('abort', done, { once: true });
    w.write(Buffer.alloc(0), done);
  });
}
