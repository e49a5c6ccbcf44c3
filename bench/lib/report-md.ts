/**
 * The one benchmark report's text: bench/RESULTS.md and the README's results between its markers,
 * both from the suites' bench/out/<suite>.json and the runner's bench/out/<suite>.run.json.
 * Pure: everything it prints comes in as arguments.
 */
import { fmt, table } from './measure.js';
import type { Row } from './measure.js';
import type { SavedResults } from './results.js';

/** What the runner knows of one suite's last run through the report (the suite's JSON has the figures). */
export interface SuiteRun {
  readonly suite: string;
  readonly at: string;
  readonly quick: boolean;
  readonly seconds: number;
  /** 'ok', or why it failed: an exit code, a signal, a timeout, or no results written. */
  readonly outcome: string;
  readonly stderrTail: readonly string[];
}

export interface Machine {
  readonly model: string;
  readonly cores: number;
  readonly memoryGiB: number;
  readonly os: string;
  readonly node: string;
  readonly openssh: string;
  readonly redis: string;
}

export interface ReportInput {
  /** When the report was written. */
  readonly at: Date;
  readonly command: string;
  readonly quick: boolean;
  readonly machine: Machine;
  readonly loadBefore: readonly number[];
  readonly loadAfter: readonly number[];
  /** The suites this invocation ran (the others' figures come from earlier runs). */
  readonly ranNow: readonly string[];
  /** Every suite known to the report or found in bench/out, in report order. */
  readonly suites: ReadonlyArray<{ readonly suite: string; readonly title: string; readonly results: SavedResults | undefined; readonly run: SuiteRun | undefined }>;
}

export const README_BEGIN = '<!-- bench:begin -->';
export const README_END = '<!-- bench:end -->';

const load = (xs: readonly number[]): string => xs.map((x) => x.toFixed(1)).join(' ');

/** JSON turns NaN into null; the table wants numbers or undefined. */
function cleanRows(rows: readonly Row[]): Row[] {
  return rows.map((r) => ({
    ...r,
    ours: typeof r.ours === 'number' ? r.ours : NaN,
    anchors: r.anchors.map((a) => ({ name: a.name, value: typeof a.value === 'number' ? a.value : undefined })),
  }));
}

function status(s: ReportInput['suites'][number]): string {
  if (s.run !== undefined && s.run.outcome !== 'ok') return `failed: ${s.run.outcome}`;
  if (s.results === undefined) return 'no results';
  return 'ok';
}

/** One row per suite: when it was measured, how long it took, how loaded the machine was. */
function overview(input: ReportInput): string {
  const lines = ['| suite | status | measured | mode | took | load average at its end |', '|---|---|---|---|---|---|'];
  for (const s of input.suites) {
    const at = s.results?.at ?? s.run?.at;
    const when = at === undefined ? '' : `${at.slice(0, 16).replace('T', ' ')} UTC${input.ranNow.includes(s.suite) ? '' : ' (earlier run)'}`;
    const mode = s.run === undefined ? 'run alone' : s.run.quick ? 'quick' : 'full';
    const took = s.run === undefined ? '' : `${s.run.seconds.toFixed(0)} s`;
    lines.push(`| ${s.suite} | ${status(s)} | ${when} | ${mode} | ${took} | ${s.results === undefined ? '' : load(s.results.machine.loadavg)} |`);
  }
  return lines.join('\n');
}

/** Per suite: title, the table with ratios first, notes; or why it has no figures. */
export function suiteSections(input: ReportInput, heading: string): string {
  const out: string[] = [];
  for (const s of input.suites) {
    const title = s.results?.title ?? s.title;
    out.push(`${heading} ${title}`, '');
    const failed = s.run !== undefined && s.run.outcome !== 'ok';
    if (failed) {
      out.push(`**Failed** (${s.run!.outcome}) after ${s.run!.seconds.toFixed(0)} s; last lines of its stderr:`, '', '```', ...s.run!.stderrTail, '```', '');
      continue;
    }
    if (s.results === undefined) {
      out.push('No results yet.', '');
      continue;
    }
    out.push(table(cleanRows(s.results.rows)), '');
    const at = `${s.results.at.slice(0, 16).replace('T', ' ')} UTC`;
    out.push(`\`${s.results.command}\`, ${at}, load average ${load(s.results.machine.loadavg)} at its end.`, '');
    const notes = s.results.notes ?? [];
    if (notes.length > 0) out.push(...notes.map((n) => `- ${n}`), '');
  }
  return out.join('\n');
}

