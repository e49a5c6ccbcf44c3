import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { connectRedis } from '@portcullis/store';
import { parseCertificateText, parsePrivateKey } from '@portcullis/cert-core';
import type { SigningPrivateKey } from '@portcullis/cert-core';
import type { ProxyAuditEvent } from './audit.js';
import type { AuthorityClient } from './authority.js';
import { HttpAuthority } from './authority-http.js';
import type { ProxyHostKey } from './config.js';
import { ProxyError } from './errors.js';
import { createProxyMetrics } from './metrics.js';
import { httpSignatureService, startSessionRecording } from './recording.js';
import { WebSessionEngine } from './web-session.js';
import type { RecordingSignatureService, SessionRecording } from './recording.js';
import { startProxy, type RunningProxy } from './server.js';
import { loadProxyServiceConfig, type ProxyServiceConfig } from './service-config.js';
import {
  exportWorkerMetrics,
  listenMetrics,
  proxyWorkerPlace,
  spoolEntries,
  spoolPlacement,
  startProxyServicePrimary,
  workerCount,
  type ProxyWorkerPlace,
} from './service-workers.js';
import { runProxyWorker } from './workers.js';

export { loadProxyServiceConfig, parseProxyServiceConfig, proxyRedisConfig } from './service-config.js';
export type { ProxyRedisConfig, ProxyServiceConfig } from './service-config.js';

/*
 * The proxy as a service: node --import tsx packages/proxy/src/main.ts --config proxy.yaml
 * (`portcullis start` calls startProxyService the same way). One process: the SSH listener,
 * the recorder wiring, an optional metrics listener; or, with `workers` > 1, a primary that
 * forks that many such processes behind the one listener (service-workers.ts). Exit codes: 0 after a clean stop on
 * SIGINT/SIGTERM, 2 for a bad command line or config, 1 when the service could not start.
 */

/** What the service takes from outside the config file; tests replace auth with a stand-in. */
export interface ProxyServiceDeps {
  /** Default: auth's HTTP API with the config's url, pin and credential. */
  readonly authority?: AuthorityClient;
  /** Default: auth signs over HTTP; recordings are unsigned only when there is no auth section. */
  readonly signatures?: RecordingSignatureService;
  /** Default: one JSON line per event on stdout, for the log shipper. */
  readonly audit?: (event: ProxyAuditEvent) => void;
  readonly log?: (level: 'info' | 'warn' | 'error', message: string) => void;
  /** Set in a worker of a primary (runMain does): its own spool directory, metrics served by the primary. */
  readonly worker?: ProxyWorkerPlace;
}

export interface RunningProxyService {
  readonly proxy: RunningProxy;
  readonly recording: SessionRecording;
  /** The same engine for browser terminals (WebGateway's `terminals` when web runs in this process). */
  readonly webSessions: WebSessionEngine;
  readonly metricsPort: number | undefined;
  /** Drains sessions (drain_grace), finishes their recordings, closes Redis. */
  stop(): Promise<void>;
}

function readHostKey(k: { privateKey: string; certificate: string }): ProxyHostKey {
  try {
    const parsed = parsePrivateKey(readFileSync(k.privateKey, 'utf8'));
    const { cert } = parseCertificateText(readFileSync(k.certificate, 'utf8'), k.certificate);
    return { privateKey: parsed.key as SigningPrivateKey, certificate: cert };
  } catch (e) {
    throw new ProxyError('ERR_CONFIG', `proxy config: host key ${k.privateKey} / ${k.certificate}: ${e instanceof Error ? e.message : String(e)}`);
  }
}

function stderrLog(level: 'info' | 'warn' | 'error', message: string): void {
  process.stderr.write(`portcullis proxy ${level}: ${message}\n`);
}

