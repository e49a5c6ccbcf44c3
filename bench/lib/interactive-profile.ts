/**
 * A busy engineer's interactive shell, as a stream of timed terminal bytes, for measuring what
 * an hour of recording costs in Redis. Deterministic (seeded), so runs compare. The mix: typing
 * with echo at human speed, then output of the kinds a shell session shows: short listings and
 * status lines most of the time, a screenful or several now and then, a log or build dump of
 * hundreds of KiB sometimes, and full-screen programs (top, less, vim) redrawing every second or
 * two for a minute or two. Colours and cursor movement are in, because they are in real output
 * and they cost bytes.
 */
export type ProfileStep =
  | { readonly at: number; readonly kind: 'output' | 'input'; readonly data: Uint8Array }
  | { readonly at: number; readonly kind: 'resize'; readonly cols: number; readonly rows: number };

export interface ProfileTotals {
  output: number;
  input: number;
  commands: number;
}

/** mulberry32: small, seeded, good enough to pick sizes and words. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WORDS = ['deploy', 'config', 'nginx', 'postgres', 'worker', 'cache', 'request', 'timeout', 'build', 'service', 'user', 'session', 'index', 'release', 'metrics', 'queue'];
const COMMANDS = ['ls -la', 'git status', 'kubectl get pods -n prod', 'tail -n 50 /var/log/syslog', 'df -h', 'systemctl status nginx', 'grep -r timeout /etc/nginx', 'docker ps', 'make test', 'journalctl -u app --since today'];
const PROMPT = '\x1b[01;32malice@web01\x1b[00m:\x1b[01;34m~/src/app\x1b[00m$ ';
const enc = new TextEncoder();

export function* busyInteractiveSession(durationMs: number, seed = 5, totals: ProfileTotals = { output: 0, input: 0, commands: 0 }): Generator<ProfileStep> {
  const rand = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const between = (lo: number, hi: number): number => lo + Math.floor(rand() * (hi - lo + 1));
  let t = 0;
  let cols = 120;
  let rows = 40;
  const out = (s: string, dt = 0): ProfileStep => {
    t += dt;
    const data = enc.encode(s);
    totals.output += data.length;
    return { at: t, kind: 'output', data };
  };
  const line = (): string => {
    const ts = `2026-01-1${between(0, 9)} ${String(between(0, 23)).padStart(2, '0')}:${String(between(0, 59)).padStart(2, '0')}:${String(between(0, 59)).padStart(2, '0')}`;
    const level = rand() < 0.8 ? '\x1b[32mINFO\x1b[0m ' : rand() < 0.7 ? '\x1b[33mWARN\x1b[0m ' : '\x1b[31mERROR\x1b[0m';
    const words = Array.from({ length: between(5, 14) }, () => pick(WORDS)).join(' ');
    return `${ts} ${level} ${words} id=${between(100000, 999999)}\r\n`;
  };
  /** Output split the way a pty hands it over: pieces of at most `piece` bytes, `gap` ms apart. */
  function* burst(text: string, piece: number, gap: number): Generator<ProfileStep> {
    for (let i = 0; i < text.length; i += piece) yield out(text.slice(i, i + piece), i === 0 ? between(3, 30) : gap);
  }

  yield out(`Welcome to Ubuntu 24.04.1 LTS (GNU/Linux 6.8.0-45-generic x86_64)\r\n\r\nLast login: Mon Jan 12 09:14:02 2026 from 10.0.4.17\r\n${PROMPT}`);
  while (t < durationMs) {
    // Thinking, reading the last output.
    t += between(1_000, 10_000);
    totals.commands++;
    const command = rand() < 0.7 ? pick(COMMANDS) : `${pick(COMMANDS)} | grep ${pick(WORDS)}`;
    for (const ch of command) {
      t += between(60, 220);
      totals.input += 1;
      yield { at: t, kind: 'input', data: enc.encode(ch) };
      yield out(ch, 1);
    }
    t += between(100, 400);
    totals.input += 1;
    yield { at: t, kind: 'input', data: enc.encode('\r') };
    yield out('\r\n', 1);
    const kind = rand();
    if (kind < 0.55) {
      yield* burst(Array.from({ length: between(1, 20) }, line).join(''), 4096, 1);
    } else if (kind < 0.8) {
      yield* burst(Array.from({ length: between(20, 300) }, line).join(''), 4096, 2);
    } else if (kind < 0.92) {
      yield* burst(Array.from({ length: between(1_000, 6_000) }, line).join(''), 16_384, 1);
    } else {
      // A full-screen program: the alternate screen, redrawn every second or two.
      yield out('\x1b[?1049h\x1b[H\x1b[2J');
      const until = t + between(20_000, 120_000);
      while (t < until) {
        const frame = [`\x1b[H\x1b[7m top - ${between(0, 23)}:${between(10, 59)}:${between(10, 59)} up 12 days, load average: 0.${between(10, 99)} \x1b[0m\x1b[K\r\n`];
        for (let r = 1; r < rows - 1; r++) {
          frame.push(`\x1b[${r + 1};1H${String(between(1, 99999)).padStart(7)} app  20 0 ${between(100, 999)}m ${between(10, 99)}m S ${between(0, 99)}.${between(0, 9)} ${pick(WORDS)}\x1b[K`);
        }
        yield out(frame.join(''), between(1_000, 3_000));
      }
      yield out('\x1b[?1049l');
    }
    if (rand() < 0.01) {
      cols = between(80, 200);
      rows = between(24, 60);
      yield { at: t, kind: 'resize', cols, rows };
    }
    yield out(PROMPT, between(2, 20));
  }
}
