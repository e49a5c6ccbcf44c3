import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatReport, groupFailures, judgeFlat, linearFit, percentile, runOpenLoop, sessionCount, summarizeLatencies, summarizeRun, type SessionOutcome } from '../src/pcsh/bench/index.js';

/*
 * The arithmetic of `pcsh bench` on known inputs: nearest-rank percentiles (always one of the
 * measurements), failures grouped by message, and the open-loop schedule (sessions start on
 * time even when every earlier one is still running).
 */

test('percentile: nearest rank on 1..100 and on small sets', () => {
  const hundred = Array.from({ length: 100 }, (_, i) => i + 1);
  assert.equal(percentile(hundred, 50), 50);
  assert.equal(percentile(hundred, 90), 90);
  assert.equal(percentile(hundred, 99), 99);
  assert.equal(percentile(hundred, 100), 100);
  // Ten values: p95 and p99 both land on the largest (rank ceil(9.5) = 10).
  const ten = [10, 20, 30, 40, 50, 60, 70, 80, 90, 100];
  assert.equal(percentile(ten, 50), 50);
  assert.equal(percentile(ten, 90), 90);
  assert.equal(percentile(ten, 95), 100);
  assert.equal(percentile([7], 1), 7);
  assert.ok(Number.isNaN(percentile([], 50)));
  assert.throws(() => percentile(ten, 0), TypeError);
  assert.throws(() => percentile(ten, 101), TypeError);
});

test('summarizeLatencies sorts its input and orders p50 <= p90 <= p95 <= p99 <= max', () => {
  const s = summarizeLatencies([5, 1, 4, 2, 3]);
  assert.deepEqual(s, { count: 5, p50: 3, p90: 5, p95: 5, p99: 5, max: 5 });
});

test('groupFailures counts equal first lines, most frequent first, ties by message', () => {
  assert.deepEqual(groupFailures(['b refused', 'a timed out', 'b refused', 'a timed out\n  at x', 'c', '']), [
    { message: 'a timed out', count: 2 },
    { message: 'b refused', count: 2 },
    { message: '(no message)', count: 1 },
    { message: 'c', count: 1 },
  ]);
});

test('summarizeRun: counts, latencies of successes only, achieved rate over the wall time', () => {
  const outcomes: SessionOutcome[] = [
    { dueMs: 0, setupMs: 10, totalMs: 30, error: undefined },
    { dueMs: 100, setupMs: 20, totalMs: 40, error: undefined },
    { dueMs: 200, setupMs: undefined, totalMs: 5000, error: 'cannot reach the proxy' },
    { dueMs: 300, setupMs: 30, totalMs: 60, error: undefined },
  ];
  const r = summarizeRun(outcomes, { requestedRate: 10, elapsedMs: 1500 });
  assert.equal(r.requested, 4);
  assert.equal(r.succeeded, 3);
  assert.equal(r.failed, 1);
  assert.deepEqual(r.failures, [{ message: 'cannot reach the proxy', count: 1 }]);
  assert.deepEqual(r.setup, { count: 3, p50: 20, p90: 30, p95: 30, p99: 30, max: 30 });
  assert.equal(r.total.max, 60);
  assert.equal(r.achievedRate, 2);
  const text = formatReport(r);
  assert.match(text, /4 requested, 3 succeeded, 1 failed/);
  assert.match(text, /^ {5}1 {2}cannot reach the proxy$/m);
});

test('sessionCount: rate x duration, at least one, bad input is a TypeError', () => {
  assert.equal(sessionCount(10, 3000), 30);
  assert.equal(sessionCount(0.5, 1000), 1);
  assert.throws(() => sessionCount(0, 1000), TypeError);
  assert.throws(() => sessionCount(10, 0), TypeError);
});

test('runOpenLoop starts sessions on schedule while earlier ones still run, and latency counts from the due time', async () => {
  // 20/s for 500 ms = 10 sessions, each taking 300 ms: a closed loop would need 3 s.
  const started: number[] = [];
  const t0 = performance.now();
  const r = await runOpenLoop({
    ratePerSecond: 20,
    durationMs: 500,
    run: async (opened) => {
      started.push(performance.now() - t0);
      opened();
      await new Promise((res) => setTimeout(res, 300));
    },
  });
  assert.equal(r.outcomes.length, 10);
  assert.ok(r.elapsedMs < 1200, `elapsed ${r.elapsedMs}`);
  assert.ok(started[9]! < 700, `the 10th started at ${started[9]} ms`);
  for (const o of r.outcomes) assert.ok(o.totalMs >= 295 && o.setupMs! <= o.totalMs);
});

test('runOpenLoop with a concurrency limit: the wait for a slot is part of the latency; failures are outcomes', async () => {
  let n = 0;
  const r = await runOpenLoop({
    ratePerSecond: 100,
    durationMs: 40,
    concurrencyLimit: 1,
    run: async (opened) => {
      if (n++ === 2) throw new Error('refused');
      opened();
      await new Promise((res) => setTimeout(res, 50));
    },
  });
  assert.equal(r.outcomes.length, 4);
  assert.deepEqual(r.outcomes.filter((o) => o.error !== undefined).map((o) => o.error), ['refused']);
  // The last session was due at 30 ms but waited for three before it (two of 50 ms).
  const last = r.outcomes.find((o) => o.dueMs === 30)!;
  assert.ok(last.totalMs >= 100, `waited ${last.totalMs} ms`);
});

test('linearFit recovers a line; judgeFlat judges the second half only', () => {
  const line = Array.from({ length: 10 }, (_, i) => ({ t: i * 10, v: 3 * i * 10 + 7 }));
  const fit = linearFit(line);
  assert.ok(Math.abs(fit.slope - 3) < 1e-9 && Math.abs(fit.intercept - 7) < 1e-9);
  assert.throws(() => linearFit([{ t: 0, v: 1 }]), TypeError);

  // Warm-up growth in the first half, flat (with noise) after: flat.
  const warm = Array.from({ length: 30 }, (_, i) => ({ t: i * 10, v: i < 15 ? 100 + i * 10 : 250 + (i % 2 === 0 ? 3 : -3) }));
  const ok = judgeFlat(warm, { maxRelative: 0.1 });
  assert.equal(ok.flat, true, ok.reason);
  assert.ok(Math.abs(ok.growth) < 5);

  // A steady leak of 1 unit per sample from 100: +14 over the half from ~115 = ~12%: not flat.
  const leak = Array.from({ length: 30 }, (_, i) => ({ t: i * 10, v: 100 + i }));
  const bad = judgeFlat(leak, { maxRelative: 0.1, maxAbsolute: 20 });
  assert.equal(bad.flat, false);
  assert.match(bad.reason, /^grew 12\.\d% \(limit 10%\)$/);
  assert.equal(judgeFlat(leak, { maxAbsolute: 20 }).flat, true);
  assert.equal(judgeFlat(leak, { maxAbsolute: 10 }).flat, false);
  assert.throws(() => judgeFlat(leak.slice(0, 5), { maxAbsolute: 1 }), TypeError);
});