export async function startProxyService(config: ProxyServiceConfig, deps: ProxyServiceDeps = {}): Promise<RunningProxyService> {
  const log = deps.log ?? stderrLog;
  const audit = deps.audit ?? ((e: ProxyAuditEvent) => void process.stdout.write(`${JSON.stringify({ audit: e })}\n`));
  const hostKeys = config.hostKeys.map(readHostKey);
  const credential = (): string => {
    if (config.auth === undefined) throw new ProxyError('ERR_CONFIG', 'proxy config: an auth section is required (url, fingerprint, credential_file)');
    try {
      return readFileSync(config.auth.credentialFile, 'utf8').trim();
    } catch (e) {
      throw new ProxyError('ERR_CONFIG', `proxy config: cannot read the service credential: ${e instanceof Error ? e.message : String(e)}`);
    }
  };
  let authority = deps.authority;
  let ownAuthority: HttpAuthority | undefined;
  if (authority === undefined) {
    ownAuthority = new HttpAuthority({ url: config.auth!.url, fingerprint: config.auth!.fingerprint, credential: credential(), log });
    authority = ownAuthority;
  }
  let signatures = deps.signatures;
  let ownSignatures: { close(): void } | undefined;
  if (signatures === undefined && config.auth !== undefined) {
    const s = httpSignatureService({ url: config.auth.url, fingerprint: config.auth.fingerprint, credential: credential() });
    ownSignatures = s;
    signatures = s;
  }
  if (signatures === undefined) log('warn', 'recordings will not be signed: no auth section in the config');

  // One failed attempt per command: the recorder has its own timeouts and falls back to the
  // spool (best effort) or ends the session (strict); ioredis keeps reconnecting behind it, and
  // follows a Sentinel failover or a Cluster's new slot owners by itself. Not waiting for ready:
  // a proxy whose Redis is away still serves, spooling best-effort recordings.
  let lastRedisError = '';
  const connection = await connectRedis(config.redis, {
    waitForReady: false,
    maxRetriesPerRequest: 1,
    onClientError: (m) => {
      if (m !== lastRedisError) log('warn', m);
      lastRedisError = m;
    },
  });
  const redis = connection.client;
  redis.on('ready', () => (lastRedisError = ''));

  const metrics = createProxyMetrics();
  if (deps.worker !== undefined) exportWorkerMetrics(metrics.registry, deps.worker.index);
  const spool = spoolPlacement(config.recording.spoolDir, deps.worker, spoolEntries(config.recording.spoolDir));
  let recording: SessionRecording | undefined;
  let metricsServer: Server | undefined;
  try {
    recording = await startSessionRecording({
      redis,
      spoolDir: spool.spoolDir,
      adoptSpoolDirs: spool.adopt,
      uploadIntervalMs: config.recording.uploadIntervalMs,
      spoolFsync: config.recording.spoolFsync,
      registry: metrics.registry,
      audit,
      log,
      ...(signatures === undefined ? {} : { signatures }),
      ...(config.recording.retentionMs === undefined ? {} : { retentionMs: config.recording.retentionMs }),
    });
    const proxy = await startProxy({
      authority,
      hostKeys,
      listen: config.listen,
      audit,
      metrics,
      tap: recording.tap,
      log,
      ...(config.name === undefined ? {} : { name: config.name }),
      timeouts: { drainGraceMs: config.drainGraceMs },
    });
    const webSessions = new WebSessionEngine({ authority, tap: recording.tap, audit, metrics, log });
    await webSessions.start();
    let metricsPort: number | undefined;
    // A worker's metrics go out through its primary's listener.
    if (config.metricsListen !== undefined && deps.worker === undefined) {
      const listening = await listenMetrics(config.metricsListen, () => metrics.text(), metrics.contentType);
      metricsServer = listening.server;
      metricsPort = listening.port;
    }
    const rec = recording;
    let stopping: Promise<void> | undefined;
    return {
      proxy,
      recording: rec,
      webSessions,
      metricsPort,
      stop: () =>
        (stopping ??= (async () => {
          await proxy.stop();
          webSessions.stop('the proxy is shutting down');
          await rec.stop();
          metricsServer?.close();
          ownAuthority?.close();
          ownSignatures?.close();
          await connection.close();
        })()),
    };
  } catch (e) {
    await recording?.stop({ graceMs: 0 });
    metricsServer?.close();
    ownAuthority?.close();
    ownSignatures?.close();
    await connection.close();
    throw e;
  }
}

const USAGE = 'usage: main.ts --config <proxy.yaml>';

/** The command line: starts the service and runs until SIGINT/SIGTERM; resolves to the exit code. */
export async function runMain(argv: readonly string[], deps: ProxyServiceDeps = {}): Promise<number> {
  let configPath: string;
  try {
    const { values } = parseArgs({ args: [...argv], options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } }, strict: true });
    if (values.help === true) {
      process.stdout.write(`${USAGE}\n`);
      return 0;
    }
    if (values.config === undefined) throw new Error('--config is required');
    configPath = values.config;
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const cannotStart = (e: unknown): number => {
    process.stderr.write(`proxy: cannot start: ${e instanceof Error ? e.message : String(e)}\n`);
    return e instanceof ProxyError && e.code === 'ERR_CONFIG' ? 2 : 1;
  };
  let config: ProxyServiceConfig;
  let place: ProxyWorkerPlace | undefined;
  try {
    config = loadProxyServiceConfig(configPath);
    place = proxyWorkerPlace();
  } catch (e) {
    return cannotStart(e);
  }
  if (place !== undefined) {
    const worker = place;
    // Answer the primary's metrics requests (empty) until the service has its registry.
    exportWorkerMetrics(undefined, worker.index);
    // runProxyWorker reports a failed start to the primary and exits the process when drained.
    await runProxyWorker(
      async () => {
        const s = await startProxyService(config, { ...deps, worker });
        return { port: s.proxy.port, stop: () => s.stop() };
      },
      { graceMs: config.drainGraceMs },
    );
    return new Promise<number>(() => {});
  }
  const count = workerCount(config.workers, availableParallelism());
  if (count > 1) return runPrimary(config, count, deps.log ?? stderrLog).catch(cannotStart);
  let service: RunningProxyService;
  try {
    service = await startProxyService(config, deps);
  } catch (e) {
    return cannotStart(e);
  }
  const { host, port } = service.proxy;
  process.stderr.write(`proxy: listening on ${host}:${port}${service.metricsPort === undefined ? '' : `, metrics on port ${service.metricsPort}`}\n`);
  return untilSignal(() => service.stop());
}

async function runPrimary(config: ProxyServiceConfig, count: number, log: (level: 'info' | 'warn' | 'error', message: string) => void): Promise<number> {
  const primary = await startProxyServicePrimary(config, count, log);
  const metrics = primary.metricsPort === undefined ? '' : `, metrics on port ${primary.metricsPort}`;
  process.stderr.write(`proxy: listening on ${config.listen.host}:${primary.pool.port} with ${count} workers${metrics}\n`);
  return untilSignal(() => primary.stop());
}

/** Runs until SIGINT/SIGTERM, then `stop`; resolves to the exit code. */
function untilSignal(stop: () => Promise<void>): Promise<number> {
  return new Promise<number>((resolveExit) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (stopping) return;
      stopping = true;
      process.stderr.write(`proxy: ${signal}: draining sessions\n`);
      stop().then(
        () => resolveExit(0),
        (e: unknown) => {
          process.stderr.write(`proxy: stop failed: ${String(e)}\n`);
          resolveExit(1);
        },
      );
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  process.exitCode = await runMain(process.argv.slice(2));
}
