// Does session set-up get slower as more sessions are held? Ramps N held sessions through one
// proxy (no anchor) and prints, per tenth of the ramp, the set-up latency (from due, as
// bench:concurrent counts it) and the service time (from dial to shell open, without the
// generator's queue), the CPU per session of the proxy, of this process (load generator and
// auth) and of the target sshd, and how busy the machine was, with the share of processes that
// are not this benchmark's (the cores are shared); then the proxy's idle CPU holding all N.
// BENCH_PROFILE=<dir> profiles the proxy while the first and the last tenth open, and the hold.
// Run: node --import tsx bench/concurrent-growth.ts [--sessions 300] [--rate 5]
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { holdSessions, percentile } from '../packages/cli/src/pcsh/bench/index.js';
import { formatProfile, summarizeProfile } from './lib/cpuprofile.js';
import { dialDirect, type DialIdentity } from './lib/dial.js';
import { machineCpuMs, processCpuMs, selfCpuMs } from './lib/proc-cpu.js';
import { processTree, sshdPid, treeCpuMs } from './lib/proc-sample.js';
import { startBenchSystem } from './lib/proxy-system.js';

const { values: args } = parseArgs({
  options: {
    sessions: { type: 'string', default: '300' },
    rate: { type: 'string', default: '5' },
    'hold-seconds': { type: 'string', default: '10' },
  },
});
const N = Number(args.sessions);
const RATE = Number(args.rate);
const HOLD_S = Number(args['hold-seconds']);
const PROFILE_DIR = process.env['BENCH_PROFILE'];

const pct = (xs: readonly number[], p: number): number => percentile([...xs].sort((x, y) => x - y), p);

/** CPU of `pid` and every descendant, the exited ones too (counted in the cutime/cstime of whoever reaped them). */
function wholeTreeCpuMs(pid: number): number {
  let ticks = 0;
  for (const p of processTree(pid)) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
    } catch {
      // gone
    }
  }
  return ticks * 10;
}

interface Sample {
  readonly proxy: number;
  readonly self: number;
  readonly sshd: number;
  readonly machineBusy: number;
  readonly ours: number;
  readonly machineTotal: number;
  readonly load: number;
  readonly loopP99: number;
}

