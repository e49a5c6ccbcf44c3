/*
 * What a load run says, computed from what each session did: pure, so the arithmetic is tested
 * on known inputs and the engine only records times. Latencies are measured from the moment a
 * session was due (open loop), not from when it actually started, so a generator or a proxy
 * that falls behind shows up as latency instead of hiding it (coordinated omission).
 */

/** One session of a run, as the engine saw it. */
export interface SessionOutcome {
  /** Milliseconds from the start of the run until this session was due. */
  readonly dueMs: number;
  /** From due until the session channel was open and its exec/shell request accepted. */
  readonly setupMs: number | undefined;
  /** From due until the connection closed (or the failure). */
  readonly totalMs: number;
  /** Why it failed; undefined for a success. */
  readonly error: string | undefined;
}

export interface LatencySummary {
  readonly count: number;
  readonly p50: number;
  readonly p90: number;
  readonly p95: number;
  readonly p99: number;
  readonly max: number;
}

export interface FailureGroup {
  readonly message: string;
  readonly count: number;
}

export interface BenchReport {
  readonly requested: number;
  readonly succeeded: number;
  readonly failed: number;
  /** Most frequent first; equal counts by message. */
  readonly failures: readonly FailureGroup[];
  /** Of succeeded sessions only (a failure's time says little about set-up). */
  readonly setup: LatencySummary;
  readonly total: LatencySummary;
  /** Sessions per second asked for. */
  readonly requestedRate: number;
  /** Succeeded sessions per second of the run's wall time (start to the last session's end). */
  readonly achievedRate: number;
  readonly elapsedMs: number;
}

/**
 * The p-th percentile (0 < p <= 100) of ascending values, nearest rank: the smallest value with
 * at least p% of the values at or below it, so it is always one of the measurements. NaN when empty.
 */
export function percentile(sorted: readonly number[], p: number): number {
  if (!(p > 0 && p <= 100)) throw new TypeError(`"p" expected a number in (0, 100], got ${p}`);
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

export function summarizeLatencies(values: readonly number[]): LatencySummary {
  const s = [...values].sort((a, b) => a - b);
  return {
    count: s.length,
    p50: percentile(s, 50),
    p90: percentile(s, 90),
    p95: percentile(s, 95),
    p99: percentile(s, 99),
    max: s.length === 0 ? Number.NaN : s[s.length - 1]!,
  };
}

/** Counts equal messages (first line only: a multi-line error is one kind of failure). */
export function groupFailures(messages: readonly string[]): FailureGroup[] {
  const counts = new Map<string, number>();
  for (const m of messages) {
    const key = m.split('\n', 1)[0]!.trim() || '(no message)';
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return [...counts].map(([message, count]) => ({ message, count })).sort((a, b) => b.count - a.count || (a.message < b.message ? -1 : a.message > b.message ? 1 : 0));
}

export function summarizeRun(outcomes: readonly SessionOutcome[], o: { readonly requestedRate: number; readonly elapsedMs: number }): BenchReport {
  const ok = outcomes.filter((x) => x.error === undefined);
  const failed = outcomes.filter((x) => x.error !== undefined);
  return {
    requested: outcomes.length,
    succeeded: ok.length,
    failed: failed.length,
    failures: groupFailures(failed.map((x) => x.error!)),
    setup: summarizeLatencies(ok.map((x) => x.setupMs ?? x.totalMs)),
    total: summarizeLatencies(ok.map((x) => x.totalMs)),
    requestedRate: o.requestedRate,
    achievedRate: o.elapsedMs > 0 ? (ok.length * 1000) / o.elapsedMs : 0,
    elapsedMs: o.elapsedMs,
  };
}

const ms = (x: number): string => (Number.isNaN(x) ? '-' : x >= 100 ? `${Math.round(x)} ms` : `${x.toFixed(1)} ms`);

/** The report as a person reads it at the end of `pcsh bench`. */
export function formatReport(r: BenchReport): string {
  const lines = [
    `sessions: ${r.requested} requested, ${r.succeeded} succeeded, ${r.failed} failed`,
    `rate: ${r.requestedRate.toFixed(1)}/s requested, ${r.achievedRate.toFixed(1)}/s achieved over ${(r.elapsedMs / 1000).toFixed(1)} s`,
    '',
    `${'latency'.padEnd(8)} ${['p50', 'p90', 'p95', 'p99', 'max'].map((h) => h.padStart(10)).join(' ')}`,
  ];
  for (const [name, l] of [['set-up', r.setup], ['total', r.total]] as const) {
    lines.push(`${name.padEnd(8)} ${[l.p50, l.p90, l.p95, l.p99, l.max].map((x) => ms(x).padStart(10)).join(' ')}`);
  }
  if (r.failures.length > 0) {
    lines.push('', 'failures:');
    for (const f of r.failures) lines.push(`${String(f.count).padStart(6)}  ${f.message}`);
  }
  return `${lines.join('\n')}\n`;
}
