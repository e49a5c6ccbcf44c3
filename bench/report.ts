/*
 * The one benchmark report (npm run bench): runs every suite in turn, each in its own node
 * process so one's heap and JIT state do not skew the next, then writes bench/RESULTS.md and the
 * README's results (between <!-- bench:begin --> and <!-- bench:end -->) from bench/out/*.json.
 *
 *   npm run bench                      every suite, full sizes
 *   npm run bench -- --quick           smaller transfers, fewer rounds (same as npm run bench:quick)
 *   npm run bench -- --only proxy,web  just those; the others' last figures stay in the report
 *   npm run bench -- --report-only     no suite runs; the report is rewritten from bench/out
 *
 * A suite that fails is reported as failed with the last lines of its stderr; the report is still
 * written and the exit code is 1.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { OUT_DIR as BENCH_OUT } from './lib/results.js';
import type { SavedResults } from './lib/results.js';
import { readmeSection, replaceReadmeSection, resultsMarkdown } from './lib/report-md.js';
import type { Machine, ReportInput, SuiteRun } from './lib/report-md.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** The report's own directory: other people running a suite by hand write to bench/out itself. */
const OUT_DIR = join(BENCH_OUT, 'report');

interface Suite {
  readonly suite: string;
  /** The heading when the suite failed and left no results (which carry their own title). */
  readonly title: string;
  /** Relative to the repository root. */
  readonly script: string;
  readonly args?: { readonly full: readonly string[]; readonly quick: readonly string[] };
  /** The script's own knobs, set smaller in quick mode (BENCH_QUICK=1 is set for every suite too). */
  readonly quickEnv: Readonly<Record<string, string>>;
}

/** Report order: the certificate core first, then what is built on it. */
const SUITES: readonly Suite[] = [
  { suite: 'cert-core', title: 'cert-core: signing, parsing and KRLs', script: 'bench/cert-core.ts', quickEnv: { BENCH_ROUNDS: '3' } },
  { suite: 'auth', title: 'auth: certificate issuance', script: 'bench/auth.ts', quickEnv: { BENCH_ROUNDS: '2', BENCH_DURATION_MS: '1500', BENCH_CPU_PROF: '0' } },
  { suite: 'proxy', title: 'proxy: against direct ssh and an OpenSSH bastion', script: 'bench/proxy.ts', quickEnv: { BENCH_PROXY_GIB: '0.25', BENCH_PROXY_ROUNDS: '5', BENCH_PROXY_IDLE: '100', BENCH_PROXY_BUSY: '10' } },
  { suite: 'recording', title: 'recording: recorded against not recorded', script: 'bench/recording.ts', quickEnv: { BENCH_GIB: '0.25', BENCH_ROUNDS: '2', BENCH_HOURS: '0.25' } },
  { suite: 'recording-micro', title: 'recording, the recorder alone', script: 'bench/recording-micro.ts', quickEnv: { BENCH_MIB: '64' } },
  { suite: 'web', title: 'web: browser-terminal sessions', script: 'bench/web.ts', args: { full: [], quick: ['100', '10', '200'] }, quickEnv: {} },
  { suite: 'scale-out', title: 'scale-out: sessions per second through two proxies', script: 'bench/scale-out.ts', quickEnv: { BENCH_SCALE_SECONDS: '5', BENCH_SCALE_ROUNDS: '2' } },
  { suite: 'load', title: 'load: concurrent sessions through one proxy', script: 'bench/concurrent.ts', args: { full: [], quick: ['--sessions', '200'] }, quickEnv: {} },
];

const STDERR_TAIL = 25;
const TIMEOUT_MIN = Number(process.env['BENCH_SUITE_TIMEOUT_MIN'] ?? 0);

interface Options {
  readonly quick: boolean;
  /** Undefined: every suite; empty (--report-only): none. */
  readonly only: readonly string[] | undefined;
}

