// Soak (issue 9; not CI): steady session churn through one proxy for --minutes (pcsh bench's
// open-loop engine at a modest rate, exec and pty sessions alternating) plus a few long-lived
// pty sessions printing a line a second, every session recorded to Redis. Every --interval
// seconds it samples the proxy's and auth's RSS, heap (after a full GC) and open fds
// (/proc/PID/fd), each in its own process; at the end it fits a line through the second half
// of each series and fails when RSS or heap grew more than 10% or fds more than 20.
// Writes bench/out/soak.csv and bench/out/soak.md.
// Run: npm run soak -- --minutes 60   (--rate 2 --long 5 --interval 10)
import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import type ssh2 from 'ssh2';
import { judgeFlat, runOpenLoop, runSession, summarizeRun, formatReport, type FlatLimit, type FlatVerdict, type Point } from '../packages/cli/src/pcsh/bench/index.js';
import { dialDirect, type DialIdentity } from './lib/dial.js';
import { openFds, rssBytes } from './lib/proc-sample.js';
import { OUT_DIR } from './lib/results.js';
import { startBenchSystem } from './lib/proxy-system.js';

const { values: args } = parseArgs({
  options: {
    minutes: { type: 'string', default: '60' },
    rate: { type: 'string', default: '2' },
    long: { type: 'string', default: '5' },
    interval: { type: 'string', default: '10' },
  },
});
const MINUTES = Number(args.minutes);
const RATE = Number(args.rate);
const LONG = Number(args.long);
const INTERVAL_S = Number(args.interval);
const MiB = 1024 * 1024;
const LIMITS: Record<'rss' | 'heap' | 'fds', FlatLimit> = { rss: { maxRelative: 0.1 }, heap: { maxRelative: 0.1 }, fds: { maxAbsolute: 20 } };

interface Sample {
  readonly t: number;
  readonly sessions: number;
  readonly failed: number;
  readonly proxy: { rss: number; heap: number; fds: number };
  readonly auth: { rss: number; heap: number; fds: number };
}

/** A pty shell printing a line a second for as long as it is held. */
async function longSession(dial: () => Promise<ssh2.Client>): Promise<{ bytes(): number; close(): void; closed: Promise<void> }> {
  const client = await dial();
  const closed = new Promise<void>((r) => client.once('close', () => r()));
  client.on('error', () => {});
  const ch = await new Promise<ssh2.ClientChannel>((resolve, reject) => client.shell({ term: 'xterm', rows: 40, cols: 120 }, (e, c) => (e ? reject(e) : resolve(c))));
  let bytes = 0;
  ch.on('data', (b: Buffer) => (bytes += b.length));
  ch.write('while :; do date; ls /; sleep 1; done\n');
  return { bytes: () => bytes, close: () => client.end(), closed };
}

