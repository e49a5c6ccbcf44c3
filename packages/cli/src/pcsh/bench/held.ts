import type ssh2 from 'ssh2';
import { runOpenLoop, type OpenLoopResult } from './engine.js';

/*
 * Many sessions held open at once, each with a shell, for the concurrency benchmark and its CI
 * form. A session counts as open only when its shell has echoed a token back (so the upstream
 * connection and the shell are really there, not just the proxy's half), and as alive at the
 * end only when it echoes a second, unique token.
 */

export interface HeldShell {
  readonly client: ssh2.Client;
  /** Writes `echo <token>` to the shell; resolves once the token came back. */
  echo(token: string, timeoutMs?: number): Promise<void>;
  /** `exit` to the shell, then the connection is closed. */
  close(): void;
  /** Settles when the connection is gone. */
  readonly closed: Promise<void>;
}

/** A shell without a pty (what a held automation session looks like) on a fresh connection. */
export async function openHeldShell(dial: () => Promise<ssh2.Client>, readyToken: string, timeoutMs = 60_000): Promise<HeldShell> {
  const client = await dial();
  const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
  client.on('error', () => {});
  try {
    const channel = await new Promise<ssh2.ClientChannel>((resolve, reject) =>
      client.shell(false, (err, ch) => (err ? reject(new Error(`the proxy refused the shell: ${err.message}`)) : resolve(ch))),
    );
    let seen = '';
    const waiters = new Set<() => void>();
    let stderr = '';
    // A channel the proxy or the target ends (upstream refused, shell died) fails its echoes at once.
    const channelClosed = new Promise<void>((resolve) => channel.once('close', () => resolve()));
    channel.setEncoding('utf8');
    channel.on('data', (s: string) => {
      // Only the tail matters: tokens are short, and a held session must not grow without bound.
      seen = (seen + s).slice(-4096);
      for (const w of waiters) w();
    });
    channel.stderr.on('data', (b: Buffer) => {
      if (stderr.length < 300) stderr += b.toString('utf8');
    });
    const echo = (token: string, ms = timeoutMs): Promise<void> =>
      new Promise<void>((resolve, reject) => {
        const check = (): void => {
          if (!seen.includes(token)) return;
          waiters.delete(check);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no echo within ${ms / 1000} s`));
        }, ms);
        void Promise.race([closed, channelClosed]).then(() => {
          if (!waiters.has(check)) return;
          waiters.delete(check);
          clearTimeout(timer);
          const said = stderr.trim().split('\n')[0];
          reject(new Error(`the session closed before ${token.replace(/-\d.*$/, '')} came back${said ? `: ${said}` : ''}`));
        });
        waiters.add(check);
        channel.write(`echo ${token}\n`);
        check();
      });
    await echo(readyToken);
    return {
      client,
      echo,
      close: () => {
        channel.end('exit\n');
        client.end();
      },
      closed,
    };
  } catch (e) {
    client.end();
    throw e;
  }
}

export interface HoldOptions {
  readonly count: number;
  /** Sessions started per second while ramping (open loop). */
  readonly ratePerSecond: number;
  /** A fresh authenticated connection for session i. */
  readonly dial: (i: number) => Promise<ssh2.Client>;
  /** Sessions being set up at once, at most (sshd's MaxStartups drops beyond its own limit). */
  readonly maxSettingUp?: number;
  /** Called as each session is open (progress). */
  readonly onOpen?: (open: number) => void;
}

export interface HeldSessions {
  /** Open sessions by index (failed ones are absent). */
  readonly shells: ReadonlyMap<number, HeldShell>;
  /** Resolves when every session is open or has failed. */
  readonly ramped: Promise<void>;
  /** Echoes a unique token through every open session at once; resolves with the failures. */
  checkAlive(timeoutMs?: number): Promise<string[]>;
  /** Closes every session; resolves with the ramp's outcomes (set-up latency, failures). */
  closeAll(): Promise<OpenLoopResult>;
}

export function holdSessions(o: HoldOptions): HeldSessions {
  const shells = new Map<number, HeldShell>();
  const limit = o.maxSettingUp ?? 32;
  let settingUp = 0;
  const slotWaiters: (() => void)[] = [];
  let next = 0;
  let settled = 0;
  let rampDone: () => void = () => {};
  const ramped = new Promise<void>((r) => (rampDone = r));
  const settle = (): void => {
    if (++settled === o.count) rampDone();
  };
  let releaseAll: () => void = () => {};
  const release = new Promise<void>((r) => (releaseAll = r));
  const loop = runOpenLoop({
    ratePerSecond: o.ratePerSecond,
    durationMs: (o.count * 1000) / o.ratePerSecond,
    run: async (opened) => {
      const i = next++;
      if (settingUp >= limit) await new Promise<void>((r) => slotWaiters.push(r));
      settingUp++;
      let shell: HeldShell;
      try {
        shell = await openHeldShell(() => o.dial(i), `ready-${i}`);
      } catch (e) {
        settle();
        throw e;
      } finally {
        settingUp--;
        slotWaiters.shift()?.();
      }
      opened();
      shells.set(i, shell);
      o.onOpen?.(shells.size);
      settle();
      let releasedFirst = false;
      await Promise.race([shell.closed, release.then(() => (releasedFirst = true))]);
      shell.close();
      await shell.closed;
      if (!releasedFirst) throw new Error('the connection closed while it was held');
    },
  });
  return {
    shells,
    ramped,
    async checkAlive(timeoutMs = 60_000) {
      const results = await Promise.allSettled([...shells].map(([i, s]) => s.echo(`alive-${i}-${Date.now().toString(36)}`, timeoutMs)));
      return results.flatMap((r) => (r.status === 'rejected' ? [r.reason instanceof Error ? r.reason.message : String(r.reason)] : []));
    },
    async closeAll() {
      releaseAll();
      return loop;
    },
  };
}
