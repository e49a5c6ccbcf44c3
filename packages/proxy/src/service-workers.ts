import cluster from 'node:cluster';
import type { Worker } from 'node:cluster';
import { readdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { AggregatorRegistry, type Registry } from 'prom-client';
import type { ProxyServiceConfig } from './service-config.js';
import { startProxyWorkers, type ProxyWorkerPool } from './workers.js';

// The proxy service with `workers` > 1 (docs/proxy.md, "Workers"): the primary forks the
// workers (workers.ts) and serves the metrics of all of them; each worker runs the whole
// service (main.ts startProxyService) with its own spool directory and no metrics listener.

/** Which worker this process is, of how many. */
export interface ProxyWorkerPlace {
  readonly index: number;
  readonly count: number;
}

/** The number of proxy processes a config's `workers` asks for on a machine with `cores`. */
export function workerCount(workers: number | 'auto', cores: number): number {
  return workers === 'auto' ? Math.max(1, cores) : workers;
}

const COUNT_ENV = 'PORTCULLIS_WORKERS';

/** In a worker forked by startProxyServicePrimary: its place (from the environment the primary gave it). */
export function proxyWorkerPlace(env: NodeJS.ProcessEnv = process.env): ProxyWorkerPlace | undefined {
  if (!cluster.isWorker) return undefined;
  const index = Number(env['PORTCULLIS_WORKER']);
  const count = Number(env[COUNT_ENV]);
  if (!Number.isInteger(index) || !Number.isInteger(count) || index < 0 || index >= count) {
    throw new TypeError(`proxy: a worker expected PORTCULLIS_WORKER below ${COUNT_ENV}, got ${env['PORTCULLIS_WORKER']} of ${env[COUNT_ENV]}`);
  }
  return { index, count };
}

const WORKER_DIR = /^worker-(\d+)$/;

/**
 * Where a process spools, and which other spool directories it uploads. Every spool directory
 * has exactly one uploader, so no two processes finish the same file: worker i spools in
 * `worker-i` (its replacement uploads what a killed worker i left there), worker 0 also takes
 * the base directory and the `worker-j` a previous run with more workers left, and a single
 * process spools in the base directory and takes every `worker-*`. `entries` are the names in
 * the base directory.
 */
export function spoolPlacement(base: string, place: ProxyWorkerPlace | undefined, entries: readonly string[]): { spoolDir: string; adopt: string[] } {
  const workerDirs = entries.flatMap((name) => {
    const m = WORKER_DIR.exec(name);
    return m ? [{ name, index: Number(m[1]) }] : [];
  });
  workerDirs.sort((a, b) => a.index - b.index);
  if (place === undefined) return { spoolDir: base, adopt: workerDirs.map((d) => join(base, d.name)) };
  const spoolDir = join(base, `worker-${place.index}`);
  if (place.index !== 0) return { spoolDir, adopt: [] };
  return { spoolDir, adopt: [base, ...workerDirs.filter((d) => d.index >= place.count).map((d) => join(base, d.name))] };
}

/** The names in a spool directory, none when it does not exist yet. */
export function spoolEntries(base: string): string[] {
  try {
    return readdirSync(base);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
}

let answering = false;

/**
 * In a worker: answers the primary's metrics requests with `registry`, every series labelled
 * with the worker's index. Labelled rather than summed: a gauge like the KRL age means nothing
 * summed, and a summed counter would go backwards when a worker is replaced.
 */
export function exportWorkerMetrics(registry: Registry | undefined, index: number): void {
  registry?.setDefaultLabels({ worker: String(index) });
  AggregatorRegistry.setRegistries(registry === undefined ? [] : [registry]);
  if (!answering) {
    // Constructing one installs prom-client's listener for the primary's requests.
    new AggregatorRegistry();
    answering = true;
  }
}

/** GET /metrics on `listen`, answered by `text`. */
export async function listenMetrics(
  listen: { readonly host: string; readonly port: number },
  text: () => Promise<string>,
  contentType: string,
): Promise<{ readonly server: Server; readonly port: number }> {
  const server = createServer((req, res) => {
    if (req.url !== '/metrics') return void res.writeHead(404).end();
    text().then(
      (body) => res.writeHead(200, { 'content-type': contentType }).end(body),
      () => res.writeHead(500).end(),
    );
  });
  await new Promise<void>((ok, fail) => server.once('error', fail).listen(listen.port, listen.host, ok));
  const a = server.address();
  return { server, port: typeof a === 'object' && a !== null ? a.port : listen.port };
}

// prom-client's cluster protocol, spoken from the primary here rather than through
// AggregatorRegistry.clusterMetrics(): that fails the whole scrape after 5 s when any worker
// does not answer, as a replacement still loading its modules cannot.
const METRICS_REQUEST = 'prom-client:getMetricsReq';
const METRICS_RESPONSE = 'prom-client:getMetricsRes';
let metricsRequests = 0;

/** In the primary: the metrics of every worker that answers within `timeoutMs`, as one page. */
export async function workersMetrics(timeoutMs = 2_000): Promise<string> {
  const requestId = `portcullis-${metricsRequests++}`;
  const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined && w.isConnected());
  const replies = await Promise.all(
    workers.map(
      (w) =>
        new Promise<unknown[]>((resolve) => {
          const done = (metrics: unknown[]): void => {
            clearTimeout(timer);
            w.off('message', onMessage);
            w.off('exit', onExit);
            resolve(metrics);
          };
          const onMessage = (m: unknown): void => {
            const r = m as { type?: unknown; requestId?: unknown; metrics?: unknown; error?: unknown };
            if (r?.type !== METRICS_RESPONSE || r.requestId !== requestId) return;
            done(r.error === undefined && Array.isArray(r.metrics) ? (r.metrics as unknown[][]).flat() : []);
          };
          const onExit = (): void => done([]);
          const timer = setTimeout(() => done([]), timeoutMs);
          w.on('message', onMessage);
          w.once('exit', onExit);
          try {
            w.send({ type: METRICS_REQUEST, requestId });
          } catch {
            done([]);
          }
        }),
    ),
  );
  return AggregatorRegistry.aggregate(replies as Parameters<typeof AggregatorRegistry.aggregate>[0]).metrics();
}

export interface RunningProxyServicePrimary {
  readonly pool: ProxyWorkerPool;
  readonly metricsPort: number | undefined;
  /** Drains every worker (drain_grace) and closes the metrics listener. */
  stop(): Promise<void>;
}

/**
 * In the primary: forks `count` workers, each re-running this process's script (which sees
 * proxyWorkerPlace() and runs the service), and serves their metrics on the config's listener.
 */
export async function startProxyServicePrimary(
  config: ProxyServiceConfig,
  count: number,
  log: (level: 'info' | 'warn' | 'error', message: string) => void,
): Promise<RunningProxyServicePrimary> {
  const pool = await startProxyWorkers({ workers: count, graceMs: config.drainGraceMs, env: { [COUNT_ENV]: String(count) }, log });
  let metrics: { readonly server: Server; readonly port: number } | undefined;
  if (config.metricsListen !== undefined) {
    try {
      metrics = await listenMetrics(config.metricsListen, () => workersMetrics(), AggregatorRegistry.PROMETHEUS_CONTENT_TYPE);
    } catch (e) {
      await pool.stop({ graceMs: 0 });
      throw e;
    }
  }
  let stopping: Promise<void> | undefined;
  return {
    pool,
    metricsPort: metrics?.port,
    stop: () =>
      (stopping ??= (async () => {
        await pool.stop();
        metrics?.server.close();
      })()),
  };
}
