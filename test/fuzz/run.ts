// Runs the property list once: CI with fixed seeds and small numRuns, the long run
// (scripts/fuzz.sh) with a random seed and a multiplier. Reports a failure with the seed and
// the path fast-check needs to replay it, and checks resident memory did not grow past a bound
// (a parser that keeps state per input would show up here, not as a crash).
import fc from 'fast-check';
import { PROPERTIES } from './properties.js';

export interface RunOptions {
  readonly seed: number;
  /** numRuns multiplier: 1 in CI. */
  readonly scale: number;
  /** Allowed RSS growth over the whole run. */
  readonly rssBoundBytes?: number;
  readonly only?: (name: string) => boolean;
}

export interface RunFailure {
  readonly name: string;
  readonly seed: number;
  readonly path: string | undefined;
  readonly message: string;
}

const gc = (): void => (globalThis as { gc?: () => void }).gc?.();

export async function runProperties(o: RunOptions): Promise<{ failures: RunFailure[]; rssGrowth: number; runs: number }> {
  const failures: RunFailure[] = [];
  gc();
  const before = process.memoryUsage().rss;
  let runs = 0;
  for (const p of PROPERTIES) {
    if (o.only !== undefined && !o.only(p.name)) continue;
    const numRuns = Math.max(1, Math.round(p.numRuns * o.scale));
    runs += numRuns;
    const details = await fc.check(p.property, { seed: o.seed, numRuns, endOnFailure: false });
    if (details.failed) {
      failures.push({
        name: p.name,
        seed: details.seed,
        path: details.counterexamplePath ?? undefined,
        message: fc.defaultReportMessage(details) ?? 'failed',
      });
    }
  }
  gc();
  const rssGrowth = process.memoryUsage().rss - before;
  const bound = o.rssBoundBytes ?? 256 * 1024 * 1024;
  if (rssGrowth > bound) failures.push({ name: 'memory', seed: o.seed, path: undefined, message: `RSS grew by ${(rssGrowth / 2 ** 20).toFixed(0)} MiB (bound ${(bound / 2 ** 20).toFixed(0)} MiB)` });
  return { failures, rssGrowth, runs };
}
