// Scale-out benchmark (issue 8): whole SSH sessions per second through two proxies behind a
// round-robin spread, against one proxy, with sshd straight as the anchor. A session is what a
// deploy script or `ansible` does many times a minute: connect with a user certificate, the
// proxy checks it, asks auth for a one-minute upstream certificate and dials the target with it
// (host certificate checked), `true` runs, everything closes. Closed loop: N ssh2 clients (in a
// process of their own) each start their next session when the last one closed, for a fixed
// window after a warm-up; rounds interleave the three set-ups and the median is reported.
//
// Everything shares this machine's cores: the clients, both proxies, auth (this process),
// sshd and its forks, redis-server. So the CPU each of them took per session is measured too
// (/proc; sshd's includes its reaped children), and what bounded the rate is said from it.
// Run: npm run bench:scale-out   (BENCH_SCALE_CLIENTS, BENCH_SCALE_SECONDS, BENCH_SCALE_ROUNDS)
import { fork } from 'node:child_process';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { formatCertificate, formatPrivateKey } from '@portcullis/cert-core';
import { nodeCrypto } from '@portcullis/cert-core/node';
import { fmt, median, table } from './lib/measure.js';
import type { Row } from './lib/measure.js';
import { machineCpuMs, processCpuMs, selfCpuMs } from './lib/proc-cpu.js';
import { quantile } from './lib/load.js';
import { saveResults } from './lib/results.js';
import { startBenchSystem } from './lib/proxy-system.js';
import type { ChurnMessage, ChurnRequest, ChurnTarget } from './lib/session-churn-child.js';

const CLIENTS = Number(process.env['BENCH_SCALE_CLIENTS'] ?? 16);
const SECONDS = Number(process.env['BENCH_SCALE_SECONDS'] ?? 10);
const ROUNDS = Number(process.env['BENCH_SCALE_ROUNDS'] ?? 3);
const WARMUP_MS = 2_000;
const COMMAND = 'npm run bench:scale-out';

type Setup = 'two' | 'one' | 'direct';
const SETUPS: readonly Setup[] = ['two', 'one', 'direct'];
const LABEL: Record<Setup, string> = { two: 'two proxies', one: 'one proxy', direct: 'direct sshd' };
/** The CPU accounts a round reports, in ms over its window. */
type Account = 'proxies' | 'auth' | 'sshd' | 'clients' | 'rest' | 'machine';

interface Round {
  readonly setup: Setup;
  readonly perSecond: number;
  readonly sessions: number;
  readonly errors: number;
  readonly firstError: string | undefined;
  readonly p50: number;
  readonly p99: number;
  readonly cpu: Record<Account, number>;
  readonly windowMs: number;
}

/** user+system CPU ms of a process and of the children it has reaped (sshd's forks), from /proc. */
function cpuWithChildrenMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) * 1000) / 100;
  } catch {
    return 0;
  }
}

/** The pid of the one process whose command line contains `needle` (sshd by its config path). */
function pidOf(needle: string): number {
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0').some((a) => a.includes(needle))) return Number(d);
    } catch {
      // gone meanwhile
    }
  }
  throw new Error(`no process with ${needle} on its command line`);
}