const sys = await startBenchSystem({ authProcess: true });
let code = 0;
try {
  const proxy = await sys.startProxy({ recording: true });
  const auth = sys.authProcess!;
  const id: DialIdentity = { key: sys.userKey, cert: sys.userCert };
  const dial = (): Promise<ssh2.Client> => dialDirect(id, proxy.port, 'root%web01.bench.test');
  const t0 = performance.now();
  let sessions = 0;
  let failed = 0;
  const samples: Sample[] = [];
  const sample = async (): Promise<void> => {
    const [pm, am] = await Promise.all([proxy.memory(true), auth.memory()]);
    samples.push({
      t: (performance.now() - t0) / 1000,
      sessions,
      failed,
      proxy: { rss: rssBytes(proxy.pid) ?? 0, heap: pm.heapUsed, fds: openFds(proxy.pid) ?? 0 },
      auth: { rss: rssBytes(auth.pid) ?? 0, heap: am.heapUsed, fds: openFds(auth.pid) ?? 0 },
    });
    const s = samples[samples.length - 1]!;
    process.stderr.write(
      `${s.t.toFixed(0).padStart(5)} s  ${sessions} sessions (${failed} failed)  proxy ${(s.proxy.rss / MiB).toFixed(1)} MiB rss, ${(s.proxy.heap / MiB).toFixed(1)} MiB heap, ${s.proxy.fds} fds  auth ${(s.auth.rss / MiB).toFixed(1)} MiB, ${(s.auth.heap / MiB).toFixed(1)} MiB, ${s.auth.fds} fds\n`,
    );
  };

  const long = await Promise.all(Array.from({ length: LONG }, () => longSession(dial)));
  await sample();
  const sampler = setInterval(() => void sample(), INTERVAL_S * 1000);
  let n = 0;
  const churn = await runOpenLoop({
    ratePerSecond: RATE,
    durationMs: MINUTES * 60_000,
    run: (opened) => runSession({ dial, command: 'echo soak $$; ls / > /dev/null', interactive: n++ % 2 === 1 }, opened),
    onOutcome: (o) => {
      sessions++;
      if (o.error !== undefined) failed++;
    },
  });
  clearInterval(sampler);
  const longBytes = long.map((l) => l.bytes());
  await sleep(3000);
  const stillPrinting = long.filter((l, i) => l.bytes() > longBytes[i]!).length;
  for (const l of long) l.close();
  await Promise.all(long.map((l) => l.closed));
  await sleep(2000);
  await sample();

  const report = summarizeRun(churn.outcomes, { requestedRate: RATE, elapsedMs: churn.elapsedMs });
  const verdicts: { what: string; v: FlatVerdict; unit: string; scale: number }[] = [];
  for (const p of ['proxy', 'auth'] as const) {
    for (const m of ['rss', 'heap', 'fds'] as const) {
      // The last sample is after the long sessions closed: a level the run never held, not trend.
      const series: Point[] = samples.slice(0, -1).map((s) => ({ t: s.t, v: s[p][m] }));
      const scale = m === 'fds' ? 1 : MiB;
      verdicts.push({ what: `${p} ${m}`, v: judgeFlat(series, LIMITS[m]), unit: m === 'fds' ? 'fds' : 'MiB', scale });
    }
  }
  const flat = verdicts.every((x) => x.v.flat) && stillPrinting === LONG;
  code = flat ? 0 : 1;

  mkdirSync(OUT_DIR, { recursive: true });
  const csv = join(OUT_DIR, 'soak.csv');
  writeFileSync(
    csv,
    [
      't_s,sessions,failed,proxy_rss_bytes,proxy_heap_bytes,proxy_fds,auth_rss_bytes,auth_heap_bytes,auth_fds',
      ...samples.map((s) => [s.t.toFixed(1), s.sessions, s.failed, s.proxy.rss, s.proxy.heap, s.proxy.fds, s.auth.rss, s.auth.heap, s.auth.fds].join(',')),
    ].join('\n') + '\n',
  );
  const f = (x: number, scale: number): string => (scale === 1 ? x.toFixed(0) : (x / scale).toFixed(1));
  const first = samples[0]!;
  const last = samples[samples.length - 1]!;
  const summary = [
    `# Soak: ${MINUTES} min, ${RATE} sessions/s churn + ${LONG} long-lived pty sessions, recordings on`,
    '',
    `Command: npm run soak -- --minutes ${MINUTES} --rate ${RATE} --long ${LONG} --interval ${INTERVAL_S}`,
    `Verdict: ${flat ? 'FLAT' : 'NOT FLAT'} (second-half least-squares growth; limits RSS/heap 10%, fds 20)`,
    `Long-lived sessions still printing at the end: ${stillPrinting} of ${LONG}`,
    '',
    '| series | fitted start of 2nd half | fitted end | growth | verdict |',
    '|---|---|---|---|---|',
    ...verdicts.map((x) => `| ${x.what} | ${f(x.v.from, x.scale)} ${x.unit} | ${f(x.v.to, x.scale)} ${x.unit} | ${f(x.v.growth, x.scale)} ${x.unit} (${(x.v.relative * 100).toFixed(1)}%) | ${x.v.flat ? 'flat' : x.v.reason} |`),
    '',
    `First sample: proxy ${f(first.proxy.rss, MiB)} MiB RSS, ${first.proxy.fds} fds; auth ${f(first.auth.rss, MiB)} MiB, ${first.auth.fds} fds.`,
    `After all sessions closed: proxy ${f(last.proxy.rss, MiB)} MiB RSS, ${f(last.proxy.heap, MiB)} MiB heap, ${last.proxy.fds} fds; auth ${f(last.auth.rss, MiB)} MiB, ${f(last.auth.heap, MiB)} MiB, ${last.auth.fds} fds.`,
    '',
    'Churn (pcsh bench engine):',
    '',
    '```',
    formatReport(report).trimEnd(),
    '```',
    '',
    `Samples every ${INTERVAL_S} s: ${csv}`,
    '',
  ].join('\n');
  writeFileSync(join(OUT_DIR, 'soak.md'), summary);
  process.stdout.write(summary);
} finally {
  await sys.stop();
}
process.exit(code);
