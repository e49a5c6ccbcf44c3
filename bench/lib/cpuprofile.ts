// Reads a V8 .cpuprofile (node --cpu-prof) and says where the time went: self time per
// function and per module (package or source file), which is what a flame graph would show
// without needing a browser.
import { readFileSync } from 'node:fs';

interface ProfileNode {
  readonly id: number;
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
  readonly children?: readonly number[];
}
interface Profile {
  readonly nodes: readonly ProfileNode[];
  readonly startTime: number;
  readonly endTime: number;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

export interface ProfileEntry {
  readonly name: string;
  /** Share of all samples, 0..1. */
  readonly share: number;
  readonly ms: number;
}

export interface ProfileSummary {
  readonly totalMs: number;
  /** Share of samples in which V8 ran no JavaScript and was not collecting garbage. */
  readonly idle: number;
  readonly functions: readonly ProfileEntry[];
  /**
   * Self time per package or source folder, native and `node:` frames counted to the nearest
   * caller that is ours or a package's: a socket write shows up under whoever wrote.
   */
  readonly owners: readonly ProfileEntry[];
}

/** Where a script lives, short: `fastify/lib/route.js`, `auth/src/ca/issuer.ts`, `node:internal/…`. */
function moduleOf(url: string): string {
  if (url === '') return '(native)';
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + '/node_modules/'.length).split('/');
    const pkg = rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
    return pkg;
  }
  const pk = /\/packages\/([^/]+)\/(.*)$/.exec(url);
  if (pk) return `${pk[1]}/${pk[2]}`;
  return url.replace(/^file:\/\/.*\/(bench\/.*)$/, '$1');
}

export function summarizeProfile(path: string, top = 25): ProfileSummary {
  const p = JSON.parse(readFileSync(path, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const isOwner = (url: string): boolean => url !== '' && !url.startsWith('node:');
  const ownerOf = (id: number): string => {
    const self = byId.get(id)!.callFrame;
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const f = byId.get(at)!.callFrame;
      if (isOwner(f.url)) return moduleOf(f.url).replace(/^(auth|cert-core|proxy)\/src\/([^/]+)(\/.*)?$/, '$1/src/$2');
    }
    // No JavaScript of ours above it: the event loop's own work (or GC, idle).
    return self.url.startsWith('node:') ? 'node internals (event loop, streams, TLS)' : self.functionName;
  };
  const selfUs = new Map<number, number>();
  // A sample's time is the delta to the next sample.
  for (let i = 0; i < p.samples.length; i++) {
    const dt = p.timeDeltas[i + 1] ?? 0;
    selfUs.set(p.samples[i]!, (selfUs.get(p.samples[i]!) ?? 0) + dt);
  }
  let total = 0;
  let idle = 0;
  const fns = new Map<string, number>();
  const owners = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const n = byId.get(id)!;
    total += us;
    const f = n.callFrame;
    if (f.functionName === '(idle)') {
      idle += us;
      continue;
    }
    // tsx compiles each .ts file without keeping lines, so a line there would mislead.
    const where = f.url === '' ? '' : ` ${moduleOf(f.url)}${f.url.endsWith('.ts') ? '' : `:${f.lineNumber + 1}`}`;
    const key = `${f.functionName || '(anonymous)'}${where}`;
    fns.set(key, (fns.get(key) ?? 0) + us);
    const o = ownerOf(id);
    owners.set(o, (owners.get(o) ?? 0) + us);
  }
  const entries = (m: Map<string, number>): ProfileEntry[] =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, us]) => ({ name, ms: us / 1000, share: total === 0 ? 0 : us / total }));
  return { totalMs: total / 1000, idle: total === 0 ? 0 : idle / total, functions: entries(fns), owners: entries(owners) };
}

export function formatProfile(s: ProfileSummary): string {
  const pct = (x: number): string => `${(x * 100).toFixed(1)}%`;
  const busy = 1 - s.idle;
  const rows = (es: readonly ProfileEntry[]): string =>
    es.map((e) => `| ${pct(e.share)} | ${busy === 0 ? '' : pct(e.share / busy)} | ${e.name.replace(/\|/g, '\\|')} |`).join('\n');
  return [
    `${(s.totalMs / 1000).toFixed(1)} s sampled, ${pct(s.idle)} idle (the main thread waiting on I/O)`,
    '',
    '| self | of busy | package / folder (with the native and node: work it called) |',
    '|---|---|---|',
    rows(s.owners),
    '',
    '| self | of busy | function |',
    '|---|---|---|',
    rows(s.functions),
  ].join('\n');
}