const HOW_TO_READ =
  'Ratios come first: each is how many times better Portcullis is than the anchor in that column ' +
  '(our rate over theirs, or their time over ours), so above 1x is better and below 1x worse. ' +
  'Absolute numbers follow. Rows without an anchor are our figures alone. See docs/benchmarks.md.';

/** The 1-minute load average at the end of each suite, and before/after this invocation if it ran any. */
function loads(input: ReportInput): number[] {
  const own = input.ranNow.length > 0 ? [input.loadBefore[0] ?? 0, input.loadAfter[0] ?? 0] : [];
  return [...own, ...input.suites.flatMap((s) => (s.results === undefined ? [] : [s.results.machine.loadavg[0] ?? 0]))];
}

function noise(input: ReportInput): string {
  const xs = loads(input);
  if (xs.length === 0) return '';
  const lo = Math.min(...xs);
  const hi = Math.max(...xs);
  const busy = hi > input.machine.cores * 0.75;
  return (
    `The 1-minute load average ranged ${lo.toFixed(1)}-${hi.toFixed(1)} over the suites, on ${input.machine.cores} cores` +
    (busy
      ? ': the machine was shared with other work, so every absolute figure here is noisy. Suites take medians (transfers the better of two runs) and measure ours and the anchors interleaved, so the ratios hold up better than the absolute numbers; still, rerun a suite (--only) before trusting a ratio that moved.'
      : '.')
  );
}

/** When the figures were measured: the first and last suite's time, and at which sizes. */
function span(input: ReportInput): string {
  const ats = input.suites.flatMap((s) => (s.results === undefined ? [] : [s.results.at])).sort();
  const modes = new Set(input.suites.flatMap((s) => (s.run === undefined ? [] : [s.run.quick ? 'quick' : 'full'])));
  const size = modes.size === 1 ? (modes.has('quick') ? 'quick sizes' : 'full sizes') : 'full and quick sizes';
  const t = (x: string): string => x.slice(0, 16).replace('T', ' ');
  return ats.length === 0 ? 'no figures yet' : `measured ${t(ats[0]!)} to ${t(ats.at(-1)!).slice(11)} UTC at ${size}`;
}

export function resultsMarkdown(input: ReportInput): string {
  const m = input.machine;
  return [
    '# Benchmark results',
    '',
    `Figures ${span(input)}; this file written by \`${input.command}\` (bench/report.ts) on ${input.at.toISOString().slice(0, 16).replace('T', ' ')} UTC.`,
    '',
    `- machine: ${m.cores} × ${m.model}, ${m.memoryGiB} GiB, ${m.os}`,
    input.ranNow.length === 0
      ? '- load average: at the end of each suite, in the table below'
      : `- load average (1, 5, 15 min) around this invocation: ${load(input.loadBefore)} before, ${load(input.loadAfter)} after; at the end of each suite in the table below`,
    `- Node ${m.node}, ${m.openssh}, ${m.redis}`,
    `- suites run by this invocation: ${input.ranNow.length === 0 ? 'none' : input.ranNow.join(', ')}`,
    '',
    noise(input),
    '',
    HOW_TO_READ,
    '',
    overview(input),
    '',
    suiteSections(input, '##'),
  ].join('\n');
}

/** The README's results: a pointer to RESULTS.md, the machine in one line, then the same sections. */
export function readmeSection(input: ReportInput): string {
  const m = input.machine;
  return [
    README_BEGIN,
    `<!-- written by bench/report.ts (${input.command}); edits here are overwritten -->`,
    '',
    `Figures ${span(input)} (\`npm run bench\`, each suite in its own process) on ${m.cores} × ${m.model}, Node ${m.node}, ${m.openssh}, ${m.redis}. ` +
      `${noise(input)} Per-suite timings and load: [bench/RESULTS.md](bench/RESULTS.md).`,
    '',
    HOW_TO_READ,
    '',
    suiteSections(input, '####'),
    README_END,
  ].join('\n');
}

/** The README with its results between the markers replaced; throws when the markers are missing. */
export function replaceReadmeSection(readme: string, section: string): string {
  const b = readme.indexOf(README_BEGIN);
  const e = readme.indexOf(README_END);
  if (b < 0 || e < b) throw new Error(`bench: README.md needs ${README_BEGIN} ... ${README_END} around its results`);
  return readme.slice(0, b) + section + readme.slice(e + README_END.length);
}
