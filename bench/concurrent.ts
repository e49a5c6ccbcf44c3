// Concurrency benchmark (issue 9): N sessions (default 1,000) held open at once through one
// proxy to a real sshd, each a real client connection with its own upstream connection and a
// shell, every one proven alive by echoing a unique token once all are open. Reports the
// proxy's RSS, heap, open fds and CPU (its own process, /proc/PID), set-up latency percentiles
// while ramping (open loop, pcsh bench's engine) and failures; then the same sessions through
// an OpenSSH bastion (ssh -J through a stock sshd) as the anchor for memory per session.
// Run: npm run bench:concurrent -- [--sessions 1000] [--rate 5] [--skip-anchor]
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { holdSessions, summarizeRun, type BenchReport } from '../packages/cli/src/pcsh/bench/index.js';
import { dialDirect, dialThroughBastion, type DialIdentity } from './lib/dial.js';
import { fmt, table, type Row } from './lib/measure.js';
import { processCpuMs } from './lib/proc-cpu.js';
import { openFds, processTree, rssBytes, sshdPid, treeCpuMs, treePssBytes } from './lib/proc-sample.js';
import { saveResults } from './lib/results.js';
import { startBenchSystem } from './lib/proxy-system.js';
import type ssh2 from 'ssh2';

const { values: args } = parseArgs({
  options: {
    sessions: { type: 'string', default: '1000' },
    // About what this 2-core machine sustains (proxy, sshd and clients share it): above it the
    // ramp takes no less time, and the open-loop set-up latency only measures the queue.
    rate: { type: 'string', default: '5' },
    'setting-up': { type: 'string', default: '32' },
    'hold-seconds': { type: 'string', default: '10' },
    'skip-anchor': { type: 'boolean', default: false },
  },
});
const N = Number(args.sessions);
const RATE = Number(args.rate);
const HOLD_S = Number(args['hold-seconds']);
const MiB = 1024 * 1024;

interface Run {
  readonly report: BenchReport;
  readonly open: number;
  readonly dead: readonly string[];
  readonly rampSeconds: number;
}