function parseArgs(argv: readonly string[]): Options {
  let quick = false;
  let only: string[] | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--quick') quick = true;
    else if (a === '--report-only') only = [];
    else if (a === '--only' || a.startsWith('--only=')) {
      const v = a === '--only' ? argv[++i] : a.slice('--only='.length);
      if (v === undefined || v === '') throw new TypeError('bench: --only expects suite names, e.g. --only proxy,web');
      only = v.split(',').filter((x) => x !== '');
    } else throw new TypeError(`bench: unknown argument "${a}"; expected --quick, --only suite,suite or --report-only`);
  }
  const unknown = (only ?? []).filter((s) => !SUITES.some((x) => x.suite === s));
  if (unknown.length > 0) throw new TypeError(`bench: unknown suite "${unknown.join(', ')}"; expected one of ${SUITES.map((s) => s.suite).join(', ')}`);
  return { quick, only };
}

/** How the reader reproduces this run: the npm script if it came through one. */
function commandLine(argv: readonly string[]): string {
  const event = process.env['npm_lifecycle_event'];
  if (event === 'bench:quick') return `npm run bench:quick${argv.filter((a) => a !== '--quick').length > 0 ? ` -- ${argv.filter((a) => a !== '--quick').join(' ')}` : ''}`;
  if (event === 'bench') return `npm run bench${argv.length > 0 ? ` -- ${argv.join(' ')}` : ''}`;
  return `node --import tsx bench/report.ts${argv.length > 0 ? ` ${argv.join(' ')}` : ''}`;
}

/** The first line a tool prints about its version (ssh -V answers on stderr). */
function version(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error !== undefined) return `${cmd}: not found`;
  return `${r.stdout}${r.stderr}`.trim().split('\n')[0] ?? 'unknown';
}

function machine(): Machine {
  let os = 'unknown OS';
  try {
    os = /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(readFileSync('/etc/os-release', 'utf8'))?.[1] ?? os;
  } catch {
    // no os-release: the CPU model and the versions still say enough
  }
  return {
    model: cpus()[0]?.model ?? 'unknown CPU',
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    os,
    node: process.version,
    openssh: version('ssh', ['-V']).split(',')[0]!,
    redis: version('redis-server', ['--version']).replace(/^Redis server v=(\S+).*$/, 'Redis $1'),
  };
}

const resultsPath = (suite: string): string => join(OUT_DIR, `${suite}.json`);
const runPath = (suite: string): string => join(OUT_DIR, `${suite}.run.json`);

/** Runs one suite as its own node process; its output goes to bench/out/<suite>.log and through. */
async function runSuite(s: Suite, quick: boolean): Promise<SuiteRun> {
  // A failed run must not leave the previous run's figures looking like this one's.
  rmSync(resultsPath(s.suite), { force: true });
  const at = new Date().toISOString();
  const t0 = performance.now();
  const log = createWriteStream(join(OUT_DIR, `${s.suite}.log`));
  const args = ['--import', 'tsx', s.script, ...(quick ? (s.args?.quick ?? []) : (s.args?.full ?? []))];
  const env = { ...process.env, BENCH_OUT_DIR: OUT_DIR, ...(quick ? { BENCH_QUICK: '1', ...s.quickEnv } : {}) };
  process.stderr.write(`\nbench: ${s.suite}: node ${args.join(' ')}${quick ? ` (${Object.entries(s.quickEnv).map(([k, v]) => `${k}=${v}`).join(' ') || 'BENCH_QUICK=1'})` : ''}\n`);
  // Its own process group, so a timeout or Ctrl+C also ends the sshd, redis-server and ssh it started.
  const child = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  current = child;
  let tail = '';
  child.stdout.on('data', (b: Buffer) => {
    log.write(b);
    process.stdout.write(b);
  });
  child.stderr.on('data', (b: Buffer) => {
    log.write(b);
    process.stderr.write(b);
    tail = (tail + b.toString('utf8')).slice(-16_384);
  });
  let timedOut = false;
  const limitMin = TIMEOUT_MIN > 0 ? TIMEOUT_MIN : quick ? 15 : 45;
  const timer = setTimeout(() => {
    timedOut = true;
    killGroup(child.pid);
    setTimeout(() => killGroup(child.pid, 'SIGKILL'), 10_000).unref();
  }, limitMin * 60_000);
  const { code, signal } = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('close', (code, signal) => resolve({ code, signal })),
  );
  clearTimeout(timer);
  current = undefined;
  // Whatever it left running in its group (a stray sshd on a failure path) goes too.
  killGroup(child.pid);
  await new Promise<void>((resolve) => log.end(resolve));
  const seconds = (performance.now() - t0) / 1000;
  const outcome = timedOut
    ? `timed out after ${limitMin} min`
    : code !== 0
      ? signal !== null
        ? `killed by ${signal}`
        : `exit code ${code}`
      : existsSync(resultsPath(s.suite))
        ? 'ok'
        : `exited 0 but wrote no bench/out/${s.suite}.json`;
  const run: SuiteRun = { suite: s.suite, at, quick, seconds, outcome, stderrTail: tail.trimEnd().split('\n').slice(-STDERR_TAIL) };
  writeFileSync(runPath(s.suite), `${JSON.stringify(run, null, 2)}\n`);
  process.stderr.write(`bench: ${s.suite}: ${outcome} in ${seconds.toFixed(0)} s\n`);
  return run;
}

