// Where the proxy's time goes, from a V8 CPU profile (node --cpu-prof): self time grouped into
// the few buckets that matter for a relay. A native call (the ssh2 crypto binding, a socket
// write) has no script of its own; it counts toward the nearest caller that has one.
import { readFileSync } from 'node:fs';

interface Node {
  readonly id: number;
  readonly callFrame: { readonly functionName: string; readonly url: string };
  readonly children?: readonly number[];
}

interface Profile {
  readonly nodes: readonly Node[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

export type Bucket = 'crypto (ssh2 binding: AES-GCM)' | 'ssh2 protocol (packets, channels)' | 'proxy relay (our code)' | 'node streams, sockets, timers' | 'GC' | 'other' | 'idle';

function bucketOf(url: string, fn: string): Bucket | undefined {
  if (fn === '(idle)') return 'idle';
  if (fn === '(garbage collector)') return 'GC';
  if (url === '') return undefined;
  if (/ssh2\/lib\/protocol\/crypto/.test(url)) return 'crypto (ssh2 binding: AES-GCM)';
  if (/\/ssh2\/lib\//.test(url)) return 'ssh2 protocol (packets, channels)';
  if (/\/packages\/proxy\/src\//.test(url)) return 'proxy relay (our code)';
  if (url.startsWith('node:')) return 'node streams, sockets, timers';
  return 'other';
}

export interface ProfileReport {
  readonly totalMs: number;
  readonly buckets: readonly { readonly bucket: Bucket; readonly ms: number; readonly share: number }[];
  /** The heaviest functions by self time (native ones named by their JS caller's bucket). */
  readonly functions: readonly { readonly name: string; readonly ms: number; readonly share: number }[];
}

export function readProfile(path: string, top = 12): ProfileReport {
  const p = JSON.parse(readFileSync(path, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const bucket = (id: number): Bucket => {
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const f = byId.get(at)!.callFrame;
      const b = bucketOf(f.url, f.functionName);
      if (b !== undefined) return b;
    }
    return 'other';
  };
  const self = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + (p.timeDeltas[i + 1] ?? 0));
  let total = 0;
  const buckets = new Map<Bucket, number>();
  const fns = new Map<string, number>();
  for (const [id, us] of self) {
    total += us;
    const b = bucket(id);
    buckets.set(b, (buckets.get(b) ?? 0) + us);
    const f = byId.get(id)!.callFrame;
    if (b === 'idle') continue;
    const file = f.url === '' ? '(native)' : f.url.replace(/^.*\/node_modules\//, '').replace(/^file:\/\/.*\/packages\//, '');
    const key = `${f.functionName || '(anonymous)'} ${file}`;
    fns.set(key, (fns.get(key) ?? 0) + us);
  }
  const rows = <K extends string>(m: Map<K, number>): { name: K; ms: number; share: number }[] =>
    [...m].sort((a, b) => b[1] - a[1]).map(([name, us]) => ({ name, ms: us / 1000, share: total === 0 ? 0 : us / total }));
  return {
    totalMs: total / 1000,
    buckets: rows(buckets).map((r) => ({ bucket: r.name, ms: r.ms, share: r.share })),
    functions: rows(fns).slice(0, top),
  };
}

export function formatProfile(r: ProfileReport): string {
  const pct = (x: number): string => `${(x * 100).toFixed(1)}%`;
  return [
    `| where (self time, ${(r.totalMs / 1000).toFixed(1)} s sampled) | share |`,
    '|---|---|',
    ...r.buckets.map((b) => `| ${b.bucket} | ${pct(b.share)} |`),
    '',
    '| heaviest functions | share |',
    '|---|---|',
    ...r.functions.map((f) => `| \`${f.name.replace(/\|/g, '\\|')}\` | ${pct(f.share)} |`),
  ].join('\n');
}