/** Ramps N held sessions through `dial`, checks every one is alive, closes them all. */
async function hold(label: string, dial: () => Promise<ssh2.Client>, during: { afterRamp(): Promise<void> }): Promise<Run> {
  const t0 = performance.now();
  let lastPrint = 0;
  const held = holdSessions({
    count: N,
    ratePerSecond: RATE,
    maxSettingUp: Number(args['setting-up']),
    dial,
    onOpen: (n) => {
      if (n - lastPrint >= N / 10) {
        lastPrint = n;
        process.stderr.write(`${label}: ${n} open after ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
      }
    },
  });
  await held.ramped;
  const rampSeconds = (performance.now() - t0) / 1000;
  const open = held.shells.size;
  const dead = await held.checkAlive(60_000);
  process.stderr.write(`${label}: ${open} of ${N} open in ${rampSeconds.toFixed(1)} s, ${open - dead.length} echoed their token\n`);
  await during.afterRamp();
  const { outcomes, elapsedMs } = await held.closeAll();
  return { report: summarizeRun(outcomes, { requestedRate: RATE, elapsedMs }), open, dead, rampSeconds };
}

const fdsOfTree = (pid: number): number => processTree(pid).reduce((s, p) => s + (openFds(p) ?? 0), 0);

const sys = await startBenchSystem();
try {
  const proxy = await sys.startProxy();
  const id: DialIdentity = { key: sys.userKey, cert: sys.userCert };
  // Warm-up: JIT, keep-alive to auth, sshd's first fork.
  const warm = holdSessions({ count: 10, ratePerSecond: 10, dial: () => dialDirect(id, proxy.port, 'root%web01.bench.test') });
  await warm.ramped;
  await warm.closeAll();
  await sleep(1000);

  const base = { mem: await proxy.memory(true), rss: rssBytes(proxy.pid)!, fds: openFds(proxy.pid)!, cpu: processCpuMs(proxy.pid)! };
  let at: { heap: number; rss: number; fds: number; rampCpuMs: number; holdCpuPct: number } | undefined;
  const ours = await hold('proxy', () => dialDirect(id, proxy.port, 'root%web01.bench.test'), {
    async afterRamp() {
      const rampCpuMs = processCpuMs(proxy.pid)! - base.cpu;
      const c0 = processCpuMs(proxy.pid)!;
      await sleep(HOLD_S * 1000);
      const holdCpuPct = ((processCpuMs(proxy.pid)! - c0) / (HOLD_S * 1000)) * 100;
      const mem = await proxy.memory(true);
      at = { heap: mem.heapUsed, rss: rssBytes(proxy.pid)!, fds: openFds(proxy.pid)!, rampCpuMs, holdCpuPct };
    },
  });
  // Every session is closed on the client side; the proxy's descriptors must come back to where
  // they started (a few more for pooled connections to auth and redis), or something leaked.
  const closedAt = performance.now();
  while (openFds(proxy.pid)! > base.fds + 10 && performance.now() - closedAt < 120_000) await sleep(500);
  const drainSeconds = (performance.now() - closedAt) / 1000;
  const after = { rss: rssBytes(proxy.pid)!, fds: openFds(proxy.pid)!, heap: (await proxy.memory(true)).heapUsed };
  if (after.fds > base.fds + 10) process.stderr.write(`proxy: ${after.fds} fds ${drainSeconds.toFixed(0)} s after every session closed (${base.fds} before): a descriptor leak\n`);
  await proxy.stop();

  let anchor: { run: Run; pssPerSession: number; pss: number; fds: number; rampCpuMs: number } | undefined;
  if (!args['skip-anchor']) {
    const bastionPid = sshdPid(sys.bastion.configPath);
    const pss0 = treePssBytes(bastionPid).bytes;
    const cpu0 = treeCpuMs(bastionPid);
    let measured: { pss: number; fds: number; rampCpuMs: number } | undefined;
    const run = await hold('bastion', () => dialThroughBastion(id, sys.bastion.port, sys.target.port, 'root'), {
      async afterRamp() {
        // Session processes still hold the CPU they used for set-up; exited ones are not counted.
        const rampCpuMs = treeCpuMs(bastionPid) - cpu0;
        await sleep(HOLD_S * 1000);
        measured = { pss: treePssBytes(bastionPid).bytes, fds: fdsOfTree(bastionPid), rampCpuMs };
      },
    });
    anchor = { run, pss: measured!.pss, fds: measured!.fds, rampCpuMs: measured!.rampCpuMs, pssPerSession: (measured!.pss - pss0) / Math.max(1, run.open) };
  }

  const m = at!;
  const alive = ours.open - ours.dead.length;
  const perSessionKiB = (m.rss - base.rss) / Math.max(1, ours.open) / 1024;
  const a = (v: number | undefined): Row['anchors'] => [{ name: 'OpenSSH bastion', value: v }];
  const rows: Row[] = [
    { what: `sessions alive at once (of ${N})`, ours: alive, unit: 'sessions', higherIsBetter: true, anchors: a(anchor && anchor.run.open - anchor.run.dead.length) },
    { what: 'memory per held session (proxy RSS; bastion sshd PSS)', ours: perSessionKiB, unit: 'KiB', higherIsBetter: false, anchors: a(anchor && anchor.pssPerSession / 1024) },
    { what: `proxy RSS with ${alive} sessions (bastion: its processes' PSS)`, ours: m.rss / MiB, unit: 'MiB', higherIsBetter: false, anchors: a(anchor && anchor.pss / MiB) },
    { what: `proxy heap used with ${alive} sessions`, ours: m.heap / MiB, unit: 'MiB', higherIsBetter: false, anchors: a(undefined) },
    { what: `open fds with ${alive} sessions`, ours: m.fds, unit: 'fds', higherIsBetter: false, anchors: a(anchor?.fds) },
    { what: 'CPU per session set-up (ramp CPU / sessions)', ours: m.rampCpuMs / Math.max(1, ours.open), unit: 'ms', higherIsBetter: false, anchors: a(anchor && anchor.rampCpuMs / Math.max(1, anchor.run.open)) },
    { what: `proxy CPU holding ${alive} idle sessions`, ours: m.holdCpuPct, unit: '% of a core', higherIsBetter: false, anchors: a(undefined) },
    { what: `sessions opened per second while ramping (asked ${RATE}/s)`, ours: ours.open / ours.rampSeconds, unit: '/s', higherIsBetter: true, anchors: a(anchor && anchor.run.open / anchor.run.rampSeconds) },
    { what: `set-up p50 while ramping at ${RATE}/s`, ours: ours.report.setup.p50, unit: 'ms', higherIsBetter: false, anchors: a(anchor?.run.report.setup.p50) },
    { what: 'set-up p90 while ramping', ours: ours.report.setup.p90, unit: 'ms', higherIsBetter: false, anchors: a(anchor?.run.report.setup.p90) },
    { what: 'set-up p99 while ramping', ours: ours.report.setup.p99, unit: 'ms', higherIsBetter: false, anchors: a(anchor?.run.report.setup.p99) },
    { what: 'set-up max while ramping', ours: ours.report.setup.max, unit: 'ms', higherIsBetter: false, anchors: a(anchor?.run.report.setup.max) },
    { what: 'failed sessions', ours: ours.report.failed, unit: 'sessions', higherIsBetter: false, anchors: a(anchor?.run.report.failed) },
  ];
  const failures = [...ours.report.failures.map((f) => `proxy: ${f.count} × ${f.message}`), ...(anchor?.run.report.failures ?? []).map((f) => `bastion: ${f.count} × ${f.message}`)];
  const notes = [
    `${N} real client connections, each with its own upstream connection to one sshd (MaxStartups 200:30:400) and a shell without a pty; ramp open loop at ${RATE}/s with at most ${args['setting-up']} being set up at once; set-up = connect, auth, shell, first echo back.`,
    `Alive = every open session echoed a unique token after all were open. Memory after a full GC in the proxy, ${HOLD_S} s into the hold; idle CPU over those ${HOLD_S} s.`,
    'Set-up latency counts from when a session was due (open loop): when the machine opens sessions slower than asked, it is mostly the queue, for both.',
    'The bastion anchor is ssh -J through a stock sshd (forwardOut + the target connection inside it); its memory is the summed PSS of the bastion sshd and its session processes (shared pages divided, so not double-counted), the proxy\'s is its one process\'s RSS; its CPU counts only processes still alive (the pre-auth children that exited are missing), so it is low.',
    `After closing all: proxy fds back to ${after.fds} in ${drainSeconds.toFixed(1)} s (${base.fds} before the run); RSS ${fmt(after.rss / MiB)} MiB, heap ${fmt(after.heap / MiB)} MiB (before: ${fmt(base.rss / MiB)} MiB, ${fmt(base.mem.heapUsed / MiB)} MiB).`,
    ...(failures.length > 0 ? [`Failures: ${failures.join('; ')}`] : []),
    ...(ours.dead.length > 0 ? [`Not alive: ${ours.dead.slice(0, 3).join('; ')}`] : []),
  ];
  process.stdout.write(`## ${N} concurrent sessions through one proxy\n\n${table(rows)}\n\n${notes.map((n) => `- ${n}`).join('\n')}\n`);
  const path = saveResults({
    suite: 'load',
    title: `Concurrent sessions: ${N} held at once through one proxy`,
    command: `npm run bench:concurrent -- --sessions ${N} --rate ${RATE}${args['skip-anchor'] ? ' --skip-anchor' : ''}`,
    rows,
    notes,
  });
  process.stderr.write(`saved ${path}\n`);
} finally {
  await sys.stop();
}
