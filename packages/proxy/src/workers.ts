import cluster from 'node:cluster';
import type { Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import type { RunningProxy } from './server.js';

/*
 * One proxy worker per core behind one port. A proxy terminates SSH on both sides, so every
 * byte is decrypted and encrypted again on one thread; a machine's other cores only help when
 * other processes take other connections. node:cluster does exactly that: the primary owns the
 * listening socket and hands accepted connections to the workers in turn (round-robin, Node's
 * default on Linux), each worker runs a whole proxy (its own auth client, KRL cache, relays).
 * Proxies are stateless (locks and revocations come from auth to every worker), so a
 * connection may land on any of them.
 *
 * Graceful drain: SIGTERM or SIGINT to the primary (or stop()) tells each worker to stop
 * accepting and let its sessions finish for the grace period, then end the rest with a
 * message; the primary exits when all workers have. A worker that dies otherwise is replaced.
 */

const LISTENING = 'portcullis-proxy:listening';
const FAILED = 'portcullis-proxy:failed';
const STOP = 'portcullis-proxy:stop';

type WorkerMessage =
  | { readonly type: typeof LISTENING; readonly port: number }
  | { readonly type: typeof FAILED; readonly message: string }
  | { readonly type: typeof STOP; readonly graceMs?: number };

function isMessage(m: unknown): m is WorkerMessage {
  return typeof m === 'object' && m !== null && typeof (m as { type?: unknown }).type === 'string' && (m as { type: string }).type.startsWith('portcullis-proxy:');
}

export interface ProxyWorkersOptions {
  /** Worker processes; default one per core (os.availableParallelism()). */
  readonly workers?: number;
  /** The script each worker runs (it calls runProxyWorker); default this process's main script. */
  readonly exec?: string;
  readonly args?: readonly string[];
  /** Node options for the workers; default this process's (e.g. `--import tsx`). */
  readonly execArgv?: readonly string[];
  /** Extra environment for every worker (PORTCULLIS_WORKER is set to its index). */
  readonly env?: Readonly<Record<string, string>>;
  /** How long stop() lets sessions finish before ending them (default 30 s). */
  readonly graceMs?: number;
  /** Stop on SIGTERM and SIGINT, then exit the process (default false; a service's main sets it). */
  readonly handleSignals?: boolean;
  /** Waits before replacing a worker that died (default 1 s, doubling while they keep dying). */
  readonly restartDelayMs?: number;
  readonly log?: (level: 'info' | 'warn' | 'error', message: string) => void;
}

export interface ProxyWorkerPool {
  /** The port the workers share. */
  readonly port: number;
  /** Process ids of the live workers. */
  pids(): number[];
  /** Drains every worker (see ProxyWorkersOptions.graceMs) and resolves when all have exited. */
  stop(options?: { readonly graceMs?: number }): Promise<void>;
}

/**
 * In the primary: forks the workers and resolves once each listens (or rejects with the first
 * worker's start-up error). Call it only where cluster.isPrimary; workers call runProxyWorker.
 */
export async function startProxyWorkers(o: ProxyWorkersOptions = {}): Promise<ProxyWorkerPool> {
  if (!cluster.isPrimary) throw new TypeError('proxy: startProxyWorkers runs in the primary; a worker calls runProxyWorker');
  const count = o.workers ?? availableParallelism();
  if (!Number.isInteger(count) || count < 1) throw new TypeError(`proxy: "workers" expected a positive integer, got ${count}`);
  const log = o.log ?? ((level, message) => process.stderr.write(`portcullis proxy ${level}: ${message}\n`));
  const graceMs = o.graceMs ?? 30_000;
  const baseDelay = o.restartDelayMs ?? 1_000;
  // Round-robin in the primary rather than leaving it to the kernel: with shared accept()
  // Linux wakes whichever worker it likes, often the same one (Node's cluster docs).
  cluster.schedulingPolicy = cluster.SCHED_RR;
  cluster.setupPrimary({
    ...(o.exec === undefined ? {} : { exec: o.exec }),
    ...(o.args === undefined ? {} : { args: [...o.args] }),
    ...(o.execArgv === undefined ? {} : { execArgv: [...o.execArgv] }),
  });

  const live = new Map<number, Worker>();
  let stopping: Promise<void> | undefined;
  let port = 0;
  let delay = baseDelay;

  const fork = (index: number): Promise<number> => {
    const worker = cluster.fork({ ...o.env, PORTCULLIS_WORKER: String(index) });
    live.set(index, worker);
    return new Promise<number>((resolve, reject) => {
      let started = false;
      worker.on('message', (m: unknown) => {
        if (!isMessage(m)) return;
        if (m.type === LISTENING && !started) {
          started = true;
          delay = baseDelay;
          log('info', `proxy worker ${index} (pid ${worker.process.pid ?? '?'}) listening`);
          resolve(m.port);
        } else if (m.type === FAILED && !started) {
          reject(new Error(`proxy worker ${index} could not start: ${m.message}`));
        }
      });
      worker.once('exit', (code, signal) => {
        if (live.get(index) === worker) live.delete(index);
        if (!started) {
          reject(new Error(`proxy worker ${index} exited before listening (code ${code ?? '-'}, signal ${signal ?? '-'})`));
          return;
        }
        if (stopping !== undefined) return;
        log('warn', `proxy worker ${index} (pid ${worker.process.pid ?? '?'}) exited (code ${code ?? '-'}, signal ${signal ?? '-'}); starting another in ${delay} ms`);
        replace(index);
      });
    });
  };

  // Kept referenced: a primary whose workers all died waits for their replacements rather
  // than exiting; stop() clears them.
  const pending = new Set<NodeJS.Timeout>();
  const replace = (index: number): void => {
    const wait = delay;
    delay = Math.min(delay * 2, 60_000);
    const timer = setTimeout(() => {
      pending.delete(timer);
      if (stopping !== undefined) return;
      fork(index).catch((e: unknown) => {
        log('error', `${e instanceof Error ? e.message : String(e)}; trying again in ${delay} ms`);
        replace(index);
      });
    }, wait);
    pending.add(timer);
  };

  const stop = (options: { readonly graceMs?: number } = {}): Promise<void> => {
    stopping ??= (async () => {
      for (const t of pending) clearTimeout(t);
      pending.clear();
      const workers = [...live.values()];
      const grace = options.graceMs ?? graceMs;
      await Promise.all(
        workers.map(
          (w) =>
            new Promise<void>((resolve) => {
              if (w.isDead()) return resolve();
              w.once('exit', () => resolve());
              const message: WorkerMessage = { type: STOP, graceMs: grace };
              try {
                w.send(message);
              } catch {
                w.kill('SIGTERM');
              }
              // A worker that cannot finish draining in time is not waited for forever.
              setTimeout(() => w.kill('SIGKILL'), grace + 10_000).unref();
            }),
        ),
      );
    })();
    return stopping;
  };

  let ports: number[];
  try {
    ports = await Promise.all(Array.from({ length: count }, (_, i) => fork(i)));
  } catch (e) {
    await stop({ graceMs: 0 });
    throw e;
  }
  port = ports[0]!;
  if (ports.some((p) => p !== port)) {
    await stop({ graceMs: 0 });
    throw new Error(`proxy: workers listen on different ports (${ports.join(', ')}); give listen.port explicitly`);
  }
  if (o.handleSignals === true) {
    const onSignal = (signal: NodeJS.Signals): void => {
      log('info', `${signal}: draining ${live.size} proxy workers (up to ${graceMs} ms)`);
      void stop().then(() => process.exit(0));
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
  }
  log('info', `${count} proxy workers listening on port ${port}`);
  return {
    port,
    pids: () => [...live.values()].filter((w) => !w.isDead()).map((w) => w.process.pid!),
    stop,
  };
}

/** What a worker runs: a RunningProxy, or the whole service around one (main.ts). */
export interface ProxyWorkerService {
  readonly port: number;
  stop(options?: { readonly graceMs?: number }): Promise<void>;
}

export interface ProxyWorkerOptions {
  /** Runs after the proxy stopped and before the worker exits (close the auth client, flush). */
  readonly afterStop?: () => void | Promise<void>;
  /** Grace period when the worker itself gets SIGTERM (default 30 s). */
  readonly graceMs?: number;
}

/**
 * In a worker: starts this worker's proxy (its listen() goes through the primary's socket),
 * tells the primary it listens, and drains on the primary's stop message or its own SIGTERM.
 */
export async function runProxyWorker<T extends ProxyWorkerService = RunningProxy>(start: () => Promise<T>, o: ProxyWorkerOptions = {}): Promise<T> {
  const send = process.send?.bind(process);
  if (!cluster.isWorker || send === undefined) throw new TypeError('proxy: runProxyWorker runs in a cluster worker');
  let proxy: T;
  try {
    proxy = await start();
  } catch (e) {
    // The primary reports the reason; the worker exits once the message is out.
    const failed: WorkerMessage = { type: FAILED, message: e instanceof Error ? e.message : String(e) };
    send(failed, () => process.exit(1));
    return new Promise<never>(() => {});
  }
  let stopping: Promise<void> | undefined;
  const stop = (graceMs: number): void => {
    stopping ??= proxy
      .stop({ graceMs })
      .then(() => o.afterStop?.())
      .catch((e: unknown) => {
        process.stderr.write(`portcullis proxy worker: stopping failed: ${e instanceof Error ? e.message : String(e)}\n`);
      })
      .finally(() => process.exit(0));
  };
  process.on('message', (m: unknown) => {
    if (isMessage(m) && m.type === STOP) stop(m.graceMs ?? o.graceMs ?? 30_000);
  });
  // A service manager signalling the whole group reaches the workers too.
  process.once('SIGTERM', () => stop(o.graceMs ?? 30_000));
  process.once('SIGINT', () => stop(o.graceMs ?? 30_000));
  const listening: WorkerMessage = { type: LISTENING, port: proxy.port };
  send(listening);
  return proxy;
}

/** Whether this process is a proxy worker (a cluster worker). */
export function isProxyWorker(): boolean {
  return cluster.isWorker;
}
