/** Small timing helpers for the benchmark scripts: repeat, take medians, print ratios. */

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Runs `fn` in a loop for about `ms` milliseconds; returns operations per second. */
export function rate(fn: () => void, ms = 400): number {
  // Warm up so the JIT has compiled the path being timed.
  const warmEnd = performance.now() + Math.min(100, ms / 4);
  while (performance.now() < warmEnd) fn();
  let n = 0;
  const start = performance.now();
  let now = start;
  while (now - start < ms) {
    for (let i = 0; i < 16; i++) fn();
    n += 16;
    now = performance.now();
  }
  return (n * 1000) / (now - start);
}

/** Median of `rounds` measurements of `measureOnce`. */
export async function medianOf(rounds: number, measureOnce: () => number | Promise<number>): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < rounds; i++) xs.push(await measureOnce());
  return median(xs);
}

export interface Row {
  readonly what: string;
  readonly ours: number;
  readonly unit: string;
  readonly anchors: ReadonlyArray<{ readonly name: string; readonly value: number | undefined }>;
  /** True when a larger number is better (rates); false for durations. */
  readonly higherIsBetter: boolean;
}

export function fmt(x: number): string {
  if (x >= 100) return Math.round(x).toLocaleString('en-US');
  if (x >= 10) return x.toFixed(1);
  return x.toPrecision(3);
}

/** A markdown table: ratios first (ours vs each anchor), absolute numbers beside them. */
export function table(rows: readonly Row[]): string {
  const anchorNames = [...new Set(rows.flatMap((r) => r.anchors.map((a) => a.name)))];
  const head = ['what', ...anchorNames.map((a) => `vs ${a}`), 'Portcullis', ...anchorNames];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`];
  for (const r of rows) {
    const ratios = anchorNames.map((n) => {
      const a = r.anchors.find((x) => x.name === n)?.value;
      if (a === undefined || a === 0) return '';
      return `${fmt(r.higherIsBetter ? r.ours / a : a / r.ours)}x`;
    });
    const abs = anchorNames.map((n) => {
      const a = r.anchors.find((x) => x.name === n)?.value;
      return a === undefined ? '' : `${fmt(a)} ${r.unit}`;
    });
    lines.push(`| ${[r.what, ...ratios, `${fmt(r.ours)} ${r.unit}`, ...abs].join(' | ')} |`);
  }
  return lines.join('\n');
}
