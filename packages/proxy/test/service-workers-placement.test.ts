// The decisions behind `workers` (src/service-workers.ts): how many processes a config asks
// for, and which spool directories each process writes and uploads, so that every directory
// has exactly one uploader whatever the previous run's worker count was.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isProxyError } from '../src/errors.js';
import { parseProxyServiceConfig } from '../src/service-config.js';
import { spoolPlacement, workerCount } from '../src/service-workers.js';

const base = { state_dir: '/var/lib/portcullis/proxy', redis: { url: 'redis://redis:6379' } };

test('proxy config: workers is 1 unless set, a positive count or auto', () => {
  assert.equal(parseProxyServiceConfig(base).workers, 1);
  assert.equal(parseProxyServiceConfig({ ...base, workers: 4 }).workers, 4);
  assert.equal(parseProxyServiceConfig({ ...base, workers: 'auto' }).workers, 'auto');
  for (const workers of [0, -1, 1.5, 'all', '2']) {
    assert.throws(() => parseProxyServiceConfig({ ...base, workers }), (e: unknown) => isProxyError(e, 'ERR_CONFIG') && /workers/.test(e.message), String(workers));
  }
});

test('workerCount: auto is one per core, a count is itself', () => {
  assert.equal(workerCount('auto', 8), 8);
  assert.equal(workerCount('auto', 0), 1);
  assert.equal(workerCount(3, 8), 3);
});

test('spoolPlacement: one uploader per directory', () => {
  const b = '/s/recordings';
  const entries = ['worker-0', 'worker-1', 'worker-3', 'abc.spool', 'worker-x', 'worker-2'];
  // A single process writes the base directory and takes every worker's.
  assert.deepEqual(spoolPlacement(b, undefined, entries), { spoolDir: b, adopt: [`${b}/worker-0`, `${b}/worker-1`, `${b}/worker-2`, `${b}/worker-3`] });
  // Two workers: each its own; worker 0 also the base directory and what a run with four left.
  assert.deepEqual(spoolPlacement(b, { index: 0, count: 2 }, entries), { spoolDir: `${b}/worker-0`, adopt: [b, `${b}/worker-2`, `${b}/worker-3`] });
  assert.deepEqual(spoolPlacement(b, { index: 1, count: 2 }, entries), { spoolDir: `${b}/worker-1`, adopt: [] });
  assert.deepEqual(spoolPlacement(b, { index: 0, count: 2 }, []), { spoolDir: `${b}/worker-0`, adopt: [b] });
  // Every directory named above has exactly one uploader among the processes of one run.
  for (const count of [1, 2, 4, 5]) {
    const places = count === 1 ? [undefined] : Array.from({ length: count }, (_, index) => ({ index, count }));
    const dirs = places.flatMap((p) => {
      const s = spoolPlacement(b, p, entries);
      return [s.spoolDir, ...s.adopt];
    });
    assert.equal(new Set(dirs).size, dirs.length, `count ${count}: ${dirs.join(' ')}`);
    for (const d of [b, ...entries.filter((e) => /^worker-\d+$/.test(e)).map((e) => `${b}/${e}`)]) assert.ok(dirs.includes(d), `count ${count}: ${d} has an uploader`);
  }
});
