/*
 * How many browser-terminal sessions one gateway holds, and the keystroke echo latency under
 * that load (issue 7's goal: 500 sessions, p99 under 50 ms). No browser: N WebSockets from the
 * ws client speak portcullis.terminal.v1 to one gateway, whose session engine dials one sshd
 * (enrolled through auth) for each and records every session into redis-server, as in
 * production. Each session then types one key every INTERVAL ms; the latency of a key is the
 * time from sending its byte to the first output frame after it (the shell's echo, which went
 * gateway -> engine -> sshd -> pty -> back, through the recorder). The clients run in a child
 * process, so the gateway's thread is not also the load generator's.
 *
 *   npm run bench:web -- [sessions=500] [seconds=20] [interval_ms=200]
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { WebSocket } from 'ws';
import { TERMINAL_PATH, TERMINAL_PROTOCOL, parseTerminalServerMessage } from '../packages/web/shared/terminal-protocol.js';
import { signInErin, startTerminalWorld } from '../packages/web/test/terminal-world.js';
import type { Row } from './lib/measure.js';
import { saveResults } from './lib/results.js';

const CLIENT = process.argv[2] === '--clients';
const args = CLIENT ? process.argv.slice(3) : process.argv.slice(2);
const SESSIONS = Number(args[0] ?? 500);
const SECONDS = Number(args[1] ?? 20);
const INTERVAL_MS = Number(args[2] ?? 200);

/** What the client process reports. */
interface ClientReport {
  readonly opened: number;
  readonly openSeconds: number;
  readonly failures: readonly string[];
  readonly latencies: readonly number[];
  readonly unanswered: number;
}
/** Sessions being opened at once: sshd's MaxStartups and auth's issuance pace the rest. */
const OPENING = 16;

interface Session {
  readonly ws: WebSocket;
  /** Sent-at of the key whose echo is awaited. */
  waiting: number | undefined;
  typed: number;
}

