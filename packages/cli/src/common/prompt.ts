import { createInterface, type Interface } from 'node:readline';
import { CliError } from './errors.js';

/*
 * Questions to the user. In a terminal a secret is read without echo; otherwise (a pipe, a
 * test, a script) each answer is the next line of stdin, so `printf 'pw\n123456\n' | pcsh login`
 * works and nothing ever waits on a terminal that is not there.
 */

let lines: { readonly rl: Interface; readonly it: AsyncIterator<string> } | undefined;

function stdinIsTerminal(): boolean {
  return process.stdin.isTTY === true;
}

async function nextStdinLine(what: string): Promise<string> {
  if (lines === undefined) {
    const rl = createInterface({ input: process.stdin, terminal: false });
    lines = { rl, it: rl[Symbol.asyncIterator]() };
  }
  const r = await lines.it.next();
  if (r.done === true) throw new CliError('ERR_USAGE', `${what} is needed and stdin ended; run in a terminal or pipe it in`);
  return r.value;
}

/** Releases stdin so the process can exit (runMain calls it). */
export function closePrompts(): void {
  lines?.rl.close();
  lines = undefined;
}

/** Reads a secret: no echo in a terminal; Ctrl-C leaves with status 130 like a shell would. */
export async function promptSecret(question: string, what = 'an answer'): Promise<string> {
  if (!stdinIsTerminal()) {
    if (process.stderr.isTTY === true) process.stderr.write(question);
    return nextStdinLine(what);
  }
  const stdin = process.stdin;
  process.stderr.write(question);
  return new Promise<string>((resolve, reject) => {
    let value = '';
    const finish = (): void => {
      stdin.setRawMode(false);
      stdin.pause();
      stdin.removeListener('data', onData);
      process.stderr.write('\n');
    };
    const onData = (chunk: Buffer): void => {
      for (const ch of chunk.toString('utf8')) {
        if (ch === '\r' || ch === '\n') {
          finish();
          resolve(value);
          return;
        }
        if (ch === '\u0003') {
          finish();
          process.exit(130);
        }
        if (ch === '\u0004' && value === '') {
          finish();
          reject(new CliError('ERR_USAGE', `${what} is needed; input ended`));
          return;
        }
        if (ch === '\u007f' || ch === '\b') value = value.slice(0, -1);
        else if (ch >= ' ') value += ch;
      }
    };
    stdin.setRawMode(true);
    stdin.resume();
    stdin.on('data', onData);
  });
}

/** Reads one visible line. */
export async function promptLine(question: string, what = 'an answer'): Promise<string> {
  if (!stdinIsTerminal()) {
    if (process.stderr.isTTY === true) process.stderr.write(question);
    return nextStdinLine(what);
  }
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return await new Promise<string>((resolve) => rl.question(question, resolve));
  } finally {
    rl.close();
  }
}

/** A yes/no question that only a terminal can answer; anything but y/yes is no. */
export async function confirm(question: string): Promise<boolean> {
  if (!stdinIsTerminal() || process.stderr.isTTY !== true) return false;
  const answer = await promptLine(`${question} [y/N] `);
  return /^y(es)?$/i.test(answer.trim());
}

/** Whether a person is there to answer (both stdin and stderr are terminals). */
export function interactive(): boolean {
  return stdinIsTerminal() && process.stderr.isTTY === true;
}

/** A TOTP code from the authenticator app, checked for shape before it costs an attempt. */
export async function promptTotp(question = 'Code from your authenticator app: '): Promise<string> {
  const code = (await promptLine(question, 'a TOTP code')).trim().replace(/\s+/g, '');
  if (!/^\d{6,8}$/.test(code)) throw new CliError('ERR_USAGE', 'a TOTP code is the 6 to 8 digits your authenticator app shows');
  return code;
}
