// The scale-out benchmark's clients, in a process of their own (so that their CPU is not auth's,
// which runs in the benchmark's main process): a closed loop of N ssh2 clients, each opening a
// whole session in turn (connect with the user certificate, exec `true`, wait for its exit,
// close) against its share of the targets, client i on target i mod the number of targets, as a
// round-robin TCP load balancer would spread them. Asked over IPC; answers over IPC.
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import ssh2 from 'ssh2';
import { parseCertificateText, parsePrivateKey } from '@portcullis/cert-core';
import type { SigningPrivateKey } from '@portcullis/cert-core';
import { UPSTREAM_HOST_KEY_ALGORITHMS, certificateIdentity } from '@portcullis/proxy';
import { CIPHER } from './proxy-system.js';

export interface ChurnTarget {
  readonly port: number;
  /** `root%web01.bench.test` through a proxy, `root` straight to sshd. */
  readonly username: string;
}

export interface ChurnRequest {
  readonly type: 'run';
  readonly targets: readonly ChurnTarget[];
  readonly concurrency: number;
  readonly warmupMs: number;
  readonly durationMs: number;
}

export type ChurnMessage =
  | { readonly type: 'ready' }
  /** The measured window opens or closes: the parent samples CPU counters at both edges. */
  | { readonly type: 'window'; readonly edge: 'open' | 'close' }
  | {
      readonly type: 'done';
      readonly completed: number;
      readonly errors: number;
      readonly firstError: string | undefined;
      readonly windowMs: number;
      /** Session times (connect to close) of the sessions completed in the window, sorted, ms. */
      readonly latencies: readonly number[];
    };

const identity = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as { readonly key: string; readonly certificate: string };
const key = parsePrivateKey(identity.key).key as SigningPrivateKey;
const cert = parseCertificateText(identity.certificate).cert;
const send = (m: ChurnMessage): void => void process.send?.(m);

/** One whole session; resolves when the channel and the connection have closed. */
function session(t: ChurnTarget): Promise<void> {
  return new Promise((resolve, reject) => {
    const client = new ssh2.Client();
    let settled = false;
    const finish = (e?: Error): void => {
      if (settled) return;
      settled = true;
      client.end();
      if (e) reject(e);
      else resolve();
    };
    client.on('error', (e) => finish(e));
    client.on('close', () => finish(new Error('the connection closed before `true` exited')));
    client.once('ready', () => {
      client.exec('true', (err, channel) => {
        if (err) return finish(err);
        let code: number | undefined;
        channel.on('exit', (c: number | null) => (code = c ?? undefined));
        channel.resume();
        channel.stderr.resume();
        channel.once('close', () => finish(code === 0 ? undefined : new Error(`\`true\` exited ${String(code)} on port ${t.port}`)));
      });
    });
    client.connect({
      host: '127.0.0.1',
      port: t.port,
      username: t.username,
      authHandler: [{ type: 'publickey', username: t.username, key: certificateIdentity(key, cert) }] as unknown as ssh2.ConnectConfig['authHandler'] & object,
      // Host key checking is what ssh's paths in bench/proxy.ts measure; every hop presents a certificate.
      hostVerifier: () => true,
      algorithms: { cipher: [CIPHER], serverHostKey: [...UPSTREAM_HOST_KEY_ALGORITHMS] },
      readyTimeout: 60_000,
      keepaliveInterval: 0,
    });
  });
}

async function run(r: ChurnRequest): Promise<void> {
  const start = performance.now();
  const open = start + r.warmupMs;
  const close = open + r.durationMs;
  let completed = 0;
  let errors = 0;
  let firstError: string | undefined;
  const latencies: number[] = [];
  const timers = [setTimeout(() => send({ type: 'window', edge: 'open' }), r.warmupMs), setTimeout(() => send({ type: 'window', edge: 'close' }), r.warmupMs + r.durationMs)];
  const client = async (i: number): Promise<void> => {
    const t = r.targets[i % r.targets.length]!;
    while (performance.now() < close) {
      const t0 = performance.now();
      try {
        await session(t);
        const t1 = performance.now();
        if (t1 >= open && t1 <= close) {
          completed++;
          latencies.push(t1 - t0);
        }
      } catch (e) {
        errors++;
        firstError ??= e instanceof Error ? e.message : String(e);
      }
    }
  };
  await Promise.all(Array.from({ length: r.concurrency }, (_, i) => client(i)));
  // Sessions still open at the close finish first (not counted); the close edge has been sent.
  for (const t of timers) clearTimeout(t);
  send({ type: 'done', completed, errors, firstError, windowMs: r.durationMs, latencies: latencies.sort((a, b) => a - b) });
}

process.on('message', (m: ChurnRequest) => {
  if (m.type === 'run') void run(m);
});
process.on('disconnect', () => process.exit(0));
send({ type: 'ready' });
