// The proxy under benchmark, alone in its process: real HttpAuthority to auth, the enrolled
// host key, no recording tap (the relay is what is measured) unless the config asks for one
// (the soak). Over IPC it answers memory questions and takes a CPU profile of a window (what
// --cpu-prof records, without the start-up and shutdown around it); SIGTERM stops it cleanly.
import { readFileSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { parseCertificateText, parsePrivateKey } from '@portcullis/cert-core';
import type { SigningPrivateKey } from '@portcullis/cert-core';
import { Redis } from 'ioredis';
import { HttpAuthority, nativeCryptoAvailable, startProxy, startSessionRecording } from '@portcullis/proxy';

export interface ProxyChildConfig {
  readonly url: string;
  readonly fingerprint: string;
  readonly credential: string;
  readonly hostKeys: readonly { readonly privateKey: string; readonly certificate: string }[];
  readonly ports: Readonly<Record<string, number>>;
  readonly listenPort: number;
  /** Record every session to this Redis (spooling to `spoolDir`), as the proxy service does. */
  readonly recording?: { readonly redisUrl: string; readonly spoolDir: string };
}

export type ProxyChildMessage =
  | { readonly type: 'listening'; readonly port: number; readonly nativeCrypto: boolean }
  | { readonly type: 'memory'; readonly id: number; readonly usage: NodeJS.MemoryUsage }
  | { readonly type: 'profiled'; readonly id: number; readonly path: string };

const config = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as ProxyChildConfig;
const authority = new HttpAuthority({
  url: config.url,
  fingerprint: config.fingerprint,
  credential: config.credential,
  dialAddress: (h) => ({ address: '127.0.0.1', port: config.ports[h.name] ?? 1 }),
});
// The recording engine the proxy service runs, unsigned (no signature service here).
const redis = config.recording === undefined ? undefined : new Redis(config.recording.redisUrl, { maxRetriesPerRequest: 1 });
const recording =
  config.recording === undefined || redis === undefined
    ? undefined
    : await startSessionRecording({ redis, spoolDir: config.recording.spoolDir, log: (level, m) => level !== 'info' && process.stderr.write(`proxy recording ${level}: ${m}\n`) });
const proxy = await startProxy({
  ...(recording === undefined ? {} : { tap: recording.tap }),
  authority,
  hostKeys: config.hostKeys.map((k) => ({ privateKey: parsePrivateKey(k.privateKey).key as SigningPrivateKey, certificate: parseCertificateText(k.certificate).cert })),
  listen: { host: '127.0.0.1', port: config.listenPort },
  log: (level, message) => {
    if (level !== 'info') process.stderr.write(`proxy ${level}: ${message}\n`);
  },
  name: 'proxy.bench.test',
  // The load generator opens hundreds of sessions from one address: no slow-down for it.
  throttle: { baseDelayMs: 0, maxDelayMs: 0 },
});

const send = (m: ProxyChildMessage): void => void process.send?.(m);
let inspector: Session | undefined;
process.on('message', (m: { type?: string; id?: number; gc?: boolean; path?: string }) => {
  if (m.type === 'memory') {
    if (m.gc === true) (globalThis as { gc?: () => void }).gc?.();
    send({ type: 'memory', id: m.id ?? 0, usage: process.memoryUsage() });
  } else if (m.type === 'profile-start') {
    inspector = new Session();
    inspector.connect();
    void inspector
      .post('Profiler.enable')
      .then(() => inspector!.post('Profiler.start'))
      .then(() => send({ type: 'profiled', id: m.id ?? 0, path: '' }));
  } else if (m.type === 'profile-stop' && inspector !== undefined) {
    const session = inspector;
    inspector = undefined;
    void session.post('Profiler.stop').then(({ profile }) => {
      writeFileSync(m.path!, JSON.stringify(profile));
      session.disconnect();
      send({ type: 'profiled', id: m.id ?? 0, path: m.path! });
    });
  }
});
process.once('SIGTERM', () => {
  void proxy
    .stop({ graceMs: 0 })
    .then(() => recording?.stop())
    .then(() => redis?.quit())
    .finally(() => authority.close())
    .finally(() => process.exit(0));
});
send({ type: 'listening', port: proxy.port, nativeCrypto: nativeCryptoAvailable() });
