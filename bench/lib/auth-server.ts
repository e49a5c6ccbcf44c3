// The auth service as the benchmark's child process: node --import tsx bench/lib/auth-server.ts
// <config.yaml>. A process of its own so the load generator's CPU shows up apart from the
// service's (on a 2-core machine they still share the cores). It prints one JSON line on stdout
// once listening (url, pins, the first admin's invite, the embedded redis-server's pid) and
// stops on SIGTERM/SIGINT or when the parent closes stdin. On stdin it takes `profile-start`
// and `profile-stop <file>`: V8's sampling profiler through the inspector, so a profile covers
// the load alone and not the start-up (module loading would otherwise be a tenth of it); and
// `memory`: process.memoryUsage(), for the soak's samples.
import { readFileSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { AuthService, loadAuthConfig } from '@portcullis/auth';

export interface BenchServerInfo {
  readonly url: string;
  readonly fingerprint: string;
  readonly spkiPin: string;
  readonly invite: string | undefined;
  readonly redisPid: number | undefined;
}

const configPath = process.argv[2];
if (configPath === undefined) {
  process.stderr.write('usage: auth-server.ts <config.yaml>\n');
  process.exit(2);
}
const config = loadAuthConfig(configPath, { env: {} });
const service = new AuthService({ config, log: (line) => process.stderr.write(`[auth] ${line}\n`) });
const info = await service.start();
// An experiment switch (BENCH_REDIS_AUTOPIPELINING=1): ioredis reads the option on every
// command, so turning it on here shows what batching the service's Redis commands would gain.
if (process.env['BENCH_REDIS_AUTOPIPELINING'] === '1') (service.context.redis.options as { enableAutoPipelining?: boolean }).enableAutoPipelining = true;

let redisPid: number | undefined;
if ('embedded' in config.redis) {
  try {
    redisPid = Number(readFileSync(join(config.redis.embedded.stateDir, 'redis.pid'), 'utf8').trim()) || undefined;
  } catch {
    // No pid file: its CPU time is then not reported, nothing else changes.
  }
}
const out: BenchServerInfo = { url: info.url, fingerprint: info.fingerprint, spkiPin: info.spkiPin, invite: info.bootstrapInvite?.token, redisPid };
process.stdout.write(`${JSON.stringify(out)}\n`);

let stopping = false;
const stop = (): void => {
  if (stopping) return;
  stopping = true;
  service.stop().then(
    () => process.exit(0),
    (e: unknown) => {
      process.stderr.write(`[auth] stop failed: ${String(e)}\n`);
      process.exit(1);
    },
  );
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
let inspector: Session | undefined;
async function command(line: string): Promise<string> {
  const [verb, arg] = line.trim().split(/\s+/, 2);
  if (verb === 'profile-start') {
    inspector = new Session();
    inspector.connect();
    await inspector.post('Profiler.enable');
    // 250 µs: a certificate costs a few hundred µs of CPU, so 1 ms samples would be coarse.
    await inspector.post('Profiler.setSamplingInterval', { interval: 250 });
    await inspector.post('Profiler.start');
    return 'profiling';
  }
  if (verb === 'memory') {
    // After a full GC when the child runs with --expose-gc: the heap that is really retained.
    (globalThis as { gc?: () => void }).gc?.();
    return `memory ${JSON.stringify(process.memoryUsage())}`;
  }
  if (verb === 'profile-stop' && arg !== undefined && inspector !== undefined) {
    const { profile } = await inspector.post('Profiler.stop');
    inspector.disconnect();
    inspector = undefined;
    writeFileSync(arg, JSON.stringify(profile));
    return `profile ${arg}`;
  }
  return `unknown command ${JSON.stringify(line)}`;
}

// The parent holds our stdin open; when it goes away (crash, ^C) we go too.
const commands = createInterface({ input: process.stdin });
commands.on('line', (line) => {
  command(line).then(
    (answer) => process.stdout.write(`${answer}\n`),
    (e: unknown) => process.stdout.write(`error ${String(e)}\n`),
  );
});
commands.on('close', stop);
