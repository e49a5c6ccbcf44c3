import type ssh2 from 'ssh2';
import type { SessionOutcome } from './stats.js';

/*
 * The open-loop engine of `pcsh bench` (and of the load and soak scripts): session i is due at
 * i / rate seconds and starts then, however many earlier sessions are still running, because a
 * closed loop (start the next when one ends) slows down with the system under test and hides
 * exactly the latency it should show. With a concurrency limit, a due session waits for a free
 * slot, and the wait counts in its latency.
 */

/** One session: resolves when it ended well, rejects with the reason otherwise; calls `opened` once set up. */
export type SessionRun = (opened: () => void) => Promise<void>;

export interface OpenLoopOptions {
  readonly ratePerSecond: number;
  readonly durationMs: number;
  /** At most this many sessions at once; a due session waits for a slot (default: no limit). */
  readonly concurrencyLimit?: number;
  readonly run: SessionRun;
  /** Called as each session ends (progress, soak sampling). */
  readonly onOutcome?: (o: SessionOutcome) => void;
  /** Stops starting sessions early (the ones running finish). */
  readonly signal?: AbortSignal;
}

export interface OpenLoopResult {
  readonly outcomes: readonly SessionOutcome[];
  /** From the start until the last session ended. */
  readonly elapsedMs: number;
}

export function sessionCount(ratePerSecond: number, durationMs: number): number {
  if (!(ratePerSecond > 0) || !Number.isFinite(ratePerSecond)) throw new TypeError(`"ratePerSecond" expected a positive number, got ${ratePerSecond}`);
  if (!(durationMs > 0)) throw new TypeError(`"durationMs" expected a positive number, got ${durationMs}`);
  return Math.max(1, Math.floor((ratePerSecond * durationMs) / 1000));
}

export async function runOpenLoop(o: OpenLoopOptions): Promise<OpenLoopResult> {
  const count = sessionCount(o.ratePerSecond, o.durationMs);
  const interval = 1000 / o.ratePerSecond;
  const limit = o.concurrencyLimit ?? Number.POSITIVE_INFINITY;
  const t0 = performance.now();
  const outcomes: SessionOutcome[] = [];
  const running = new Set<Promise<void>>();
  const waiting: (() => void)[] = [];
  let inFlight = 0;

  const one = async (dueMs: number): Promise<void> => {
    if (inFlight >= limit) await new Promise<void>((r) => waiting.push(r));
    inFlight++;
    let setupMs: number | undefined;
    let error: string | undefined;
    try {
      await o.run(() => (setupMs ??= performance.now() - t0 - dueMs));
    } catch (e) {
      error = e instanceof Error ? e.message : String(e);
    }
    const outcome: SessionOutcome = { dueMs, setupMs, totalMs: performance.now() - t0 - dueMs, error };
    outcomes.push(outcome);
    inFlight--;
    waiting.shift()?.();
    o.onOutcome?.(outcome);
  };

  for (let i = 0; i < count && o.signal?.aborted !== true; i++) {
    const dueMs = i * interval;
    const wait = t0 + dueMs - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    const p = one(dueMs);
    running.add(p);
    void p.finally(() => running.delete(p));
  }
  await Promise.all(running);
  return { outcomes, elapsedMs: performance.now() - t0 };
}

export interface SessionSpec {
  /** An authenticated connection (already `ready`); the session ends it. */
  readonly dial: () => Promise<ssh2.Client>;
  readonly command: string;
  /** A pty shell that runs the command and exits, instead of an exec request. */
  readonly interactive?: boolean;
  /** A session still running after this fails (default 60 s). */
  readonly timeoutMs?: number;
}

/**
 * One session as `pcsh bench` makes it: connect, exec (or a pty shell that runs the command),
 * read everything, wait for the exit status, close. A non-zero status is a failure.
 */
export function runSession(spec: SessionSpec, opened: () => void): Promise<void> {
  const timeoutMs = spec.timeoutMs ?? 60_000;
  return new Promise<void>((resolve, reject) => {
    let client: ssh2.Client | undefined;
    let done = false;
    const finish = (e?: Error): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      client?.end();
      if (e === undefined) resolve();
      else reject(e);
    };
    const timer = setTimeout(() => finish(new Error(`the session did not end within ${timeoutMs / 1000} s`)), timeoutMs);
    spec.dial().then(
      (c) => {
        client = c;
        if (done) return void c.end();
        c.on('error', (e: Error) => finish(e));
        c.on('close', () => finish(new Error('the connection closed before the session ended')));
        const onChannel = (err: Error | undefined, ch: ssh2.ClientChannel): void => {
          if (err) return finish(new Error(`the proxy refused the session: ${err.message}`));
          opened();
          let status: number | undefined;
          let signal: string | undefined;
          let stderr = '';
          ch.on('data', () => {});
          ch.stderr.on('data', (b: Buffer) => {
            if (stderr.length < 500) stderr += b.toString('utf8');
          });
          ch.on('exit', (code: number | null, sig?: string) => {
            status = code ?? undefined;
            signal = sig;
          });
          ch.on('close', () => {
            if (status === 0) return finish();
            const why = status !== undefined ? `exit status ${status}` : signal !== undefined ? `killed by SIG${signal}` : 'no exit status';
            const said = stderr.trim().split('\n')[0];
            finish(new Error(`the command ended with ${why}${said ? `: ${said}` : ''}`));
          });
          // No EOF after it: on a pty, sshd cannot half-close, and the shell ends with `exit` anyway.
          if (spec.interactive === true) ch.write(`${spec.command}\nexit\n`);
        };
        if (spec.interactive === true) c.shell({ term: 'xterm', rows: 24, cols: 80 }, onChannel);
        else c.exec(spec.command, onChannel);
      },
      (e: unknown) => finish(e instanceof Error ? e : new Error(String(e))),
    );
  });
}
