// `ssh-keygen -s` driven the way people script a CA: a shell loop starting one process per
// certificate, and the same fanned out with `xargs -P`. The anchors of bench/auth.ts.
import { writeFileSync } from 'node:fs';
import { runOk } from '@portcullis/harness';
import type { TempDir } from '@portcullis/harness';
import { freshEd25519PublicKey } from './keys.js';

export interface KeygenRun {
  readonly perSecond: number;
  /** Per-process times in ms, sorted (the loop only: xargs gives no per-certificate times). */
  readonly latencies: Float64Array | undefined;
}

export interface KeygenBench {
  /** `for i in …; do ssh-keygen -s …; done`, one certificate per process, one after the other. */
  loop(n: number): Promise<KeygenRun>;
  /** `seq … | xargs -P <parallel> ssh-keygen -s …`. */
  xargs(n: number, parallel: number): Promise<KeygenRun>;
}

const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * An ed25519 CA (the auth service's default user CA) and `count` distinct user public keys in
 * `dir`, so that no two processes write the same -cert.pub file.
 */
export async function prepareKeygenBench(dir: TempDir, count: number): Promise<KeygenBench> {
  await runOk('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'bench-ca', '-f', dir.file('ca')]);
  for (let i = 1; i <= count; i++) {
    writeFileSync(dir.file(`u${i}.pub`), `${freshEd25519PublicKey(`u${i}`)}\n`);
  }
  const sign = (i: string): string => `ssh-keygen -q -s ${q(dir.file('ca'))} -I bench-${i} -n ubuntu -V -1m:+5m -z ${i} ${q(dir.path)}/u${i}.pub`;
  const check = (n: number): void => {
    if (n < 1 || n > count) throw new RangeError(`keygen bench: ${n} certificates asked for, ${count} keys prepared`);
  };
  return {
    async loop(n) {
      check(n);
      // EPOCHREALTIME is a bash builtin: timing each process costs no extra process.
      const script = `set -e; for i in $(seq 1 ${n}); do t0=$EPOCHREALTIME; ${sign('$i')}; t1=$EPOCHREALTIME; echo "$t0 $t1"; done`;
      const t = performance.now();
      const r = await runOk('bash', ['-c', script], { timeoutMs: 300_000 });
      const wall = performance.now() - t;
      const lat = r.stdout
        .trim()
        .split('\n')
        .map((l) => {
          const [a, b] = l.split(' ').map(Number) as [number, number];
          return (b - a) * 1000;
        });
      return { perSecond: (n * 1000) / wall, latencies: Float64Array.from(lat).sort() };
    },
    async xargs(n, parallel) {
      check(n);
      const script = `seq 1 ${n} | xargs -P ${parallel} -I{} ${sign('{}')}`;
      const t = performance.now();
      await runOk('bash', ['-c', script], { timeoutMs: 300_000 });
      return { perSecond: (n * 1000) / (performance.now() - t), latencies: undefined };
    },
  };
}
