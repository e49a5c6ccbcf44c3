/**
 * Where every benchmark script leaves its figures for the one report (`npm run bench`):
 * bench/out/<suite>.json, rows in measure.ts's Row shape (ours, anchors, unit, direction).
 * A script still prints its own markdown; the report reads these files, not the prints.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Row } from './measure.js';

/**
 * bench/out, or BENCH_OUT_DIR: the report (bench/report.ts) gives its suites a directory of their
 * own, so a suite run by hand meanwhile in the same checkout does not overwrite the report's figures.
 */
export const OUT_DIR = process.env['BENCH_OUT_DIR'] ?? join(dirname(fileURLToPath(import.meta.url)), '..', 'out');

export interface SuiteResults {
  /** Short id, also the file name: 'cert-core', 'auth', 'proxy', 'recording', 'web', 'scale-out', 'load'. */
  readonly suite: string;
  /** The heading the report prints for this suite. */
  readonly title: string;
  /** The command that produced the figures (what a reader runs to reproduce them). */
  readonly command: string;
  readonly rows: readonly Row[];
  /** Free-text lines printed under the table (conditions, what a ratio means). */
  readonly notes?: readonly string[];
}

export interface SavedResults extends SuiteResults {
  readonly at: string;
  readonly machine: { readonly cpus: number; readonly model: string; readonly loadavg: readonly number[] };
}

/** Writes bench/out/<suite>.json; returns its path. */
export function saveResults(results: SuiteResults): string {
  mkdirSync(OUT_DIR, { recursive: true });
  const saved: SavedResults = {
    ...results,
    at: new Date().toISOString(),
    machine: { cpus: cpus().length, model: cpus()[0]?.model ?? 'unknown', loadavg: loadavg().map((x) => Math.round(x * 10) / 10) },
  };
  const path = join(OUT_DIR, `${results.suite}.json`);
  writeFileSync(path, `${JSON.stringify(saved, null, 2)}\n`);
  return path;
}
