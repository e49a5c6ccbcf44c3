// The auth service in a child process of its own (bench/lib/auth-server.ts) with a config the
// caller wrote, for scripts that sample auth's memory and descriptors apart from the load
// generator's: the soak. Unlike auth-child.ts it makes no users: the caller does, through the API.
import { spawn } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { stopChild } from '@portcullis/harness';
import type { BenchServerInfo } from './auth-server.js';

export interface AuthProcess {
  readonly pid: number;
  readonly info: BenchServerInfo;
  /** process.memoryUsage() in the service, after a full GC. */
  memory(): Promise<NodeJS.MemoryUsage>;
  stop(): Promise<void>;
}

/** bench/lib/auth-server.ts running on a config file: its stdout a line at a time, its stderr, a stop. */
export interface AuthServerChild {
  readonly child: ChildProcessWithoutNullStreams;
  /** The next line on stdout: the start-up report, then one answer per command. */
  nextLine(): Promise<string>;
  /** Writes one command line and checks the one-line answer against `expect`. */
  command(line: string, expect: RegExp): Promise<string>;
  /** stderr so far (its first `stderrLimit` characters). */
  stderr(): string;
  /** SIGTERM, then SIGKILL after 15 s. */
  stop(): Promise<void>;
}

export function spawnAuthServer(configPath: string, o: { readonly exposeGc?: boolean; readonly stderrLimit?: number } = {}): AuthServerChild {
  const entry = fileURLToPath(new URL('./auth-server.ts', import.meta.url));
  // From the repository root, where `--import tsx` resolves, whatever the caller's directory.
  const root = fileURLToPath(new URL('../../', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', ...(o.exposeGc === true ? ['--expose-gc'] : []), entry, configPath], { cwd: root, stdio: ['pipe', 'pipe', 'pipe'] });
  const limit = o.stderrLimit ?? Infinity;
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => {
    if (stderr.length < limit) stderr += b.toString('utf8');
  });
  const waiting: { resolve: (line: string) => void; reject: (e: Error) => void }[] = [];
  const early: string[] = [];
  createInterface({ input: child.stdout }).on('line', (line) => {
    const w = waiting.shift();
    if (w === undefined) early.push(line);
    else w.resolve(line);
  });
  child.once('exit', (code) => {
    for (const w of waiting.splice(0)) w.reject(new Error(`the auth service exited (${code}):\n${stderr}`));
  });
  const nextLine = (): Promise<string> => {
    const line = early.shift();
    if (line !== undefined) return Promise.resolve(line);
    if (child.exitCode !== null || child.signalCode !== null) return Promise.reject(new Error(`the auth service has exited:\n${stderr}`));
    return new Promise((resolve, reject) => waiting.push({ resolve, reject }));
  };
  return {
    child,
    nextLine,
    async command(line, expect) {
      const answer = nextLine();
      child.stdin.write(`${line}\n`);
      const got = await answer;
      if (!expect.test(got)) throw new Error(`the auth service answered ${JSON.stringify(got)} to ${line}`);
      return got;
    },
    stderr: () => stderr,
    stop: () => stopChild(child),
  };
}

export async function spawnAuthProcess(configPath: string): Promise<AuthProcess> {
  const server = spawnAuthServer(configPath, { exposeGc: true, stderrLimit: 100_000 });
  try {
    const info = JSON.parse(await server.nextLine()) as BenchServerInfo;
    return {
      pid: server.child.pid!,
      info,
      async memory() {
        const line = await server.command('memory', /^memory /);
        return JSON.parse(line.slice('memory '.length)) as NodeJS.MemoryUsage;
      },
      stop: server.stop,
    };
  } catch (e) {
    await server.stop();
    throw e;
  }
}