function openSession(target: { url: string; cookie: string }, latencies: number[]): Promise<Session> {
  const cookie = target.cookie;
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${target.url.replace('https:', 'wss:')}${TERMINAL_PATH}`, TERMINAL_PROTOCOL, {
      headers: { cookie, origin: target.url },
      // The gateway's generated certificate on loopback; the browser tests pin it.
      rejectUnauthorized: false,
      perMessageDeflate: false,
    });
    const session: Session = { ws, waiting: undefined, typed: 0 };
    let ready = false;
    let prompt: NodeJS.Timeout | undefined;
    ws.on('open', () => ws.send(JSON.stringify({ type: 'open', host: 'web01', login: 'root', cols: 120, rows: 40 })));
    ws.on('message', (data, binary) => {
      if (binary) {
        if (!ready) {
          // The shell's prompt: the session is usable once output pauses.
          clearTimeout(prompt);
          prompt = setTimeout(() => {
            ready = true;
            resolve(session);
          }, 100);
          return;
        }
        if (session.waiting !== undefined) {
          latencies.push(performance.now() - session.waiting);
          session.waiting = undefined;
        }
        return;
      }
      const m = parseTerminalServerMessage(String(data));
      if (m?.type === 'close') reject(new Error(`bench: the terminal closed: ${m.reason}`));
      if (m?.type === 'mfa') reject(new Error('bench: the role asks for a second factor per session'));
    });
    ws.on('error', reject);
    ws.on('close', (code, reason) => {
      if (!ready) reject(new Error(`bench: closed ${code} ${reason.toString()}`));
    });
  });
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** The load generator: opens the sessions, types, and reports to the parent. */
async function clients(target: { url: string; cookie: string }): Promise<ClientReport> {
  const latencies: number[] = [];
  const sessions: Session[] = [];
  const failures: string[] = [];
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: OPENING }, async () => {
      while (next < SESSIONS) {
        next++;
        try {
          sessions.push(await openSession(target, latencies));
        } catch (e) {
          failures.push(e instanceof Error ? e.message : String(e));
        }
      }
    }),
  );
  const openSeconds = (performance.now() - t0) / 1000;
  process.send?.({ progress: `opened ${sessions.length} of ${SESSIONS} terminal sessions in ${openSeconds.toFixed(1)} s; typing for ${SECONDS} s` });
  // Each session sends one key per interval, phase-shifted so the keys spread out.
  const timers: NodeJS.Timeout[] = [];
  sessions.forEach((s, i) =>
    timers.push(
      setTimeout(() => {
        timers.push(
          setInterval(() => {
            if (s.waiting !== undefined || s.ws.readyState !== WebSocket.OPEN) return;
            // Ctrl+U now and then keeps the line short; its echo is not measured.
            const key = ++s.typed % 50 === 0 ? '\x15' : 'a';
            s.waiting = key === 'a' ? performance.now() : undefined;
            s.ws.send(Buffer.from(key));
          }, INTERVAL_MS),
        );
      }, (i * INTERVAL_MS) / Math.max(1, sessions.length)),
    ),
  );
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  for (const t of timers) clearInterval(t);
  const unanswered = sessions.filter((s) => s.waiting !== undefined).length;
  for (const s of sessions) s.ws.close(1000, 'bench done');
  return { opened: sessions.length, openSeconds, failures, latencies, unanswered };
}

async function main(): Promise<void> {
  const w = await startTerminalWorld({ sessionMfa: false, sshdConfig: ['MaxStartups 100:30:200', 'MaxSessions 10'] });
  try {
    const cookie = await signInErin(w);
    const child = fork(fileURLToPath(import.meta.url), ['--clients', String(SESSIONS), String(SECONDS), String(INTERVAL_MS)], {
      execArgv: ['--import', 'tsx'],
      env: { ...process.env, BENCH_TARGET: JSON.stringify({ url: w.f.info.url, cookie }) },
    });
    const report = await new Promise<ClientReport>((resolve, reject) => {
      child.on('message', (m: { progress?: string; report?: ClientReport }) => {
        if (m.progress !== undefined) {
          const engineRss = process.memoryUsage().rss;
          console.log(`${m.progress} (gateway + engine + auth process RSS ${(engineRss / 1024 / 1024).toFixed(0)} MiB, ${w.engine.live} live web sessions)`);
        }
        if (m.report !== undefined) resolve(m.report);
      });
      child.on('exit', (code) => reject(new Error(`bench: the client process exited with ${code}`)));
    });
    const sorted = [...report.latencies].sort((a, b) => a - b);
    const f = (v: number): string => `${v.toFixed(1)} ms`;
    if (report.failures.length > 0) console.log(`${report.failures.length} sessions failed to open: ${[...new Set(report.failures)].slice(0, 3).join(' | ')}`);
    console.log(
      `${report.opened} concurrent sessions, ${sorted.length} keystrokes in ${SECONDS} s (one per ${INTERVAL_MS} ms per session): ` +
        `echo latency p50 ${f(percentile(sorted, 50))}, p90 ${f(percentile(sorted, 90))}, p99 ${f(percentile(sorted, 99))}, max ${f(sorted.at(-1) ?? NaN)}; ` +
        `${report.unanswered} unanswered at the end. Goal: 500 sessions, p99 < 50 ms`,
    );
    const latency = (p: number): Row => ({ what: `keystroke echo p${p}, ${report.opened} sessions`, ours: percentile(sorted, p), unit: 'ms', higherIsBetter: false, anchors: [] });
    saveResults({
      suite: 'web',
      title: 'web: browser-terminal sessions on one gateway, keystroke echo latency',
      command: `npm run bench:web -- ${SESSIONS} ${SECONDS} ${INTERVAL_MS}`,
      rows: [
        latency(50),
        latency(90),
        latency(99),
        { what: `time to open ${report.opened} sessions, ${OPENING} at a time`, ours: report.openSeconds, unit: 's', higherIsBetter: false, anchors: [] },
      ],
      notes: [
        `${report.opened} of ${SESSIONS} WebSocket terminals (no browser) through one gateway to one sshd, recorded into redis-server; one key per ${INTERVAL_MS} ms per session for ${SECONDS} s, ${sorted.length} keystrokes, ${report.unanswered} unanswered at the end.`,
        'No anchor: the goal is 500 sessions with p99 under 50 ms; the sshd targets, auth and the load generator share the same cores.',
        ...(report.failures.length > 0 ? [`${report.failures.length} sessions failed to open: ${[...new Set(report.failures)].slice(0, 3).join(' | ')}`] : []),
      ],
    });
  } finally {
    await w.stop();
  }
}

if (CLIENT) {
  const report = await clients(JSON.parse(process.env['BENCH_TARGET'] ?? '{}') as { url: string; cookie: string });
  process.send?.({ report }, () => process.exit(0));
} else {
  await main();
}
