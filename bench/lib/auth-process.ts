// The auth service in a child process of its own (bench/lib/auth-server.ts) with a config the
// caller wrote, for scripts that sample auth's memory and descriptors apart from the load
// generator's: the soak. Unlike auth-child.ts it makes no users: the caller does, through the API.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { BenchServerInfo } from './auth-server.js';

export interface AuthProcess {
  readonly pid: number;
  readonly info: BenchServerInfo;
  /** process.memoryUsage() in the service, after a full GC. */
  memory(): Promise<NodeJS.MemoryUsage>;
  stop(): Promise<void>;
}

export async function spawnAuthProcess(configPath: string): Promise<AuthProcess> {
  const entry = fileURLToPath(new URL('./auth-server.ts', import.meta.url));
  const root = fileURLToPath(new URL('../../', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', '--expose-gc', entry, configPath], { cwd: root, stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (b: Buffer) => {
    if (stderr.length < 100_000) stderr += b.toString('utf8');
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const waiting: ((line: string) => void)[] = [];
  createInterface({ input: child.stdout }).on('line', (line) => waiting.shift()?.(line));
  const nextLine = (): Promise<string> =>
    new Promise((resolve, reject) => {
      waiting.push(resolve);
      void exited.then(() => reject(new Error(`the auth service exited:\n${stderr}`)));
    });
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  };
  try {
    const info = JSON.parse(await nextLine()) as BenchServerInfo;
    return {
      pid: child.pid!,
      info,
      async memory() {
        const answer = nextLine();
        child.stdin.write('memory\n');
        const line = await answer;
        if (!line.startsWith('memory ')) throw new Error(`the auth service answered ${JSON.stringify(line)} to memory`);
        return JSON.parse(line.slice('memory '.length)) as NodeJS.MemoryUsage;
      },
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}
