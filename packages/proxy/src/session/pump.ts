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
 * Copies `src` into `dst` with backpressure both ways and no buffer of its own: a chunk is read
 * only when the previous one was accepted, and when `dst.write` says its buffer is full
 * (ssh2 channels: 2 MiB, one window) nothing more is read until 'drain'. An ssh2 channel whose
 * reader stops stops adjusting its window, so a slow client slows the target down, and the
 * other way round. Does not end `dst`; the caller decides (EOF and close order matter).
 *
 * Written with 'readable' and read() rather than `for await`, which would destroy the source
 * on an early exit and pay a promise per chunk when no tap is waiting.
 */
export function pump(src: Readable, dst: Writable, o: PumpOptions): Promise<PumpEnd> {
  return new Promise<PumpEnd>((resolve) => {
    let state: 'reading' | 'tap' | 'drain' | 'done' = 'reading';
    let ended = false;

    const finish = (how: PumpEnd): void => {
      if (state === 'done') return;
      state = 'done';
      src.removeListener('readable', flow);
      src.removeListener('end', onEnd);
      src.removeListener('close', onSrcClose);
      dst.removeListener('drain', onDrain);
      dst.removeListener('close', onDstClose);
      o.signal.removeEventListener('abort', onAbort);
      resolve(how);
    };
    const write = (chunk: Buffer): boolean => {
      if (dst.write(chunk)) return true;
      state = 'drain';
      dst.once('drain', onDrain);
      return false;
    };
    function flow(): void {
      while (state === 'reading') {
        const chunk = src.read() as Buffer | null;
        if (chunk === null) {
          if (ended) finish('end');
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
        if (waiting instanceof Promise) {
          state = 'tap';
          waiting.then(
            () => {
              if (state !== 'tap') return;
              state = 'reading';
              if (write(chunk)) flow();
            },
            (e: unknown) => {
              if (state === 'done') return;
              o.onError?.(e);
              finish('aborted');
            },
          );
          return;
        }
        if (!write(chunk)) return;
      }
    }
    function onDrain(): void {
      if (state !== 'drain') return;
      state = 'reading';
      flow();
    }
    function onEnd(): void {
      ended = true;
      // A chunk held by the tap or waiting for drain was read before the end: finish after it.
      if (state === 'reading') finish('end');
      else if (state === 'drain') finish('end');
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
    src.on('readable', flow);
    src.once('end', onEnd);
    src.once('close', onSrcClose);
    dst.once('close', onDstClose);
    o.signal.addEventListener('abort', onAbort, { once: true });
    flow();
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
