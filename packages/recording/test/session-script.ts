import type { Recorder } from '../src/recorder.js';
import { TerminalScreen } from '../src/screen.js';
import { enc } from './fixture.js';

/**
 * A scripted interactive shell session, as a proxy would relay it: the user types (input
 * echoed back as output), programs print colours, draw on the alternate screen, the window is
 * resized, a command floods the screen. Synthetic but made of the escape sequences bash, ls,
 * vim and seq really send.
 */
export type Step =
  | { readonly out: string }
  | { readonly type: string }
  | { readonly resize: readonly [number, number] }
  | { readonly wait: number };

const PROMPT = '\x1b[01;32malice@web01\x1b[00m:\x1b[01;34m~\x1b[00m$ ';

export function interactiveScript(): Step[] {
  const flood = Array.from({ length: 6000 }, (_, i) => `${i + 1}\t\x1b[3${i % 8}mline ${i + 1} of the flood\x1b[0m\r\n`).join('');
  return [
    { out: 'Welcome to Ubuntu 24.04 LTS\r\n\r\n' },
    { out: PROMPT },
    { type: 'ls -la\r' },
    { out: 'total 12\r\ndrwxr-x--- 2 ubuntu ubuntu 4096 Jan  1 00:00 \x1b[01;34m.\x1b[0m\r\n-rw-r--r-- 1 ubuntu ubuntu  220 Jan  1 00:00 .bash_logout\r\n' },
    { out: PROMPT },
    { wait: 1500 },
    { type: 'vim notes.txt\r' },
    // vim: alternate screen, clear, draw, status line, then leave.
    { out: '\x1b[?1049h\x1b[22;0;0t\x1b[?1h\x1b=\x1b[H\x1b[2J' },
    { out: '\x1b[1;1Hhello notes\x1b[2;1H\x1b[94m~                   \x1b[0m\x1b[24;1H"notes.txt" 1L, 12B\x1b[1;6H' },
    { resize: [100, 30] },
    { out: '\x1b[H\x1b[2Jhello notes (redrawn at 100x30)\x1b[30;1H-- INSERT --\x1b[1;5H' },
    { wait: 200 },
    { out: '\x1b[?1l\x1b>\x1b[?1049l\x1b[23;0;0t' },
    { out: PROMPT },
    { type: 'seq 1 6000 | colorize\r' },
    { out: flood },
    { out: PROMPT },
    { wait: 30_000 },
    // Typed with mistakes: backspaces and a killed line.
    { type: 'echo hi\x7f\x7fhello\r' },
    { out: 'hello\r\n' },
    { out: PROMPT },
    { type: 'rm -rf /\x15' },
    { type: 'sudo systemctl restart nginx\r' },
    { out: '[sudo] password for ubuntu: ' },
    { type: 'hunter2\r' },
    { out: '\r\n' },
    { out: PROMPT },
    { type: 'printf "a\\tb\\n" && tput cup 3 3\r' },
    { out: 'a\tb\r\n\x1b[4;4H' },
    { out: '\x1b[K\x1b[1mbold\x1b[0m \x1b[7mreverse\x1b[0m \u00e9t\u00e9 \u2603 \u{1F600}' },
    { type: 'exit\r' },
    { out: 'logout\r\n' },
  ];
}

/** Which typed bytes the terminal echoes: all except what a password prompt hides. */
function echoOf(typed: string, hidden: boolean): string {
  if (hidden) return '';
  return typed.replace(/\r/g, '\r\n').replace(/\x7f/g, '\b \b').replace(/\x15/g, '\r\x1b[K');
}

export interface PlayedSession {
  /** The client's final screen, from feeding it every output byte directly. */
  readonly screen: TerminalScreen;
  readonly bytesOut: number;
  readonly bytesIn: number;
}

/**
 * Plays the script through a recorder on channel 0 and, in parallel, into a terminal that stands
 * for the user's: the replay must end on that terminal's screen.
 */
export async function playScript(rec: Recorder, steps: readonly Step[], advance: (ms: number) => void, opts: { splitAt?: number } = {}): Promise<PlayedSession> {
  const screen = new TerminalScreen(80, 24);
  let bytesOut = 0;
  let bytesIn = 0;
  await rec.event({ type: 'open', channel: 0, kind: 'session' });
  await rec.event({ type: 'pty', channel: 0, term: 'xterm-256color', cols: 80, rows: 24 });
  await rec.event({ type: 'env', channel: 0, name: 'LANG', value: 'C.UTF-8' });
  await rec.event({ type: 'shell', channel: 0 });
  let hidden = false;
  const out = async (s: string): Promise<void> => {
    const b = enc(s);
    // Proxies see output in socket-sized pieces; cut big writes the same way.
    const piece = opts.splitAt ?? 16 * 1024;
    for (let i = 0; i < b.length; i += piece) {
      await rec.output(0, 0, b.subarray(i, i + piece));
      advance(1);
    }
    screen.write(b);
    bytesOut += b.length;
  };
  for (const step of steps) {
    if ('out' in step) {
      await out(step.out);
      hidden = step.out.includes('password');
    } else if ('type' in step) {
      for (const ch of step.type) {
        const b = enc(ch);
        await rec.input(0, b);
        bytesIn += b.length;
        advance(60);
        const echo = echoOf(ch, hidden);
        if (echo !== '') await out(echo);
      }
      if (step.type.endsWith('\r')) hidden = false;
    } else if ('resize' in step) {
      const [cols, rows] = step.resize;
      await rec.event({ type: 'resize', channel: 0, cols, rows });
      screen.resize(cols, rows);
    } else {
      advance(step.wait);
    }
  }
  await rec.event({ type: 'exit', channel: 0, status: 0 });
  await rec.event({ type: 'close', channel: 0 });
  return { screen, bytesOut, bytesIn };
}