let current: ReturnType<typeof spawn> | undefined;

function killGroup(pid: number | undefined, signal: NodeJS.Signals = 'SIGTERM'): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // the group is already gone
  }
}

function readJson<T>(path: string): T | undefined {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

function isResults(x: unknown): x is SavedResults {
  const r = x as Partial<SavedResults> | undefined;
  return typeof r?.suite === 'string' && Array.isArray(r.rows) && typeof r.at === 'string' && typeof r.machine === 'object';
}

/** Every suite with figures or a recorded run: the known ones in order, then any other found in bench/out. */
function collect(): ReportInput['suites'] {
  const found = readdirSync(OUT_DIR)
    .filter((f) => f.endsWith('.json') && !f.endsWith('.run.json'))
    .map((f) => f.slice(0, -'.json'.length));
  const order = [...SUITES.map((s) => s.suite), ...found.filter((f) => !SUITES.some((s) => s.suite === f)).sort()];
  return order
    .map((suite) => {
      const r = readJson<unknown>(resultsPath(suite));
      const title = SUITES.find((s) => s.suite === suite)?.title ?? suite;
      const results = isResults(r) ? r : undefined;
      const run = readJson<SuiteRun>(runPath(suite));
      // Figures newer than the report's last run of the suite came from running it by hand
      // (npm run bench:proxy); the run record no longer describes them.
      const current = run !== undefined && (results === undefined || Date.parse(results.at) <= Date.parse(run.at) + run.seconds * 1000 + 5_000);
      return { suite, title, results, run: current ? run : undefined };
    })
    .filter((s) => s.results !== undefined || s.run !== undefined);
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const opts = parseArgs(argv);
  const loadBefore = loadavg();
  const mach = machine();
  mkdirSync(OUT_DIR, { recursive: true });

  const chosen = SUITES.filter((s) => opts.only === undefined || opts.only.includes(s.suite));
  const ranNow: string[] = [];
  let failed = 0;
  for (const s of chosen) {
    const run = await runSuite(s, opts.quick);
    ranNow.push(s.suite);
    if (run.outcome !== 'ok') failed++;
  }

  const input: ReportInput = {
    at: new Date(),
    command: commandLine(argv),
    quick: opts.quick,
    machine: mach,
    loadBefore,
    loadAfter: loadavg(),
    ranNow,
    suites: collect(),
  };
  writeFileSync(join(ROOT, 'bench', 'RESULTS.md'), resultsMarkdown(input));
  const readme = join(ROOT, 'README.md');
  writeFileSync(readme, replaceReadmeSection(readFileSync(readme, 'utf8'), readmeSection(input)));
  const outcome = ranNow.length === 0 ? 'no suite ran' : failed === 0 ? `${ranNow.length} suite(s) ran` : `${failed} of ${ranNow.length} suite(s) failed`;
  process.stderr.write(`\nbench: wrote bench/RESULTS.md and README.md's results; ${outcome}\n`);
  return failed === 0 ? 0 : 1;
}

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    killGroup(current?.pid);
    process.exit(130);
  });
}

process.exitCode = await main();
