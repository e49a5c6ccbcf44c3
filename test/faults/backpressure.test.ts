// Fault: a client that reads slowly, or not at all, while its target writes as fast as it can.
// The proxy (in this process) must pass the SSH window back to the target instead of buffering:
// its memory stays flat while the target has hundreds of MiB to send, another session on the
// same proxy keeps answering at once, and when the stuck client goes everything is released.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { listRecordings } from '@portcullis/recording';
import { exited, recordingEnded, recordedSuite, skipWithoutTools, until } from './support.js';

const MiB = 1024 * 1024;
/** What the target has to send: far more than the bound asserted on the proxy's memory. */
const TARGET_BYTES = 600 * MiB;
const MEMORY_BOUND = 100 * MiB;
// A marker in the command line so the test can find the writer on the target.
const WRITER = `head -c ${TARGET_BYTES} /dev/zero`;

/** Pids of the target-side writer (sshd runs it as a child of the session's shell). */
function writers(): number[] {
  return readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e))
    .filter((e) => {
      try {
        return readFileSync(`/proc/${e}/cmdline`, 'utf8').replaceAll('\0', ' ').trim() === WRITER;
      } catch {
        return false;
      }
    })
    .map(Number);
}

describe('fault: a client that reads slowly or never', { skip: skipWithoutTools }, () => {
  const recorded = recordedSuite({ beforeStop: () => {
    for (const p of writers()) process.kill(p, 'SIGKILL');
  } });

  it('holds the target back by the SSH window: memory bounded, other sessions responsive, all released on disconnect', async (t) => {
    const { r, alice } = recorded;
    const { sys } = r;
    const echo = sys.spawnSsh({ user: 'root%web01', as: alice, command: 'while read l; do echo "got $l"; done' });
    let n = 0;
    const roundTrip = async (): Promise<number> => {
      const word = `ping${++n}`;
      const t0 = performance.now();
      echo.stdin!.write(`${word}\n`);
      await until(`the echo of ${word}`, () => echo.output().stdout.includes(`got ${word}\n`), 10_000);
      return performance.now() - t0;
    };
    await roundTrip();

    // The flood: the client's stdout is never read, so ssh stops reading its channel.
    const flood = sys.spawnSsh({ user: 'root%web01', as: alice, command: WRITER });
    flood.stdout!.removeAllListeners('data');
    flood.stdout!.pause();
    let received = 0;
    try {
      await until('the writer to run on the target', () => writers().length === 1);
      global.gc?.();
      const base = process.memoryUsage();
      let peakRss = base.rss;
      let peakHeap = base.heapUsed;
      const sample = (): void => {
        const m = process.memoryUsage();
        peakRss = Math.max(peakRss, m.rss);
        peakHeap = Math.max(peakHeap, m.heapUsed);
      };
      const latencies: number[] = [];
      const stuckUntil = Date.now() + 8_000;
      while (Date.now() < stuckUntil) {
        latencies.push(await roundTrip());
        sample();
        await sleep(200);
      }
      assert.equal(writers().length, 1, 'the writer is still blocked: the target could not send its 600 MiB');

      // Now a slow reader: about 64 KiB/s.
      flood.stdout!.on('data', (b: Buffer) => {
        received += b.length;
        flood.stdout!.pause();
        setTimeout(() => flood.stdout!.resume(), (b.length / (64 * 1024)) * 1000).unref();
      });
      flood.stdout!.resume();
      const slowUntil = Date.now() + 4_000;
      while (Date.now() < slowUntil) {
        latencies.push(await roundTrip());
        sample();
        await sleep(200);
      }
      assert.ok(received > 64 * 1024 && received < 4 * MiB, `the slow client got ${received} bytes`);
      assert.equal(writers().length, 1, 'still blocked while the client reads slowly');

      const rssGrowth = peakRss - base.rss;
      const heapGrowth = peakHeap - base.heapUsed;
      t.diagnostic(`RSS +${(rssGrowth / MiB).toFixed(1)} MiB, heap +${(heapGrowth / MiB).toFixed(1)} MiB, slow client got ${received} bytes`);
      assert.ok(rssGrowth < MEMORY_BOUND, `the proxy's RSS grew by ${(rssGrowth / MiB).toFixed(1)} MiB`);
      assert.ok(heapGrowth < MEMORY_BOUND / 2, `the proxy's heap grew by ${(heapGrowth / MiB).toFixed(1)} MiB`);
      latencies.sort((a, b) => a - b);
      const median = latencies[Math.floor(latencies.length / 2)]!;
      const worst = latencies[latencies.length - 1]!;
      t.diagnostic(`echo round trips: median ${median.toFixed(0)} ms, worst ${worst.toFixed(0)} ms over ${latencies.length}`);
      assert.ok(median < 500 && worst < 3_000, `echo round trips: median ${median.toFixed(0)} ms, worst ${worst.toFixed(0)} ms`);
      assert.equal(sys.proxy.activeSessions(), 2);
    } finally {
      flood.kill('SIGKILL');
    }
    await exited(flood);

    // Gone: the proxy lets go of the session, the target's writer dies, the recording closes.
    await until('the proxy to let go of the flooded session', () => sys.proxy.activeSessions() === 1);
    await until('the writer on the target to end', () => writers().length === 0);
    echo.stdin!.end();
    assert.equal(await exited(echo), 0, echo.output().stderr);
    await until('the proxy to let go of every session', () => sys.proxy.activeSessions() === 0);
    await until('the recorder to let go of every session', () => r.recording.live === 0);
    const recordings = await listRecordings(r.recorderRedis, { user: 'alice' });
    assert.equal(recordings.length, 2);
    for (const rec of recordings) assert.equal((await recordingEnded(r.recorderRedis, rec.id)).state, 'ended');
  });
});