const sys = await startBenchSystem();
try {
  const proxy = await sys.startProxy();
  const id: DialIdentity = { key: sys.userKey, cert: sys.userCert };
  const dial = (): ReturnType<typeof dialDirect> => dialDirect(id, proxy.port, 'root%web01.bench.test');
  const warm = holdSessions({ count: 10, ratePerSecond: 10, dial });
  await warm.ramped;
  await warm.closeAll();
  await sleep(1000);

  if (PROFILE_DIR !== undefined) await proxy.profileStart();
  const dialAt = new Map<number, number>();
  const sshd = sshdPid(sys.target.configPath);
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  const sample = (): Sample => {
    const m = machineCpuMs();
    const s: Sample = { proxy: processCpuMs(proxy.pid) ?? NaN, self: selfCpuMs(), sshd: treeCpuMs(sshd), machineBusy: m.busy, ours: wholeTreeCpuMs(process.pid), machineTotal: m.total, load: loadavg()[0]!, loopP99: loop.percentile(99) / 1e6 };
    loop.reset();
    return s;
  };
  // Sampled as every tenth of the sessions is open: what was spent in between belongs to that tenth.
  const tenth = Math.max(1, Math.floor(N / 10));
  const samples: Sample[] = [];
  let opened = 0;
  let profiling = Promise.resolve();
  const t0 = performance.now();
  const held = holdSessions({
    count: N,
    ratePerSecond: RATE,
    dial: (i) => {
      dialAt.set(i, performance.now());
      return dial();
    },
    onOpen: () => {
      if (++opened % tenth === 0) samples.push(sample());
      if (PROFILE_DIR === undefined) return;
      if (opened === tenth) profiling = profiling.then(() => proxy.profileStop(join(PROFILE_DIR, `ramp-first-${N}.cpuprofile`)));
      if (opened === N - tenth) profiling = profiling.then(() => proxy.profileStart());
    },
  });
  const first = sample();
  const cpu0 = first.proxy;
  await held.ramped;
  const rampS = (performance.now() - t0) / 1000;
  if (PROFILE_DIR !== undefined) {
    await profiling;
    await proxy.profileStop(join(PROFILE_DIR, `ramp-last-${N}.cpuprofile`));
    await proxy.profileStart();
  }
  const h0 = processCpuMs(proxy.pid)!;
  await sleep(HOLD_S * 1000);
  const holdPct = ((processCpuMs(proxy.pid)! - h0) / (HOLD_S * 1000)) * 100;
  if (PROFILE_DIR !== undefined) await proxy.profileStop(join(PROFILE_DIR, `hold-${N}.cpuprofile`));
  const dead = await held.checkAlive(60_000);
  const { outcomes } = await held.closeAll();

  // Outcomes are in due order, which is dial order (i).
  const ordered = [...outcomes].sort((a, b) => a.dueMs - b.dueMs);
  const rows: string[] = [
    '| sessions | set-up p50 | set-up p90 | service p50 | service p90 | CPU / session: proxy | load generator + auth | target sshd | machine busy (others: not this benchmark) | load (1 min) | generator loop delay p99 |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (let from = 0, k = 0; from + tenth <= N; from += tenth, k++) {
    const part = ordered.slice(from, from + tenth).map((o, k) => ({ o, i: from + k }));
    const ok = part.filter((x) => x.o.error === undefined && x.o.setupMs !== undefined);
    const setup = ok.map((x) => x.o.setupMs!);
    const service = ok.map((x) => t0 + x.o.dueMs + x.o.setupMs! - (dialAt.get(x.i) ?? NaN));
    const a = k === 0 ? first : samples[k - 1];
    const b = samples[k];
    const per = (f: (s: Sample) => number): string => (a === undefined || b === undefined ? '' : `${((f(b) - f(a)) / tenth).toFixed(1)} ms`);
    const share = (f: (s: Sample) => number): string => (a === undefined || b === undefined ? '' : `${(((f(b) - f(a)) / (b.machineTotal - a.machineTotal)) * 100).toFixed(0)}%`);
    const busy = `${share((s) => s.machineBusy)} (others ${share((s) => s.machineBusy - s.ours)})`;
    rows.push(
      `| ${from + 1}-${from + tenth} | ${pct(setup, 50).toFixed(0)} | ${pct(setup, 90).toFixed(0)} | ${pct(service, 50).toFixed(0)} | ${pct(service, 90).toFixed(0)} | ${per((s) => s.proxy)} | ${per((s) => s.self)} | ${per((s) => s.sshd)} | ${busy} | ${b?.load.toFixed(1) ?? ''} | ${b?.loopP99.toFixed(0) ?? ''} ms |`,
    );
  }
  const failed = outcomes.filter((o) => o.error !== undefined && o.setupMs === undefined).length;
  process.stdout.write(
    `## ${N} sessions at ${RATE}/s: ramp ${rampS.toFixed(1)} s, ${failed} failed, ${dead.length} not alive, proxy CPU ${((processCpuMs(proxy.pid)! - cpu0) / N).toFixed(1)} ms per session overall, ${holdPct.toFixed(1)}% of a core holding ${N - failed} idle\n\n${rows.join('\n')}\n`,
  );
  if (PROFILE_DIR !== undefined) {
    const what = { 'ramp-first': `the first ${tenth} sessions opening`, 'ramp-last': `the last ${tenth} opening (${N - tenth} held)`, hold: `holding ${N} idle for ${HOLD_S} s` };
    for (const [k, v] of Object.entries(what)) process.stdout.write(`\n### proxy profile, ${v}\n\n${formatProfile(summarizeProfile(join(PROFILE_DIR, `${k}-${N}.cpuprofile`), 15))}\n`);
  }
  await proxy.stop();
} finally {
  await sys.stop();
}