async function main(): Promise<void> {
  const sys = await startBenchSystem();
  const children: (() => void)[] = [];
  try {
    const p1 = await sys.startProxy();
    const p2 = await sys.startProxy({ listenPort: 0 });
    const sshdPid = pidOf(sys.target.configPath);
    const identityPath = sys.dir.file('churn-identity.json');
    writeFileSync(identityPath, JSON.stringify({ key: formatPrivateKey(sys.userKey, { crypto: nodeCrypto }), certificate: formatCertificate(sys.userCert) }), { mode: 0o600 });
    const churn = fork(fileURLToPath(new URL('./lib/session-churn-child.ts', import.meta.url)), [identityPath], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    children.push(() => churn.kill());
    await new Promise<void>((resolve, reject) => {
      churn.once('exit', (code) => reject(new Error(`the client process exited (${code}) before it was ready`)));
      churn.on('message', (m: ChurnMessage) => m.type === 'ready' && resolve());
    });

    const viaProxy = (port: number): ChurnTarget => ({ port, username: 'root%web01' });
    const targets: Record<Setup, ChurnTarget[]> = {
      two: [viaProxy(p1.port), viaProxy(p2.port)],
      one: [viaProxy(p1.port)],
      direct: [{ port: sys.target.port, username: 'root' }],
    };
    const sample = (): Record<Account, number> => {
      const proxies = (processCpuMs(p1.pid) ?? 0) + (processCpuMs(p2.pid) ?? 0);
      const auth = selfCpuMs();
      const sshd = cpuWithChildrenMs(sshdPid);
      const clients = processCpuMs(churn.pid) ?? 0;
      const machine = machineCpuMs().busy;
      return { proxies, auth, sshd, clients, machine, rest: machine - proxies - auth - sshd - clients };
    };
    const measure = (setup: Setup): Promise<Round> =>
      new Promise((resolve) => {
        let before: Record<Account, number> | undefined;
        let after: Record<Account, number> | undefined;
        let opened = 0;
        let windowMs = 0;
        const onMessage = (m: ChurnMessage): void => {
          if (m.type === 'window' && m.edge === 'open') {
            before = sample();
            opened = performance.now();
          }
          if (m.type === 'window' && m.edge === 'close') {
            after = sample();
            windowMs = performance.now() - opened;
          }
          if (m.type !== 'done') return;
          churn.off('message', onMessage);
          const a = after ?? sample();
          const b = before ?? a;
          const cpu = Object.fromEntries((Object.keys(a) as Account[]).map((k) => [k, a[k] - b[k]])) as Record<Account, number>;
          resolve({
            setup,
            perSecond: m.completed / (m.windowMs / 1000),
            sessions: m.completed,
            errors: m.errors,
            firstError: m.firstError,
            p50: quantile(m.latencies, 0.5),
            p99: quantile(m.latencies, 0.99),
            cpu,
            // As the parent saw it (IPC delays both edges alike); the CPU counters cover this span.
            windowMs: windowMs > 0 ? windowMs : m.windowMs,
          });
        };
        churn.on('message', onMessage);
        const req: ChurnRequest = { type: 'run', targets: targets[setup], concurrency: CLIENTS, warmupMs: WARMUP_MS, durationMs: SECONDS * 1000 };
        churn.send(req);
      });

    const rounds: Round[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      // Rotated each round, so drift on the machine does not always favour the same set-up.
      for (let j = 0; j < SETUPS.length; j++) {
        const setup = SETUPS[(i + j) % SETUPS.length]!;
        const r = await measure(setup);
        rounds.push(r);
        process.stderr.write(
          `scale-out: round ${i + 1} ${LABEL[setup]}: ${r.perSecond.toFixed(1)} sessions/s (p50 ${r.p50.toFixed(0)} ms, ${r.errors} errors${r.firstError === undefined ? '' : `: ${r.firstError}`}), ` +
            `machine ${((r.cpu.machine / r.windowMs / cpus().length) * 100).toFixed(0)}% busy\n`,
        );
      }
    }

    const of = (s: Setup): Round[] => rounds.filter((r) => r.setup === s);
    const rate = (s: Setup): number => median(of(s).map((r) => r.perSecond));
    const p50 = (s: Setup): number => median(of(s).map((r) => r.p50));
    /** CPU ms per session of one account, over all rounds of a set-up. */
    const perSession = (s: Setup, a: Account): number => of(s).reduce((t, r) => t + r.cpu[a], 0) / Math.max(1, of(s).reduce((t, r) => t + r.sessions, 0));
    /** Share of the whole machine (all cores) busy during a set-up's windows. */
    const busy = (s: Setup): number => of(s).reduce((t, r) => t + r.cpu.machine, 0) / of(s).reduce((t, r) => t + r.windowMs * cpus().length, 0);
    const errors = rounds.reduce((t, r) => t + r.errors, 0);
    const anchors = (f: (s: Setup) => number | undefined): Row['anchors'] => [
      { name: 'one proxy', value: f('one') },
      { name: 'direct sshd', value: f('direct') },
    ];
    const cpuRow = (a: Account, what: string, direct: boolean): Row => ({
      what: `CPU per session: ${what}`,
      ours: perSession('two', a),
      unit: 'ms',
      higherIsBetter: false,
      anchors: anchors((s) => (s === 'direct' && !direct ? undefined : perSession(s, a))),
    });
    /** CPU ms per session of the processes the benchmark runs (everything but "rest"). */
    const ownPerSession = (s: Setup): number => (['proxies', 'auth', 'sshd', 'clients'] as const).reduce((t, a) => t + perSession(s, a), 0);
    const others = (s: Setup): number => of(s).reduce((t, r) => t + r.cpu.rest, 0) / of(s).reduce((t, r) => t + r.windowMs * cpus().length, 0);
    const rows: Row[] = [
      { what: `sessions/s, ${CLIENTS} clients (connect, exec \`true\`, close)`, ours: rate('two'), unit: 'sessions/s', higherIsBetter: true, anchors: anchors(rate) },
      { what: 'session time p50', ours: p50('two'), unit: 'ms', higherIsBetter: false, anchors: anchors(p50) },
      cpuRow('proxies', 'proxies', false),
      cpuRow('auth', 'auth (upstream certificate)', false),
      cpuRow('sshd', 'sshd and its forks', true),
      cpuRow('clients', 'ssh2 clients', true),
      cpuRow('rest', 'everything else on the machine', true),
      { what: 'machine busy (all cores)', ours: busy('two') * 100, unit: '%', higherIsBetter: false, anchors: anchors((s) => busy(s) * 100) },
      // What the cores allow when nothing else runs: stable on a shared machine, where the
      // measured rates above move with other people's load.
      {
        what: `sessions/s ${cpus().length} idle cores allow (from CPU per session)`,
        ours: (cpus().length * 1000) / ownPerSession('two'),
        unit: 'sessions/s',
        higherIsBetter: true,
        anchors: anchors((s) => (cpus().length * 1000) / ownPerSession(s)),
      },
    ];
    const own = ownPerSession('two');
    const bound =
      `A session through a proxy costs ${fmt(own)} ms of CPU in the benchmark's own processes: sshd and its forks ${fmt(perSession('two', 'sshd'))} ` +
      `(${((perSession('two', 'sshd') / own) * 100).toFixed(0)}%), the proxies ${fmt(perSession('two', 'proxies'))}, auth ${fmt(perSession('two', 'auth'))}, the clients ${fmt(perSession('two', 'clients'))}; ` +
      `directly to sshd, ${fmt(ownPerSession('direct'))} ms. So ${cpus().length} otherwise idle cores cap this machine at about ${fmt((cpus().length * 1000) / own)} proxied sessions/s ` +
      `however many proxies share them: a second proxy on the same cores adds an event loop, not CPU. ` +
      (busy('two') > 0.85
        ? `The machine was ${(busy('two') * 100).toFixed(0)}% busy during the two-proxy windows, ${(others('two') * 100).toFixed(0)}% of it other work: the cores bounded the rate, not either proxy.`
        : `The machine was ${(busy('two') * 100).toFixed(0)}% busy during the two-proxy windows: the ${CLIENTS} clients' closed loop (latency), not CPU, bounded the rate.`);
    const noisy = SETUPS.some((x) => others(x) > 0.2);
    const notes = [
      `${cpus().length} × ${cpus()[0]?.model ?? '?'}, Node ${process.version}; ${CLIENTS} ssh2 clients in one process, closed loop, ${SECONDS} s window after ${WARMUP_MS / 1000} s warm-up, median of ${ROUNDS} rounds; the set-ups interleave.`,
      'Each proxy session: the user certificate checked against the user CA and the KRL, an access check and a one-minute upstream certificate from auth over pinned HTTPS, a dial to sshd that checks its host certificate, exec `true`. Recording is off (the proxy children have no tap): this measures the connection path.',
      "Two proxies: client i goes to proxy i mod 2, as a round-robin TCP balancer spreads them. Both proxies, auth, sshd, redis-server and the clients share this machine's cores.",
      bound,
      ...(noisy
        ? [
            `Other work took ${SETUPS.map((x) => `${(others(x) * 100).toFixed(0)}%`).join(' / ')} of the machine during the ${SETUPS.map((x) => LABEL[x]).join(' / ')} windows: ` +
              'the measured rates follow that load, not the set-up, and their ratios mean little; the CPU per session and what the cores allow from it do not depend on it.',
          ]
        : []),
      `Errors: ${errors}${errors > 0 ? ` (first: ${rounds.find((r) => r.firstError !== undefined)?.firstError})` : ''}. Load average at the end: ${loadavg().map((x) => x.toFixed(1)).join(' ')} (the machine is shared: "everything else" includes other work).`,
    ];
    const lines = [
      `## Scale-out: sessions per second through two proxies (${cpus().length} cores)`,
      '',
      table(rows),
      '',
      `| set-up | sessions/s by round | p99 ms |`,
      '|---|---|---|',
      ...SETUPS.map((s) => `| ${LABEL[s]} | ${of(s).map((r) => r.perSecond.toFixed(1)).join(', ')} | ${median(of(s).map((r) => r.p99)).toFixed(0)} |`),
      '',
      ...notes.map((n) => `- ${n}`),
      '',
      `Command: \`${COMMAND}\` (BENCH_SCALE_CLIENTS=${CLIENTS} BENCH_SCALE_SECONDS=${SECONDS} BENCH_SCALE_ROUNDS=${ROUNDS})`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
    const path = saveResults({
      suite: 'scale-out',
      title: 'Scale-out: sessions per second through two proxies',
      command: `BENCH_SCALE_CLIENTS=${CLIENTS} BENCH_SCALE_SECONDS=${SECONDS} BENCH_SCALE_ROUNDS=${ROUNDS} ${COMMAND}`,
      rows,
      notes,
    });
    process.stderr.write(`scale-out: figures saved to ${path}\n`);
  } finally {
    for (const k of children) k();
    await sys.stop();
  }
}

await main();
