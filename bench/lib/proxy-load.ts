// Many SSH sessions from one Node process (ssh2 clients with the user certificate), to load the
// proxy the way hundreds of engineers would: idle shells that only hold their connection, and
// busy ones streaming through `cat` at a fixed rate, both ways.
import ssh2 from 'ssh2';
import type { ClientChannel } from 'ssh2';
import type { Certificate, SigningPrivateKey } from '@portcullis/cert-core';
import { UPSTREAM_HOST_KEY_ALGORITHMS, certificateIdentity } from '@portcullis/proxy';
import { CIPHER } from './proxy-system.js';

export interface LoadSession {
  readonly client: ssh2.Client;
  readonly channel: ClientChannel;
  /** Bytes received back from the target so far. */
  received(): number;
  close(): void;
}

export interface SessionTarget {
  readonly port: number;
  /** `root%web01.bench.test`. */
  readonly username: string;
  readonly key: SigningPrivateKey;
  readonly cert: Certificate;
}

/** One connection with `cat` running on the target; resolves when the command started. */
export function openSession(t: SessionTarget): Promise<LoadSession> {
  return new Promise((resolve, reject) => {
    const client = new ssh2.Client();
    let received = 0;
    let settled = false;
    const fail = (e: Error): void => {
      client.end();
      if (!settled) reject(e);
      settled = true;
    };
    client.on('error', fail);
    client.once('ready', () => {
      client.exec('cat', (err, channel) => {
        if (err) return fail(err);
        // The proxy accepts exec before the target has answered (so that no early byte is
        // lost): a session counts as open once a byte has gone to `cat` and come back.
        let stderr = '';
        channel.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
        channel.once('close', () => fail(new Error(`the session closed before it echoed: ${stderr.trim()}`)));
        channel.once('data', () => {
          settled = true;
          channel.on('data', (b: Buffer) => {
            received += b.length;
          });
          resolve({ client, channel, received: () => received, close: () => client.end() });
        });
        channel.write('.');
      });
    });
    client.connect({
      host: '127.0.0.1',
      port: t.port,
      username: t.username,
      authHandler: [{ type: 'publickey', username: t.username, key: certificateIdentity(t.key, t.cert) }] as unknown as ssh2.ConnectConfig['authHandler'] & object,
      // The load generator measures the proxy, not host key checking (ssh's paths check it).
      hostVerifier: () => true,
      // The proxy presents a host certificate only.
      algorithms: { cipher: [CIPHER], serverHostKey: [...UPSTREAM_HOST_KEY_ALGORITHMS] },
      readyTimeout: 60_000,
      keepaliveInterval: 0,
    });
  });
}

/** Opens `count` sessions, `concurrency` at a time (sshd takes logins in bounded bursts). */
export async function openSessions(t: SessionTarget, count: number, concurrency = 16): Promise<LoadSession[]> {
  const out: LoadSession[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      next++;
      out.push(await openSession(t));
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return out;
}

/**
 * Writes `bytesPerSecond` to each busy session in 16 KiB chunks on a 50 ms tick, only while the
 * channel accepts more (a stalled session is not buried). Returns a stop function.
 */
export function drive(sessions: readonly LoadSession[], bytesPerSecond: number): () => void {
  const tickMs = 50;
  const perTick = Math.max(1, Math.round((bytesPerSecond * tickMs) / 1000));
  const chunk = Buffer.alloc(16 * 1024, 0x61);
  const timer = setInterval(() => {
    for (const s of sessions) {
      let left = perTick;
      while (left > 0) {
        const n = Math.min(left, chunk.length);
        if (!s.channel.write(n === chunk.length ? chunk : chunk.subarray(0, n))) break;
        left -= n;
      }
    }
  }, tickMs);
  return () => clearInterval(timer);
}
