// The short, CI form of the parser fuzzing: every property in properties.ts with a fixed seed
// and its small numRuns. scripts/fuzz.sh runs the same ones for minutes with random seeds.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { runProperties } from './run.js';

it('every outside-facing parser survives its properties (fixed seed, bounded runs, bounded memory)', { timeout: 30_000 }, async () => {
  const t0 = Date.now();
  const { failures, rssGrowth } = await runProperties({ seed: 20261123, scale: 1, rssBoundBytes: 128 * 1024 * 1024 });
  assert.deepEqual(failures.map((f) => `${f.name} (seed ${f.seed}, path ${f.path}): ${f.message}`), []);
  // About 1 s on an idle machine; the bound catches a slow parser, not a busy machine.
  assert.ok(Date.now() - t0 < 20_000, `took ${Date.now() - t0} ms`);
  assert.ok(rssGrowth < 128 * 1024 * 1024);
});
