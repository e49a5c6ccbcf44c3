/*
 * Is a resource flat over a long run? The soak's verdict, pure so it is tested on made-up
 * series. Only the second half of the run is judged (the first has start-up, JIT and caches
 * filling), by a least-squares line through it: a leak is a slope, and one spike or one GC is
 * not. Growth is the line's rise over that half, absolute and relative to where it started.
 */

export interface Point {
  readonly t: number;
  readonly v: number;
}

export function linearFit(points: readonly Point[]): { readonly slope: number; readonly intercept: number } {
  if (points.length < 2) throw new TypeError(`"points" expected at least 2, got ${points.length}`);
  const n = points.length;
  const mt = points.reduce((s, p) => s + p.t, 0) / n;
  const mv = points.reduce((s, p) => s + p.v, 0) / n;
  let num = 0;
  let den = 0;
  for (const p of points) {
    num += (p.t - mt) * (p.v - mv);
    den += (p.t - mt) ** 2;
  }
  const slope = den === 0 ? 0 : num / den;
  return { slope, intercept: mv - slope * mt };
}

export interface FlatLimit {
  /** Growth over the judged half above this fraction of its start fails (0.1 = 10%). */
  readonly maxRelative?: number;
  /** Growth above this many units fails (20 fds). */
  readonly maxAbsolute?: number;
}

export interface FlatVerdict {
  readonly flat: boolean;
  /** The fitted line's value at the start and the end of the judged half. */
  readonly from: number;
  readonly to: number;
  readonly growth: number;
  readonly relative: number;
  /** Why it is not flat ('' when it is). */
  readonly reason: string;
}

/** Judges the second half (by time) of a series; fewer than 4 points there is an error. */
export function judgeFlat(series: readonly Point[], limit: FlatLimit): FlatVerdict {
  if (series.length === 0) throw new TypeError('"series" expected samples, got none');
  const t0 = series[0]!.t;
  const t1 = series[series.length - 1]!.t;
  const mid = t0 + (t1 - t0) / 2;
  const half = series.filter((p) => p.t >= mid);
  if (half.length < 4) throw new TypeError(`"series" expected at least 4 samples in its second half, got ${half.length}`);
  const { slope, intercept } = linearFit(half);
  const start = half[0]!.t;
  const end = half[half.length - 1]!.t;
  const from = intercept + slope * start;
  const to = intercept + slope * end;
  const growth = to - from;
  const relative = from > 0 ? growth / from : 0;
  const reasons: string[] = [];
  if (limit.maxRelative !== undefined && relative > limit.maxRelative) reasons.push(`grew ${(relative * 100).toFixed(1)}% (limit ${(limit.maxRelative * 100).toFixed(0)}%)`);
  if (limit.maxAbsolute !== undefined && growth > limit.maxAbsolute) reasons.push(`grew ${growth.toFixed(1)} (limit ${limit.maxAbsolute})`);
  return { flat: reasons.length === 0, from, to, growth, relative, reason: reasons.join(', ') };
}
