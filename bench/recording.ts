// What recording costs (issue 5): a 1 GiB transfer through the proxy recorded and not recorded,
// how many events per second Redis absorbs from recorders, and how much Redis memory an hour of
// a busy interactive session takes. Real ssh, sftp, sshd and redis-server; the proxy and its
// recorders run in this process, as they do in production. Redis runs with AOF everysec.
// Run: npm run bench:recording   (BENCH_GIB=1 BENCH_ROUNDS=2 BENCH_HOURS=1; BENCH_PARTS=transfer,absorb,memory
// and BENCH_TRANSFERS=download,upload,sftp pick what runs; BENCH_PROFILE=<dir> writes a V8 CPU
// profile of each transfer run there and prints where the time went, recorded and not)
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, truncateSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { generateKey, keySigner } from '@portcullis/cert-core';
import { nodeCrypto } from '@portcullis/cert-core/node';
import { startRedis, tempDir } from '@portcullis/harness';
import type { RedisHandle, TempDir } from '@portcullis/harness';
import { Recorder, RecordingCounters, indexKeys, recordingKeys } from '@portcullis/recording';
import { NO_TAP, localSignatureService, startSessionRecording } from '../packages/proxy/src/index.js';
import { access, startFixture } from '../packages/proxy/test/support/fixture.js';
import type { Fixture, Identity } from '../packages/proxy/test/support/fixture.js';
import { formatProfile, summarizeProfile } from './lib/cpuprofile.js';
import { busyInteractiveSession, type ProfileTotals } from './lib/interactive-profile.js';
import { fmt, median } from './lib/measure.js';
import type { Row } from './lib/measure.js';
import { saveResults } from './lib/results.js';

const GIB = Number(process.env['BENCH_GIB'] ?? 1);
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 2);
const HOURS = Number(process.env['BENCH_HOURS'] ?? 1);
const PARTS = (process.env['BENCH_PARTS'] ?? 'transfer,absorb,memory').split(',');
const TRANSFERS = (process.env['BENCH_TRANSFERS'] ?? 'download,upload,sftp').split(',');
const PROFILE_DIR = process.env['BENCH_PROFILE'];
const MiB = 1024 * 1024;

function connect(url: string): Redis {
  const r = new Redis(url, { maxRetriesPerRequest: 1, retryStrategy: () => 100 });
  r.on('error', () => {});
  return r;
}

async function info(redis: Redis, section: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const line of (await redis.info(section)).split('\r\n')) {
    const i = line.indexOf(':');
    if (i > 0) out[line.slice(0, i)] = line.slice(i + 1);
  }
  return out;
}

async function redisCpuSeconds(redis: Redis): Promise<number> {
  const c = await info(redis, 'cpu');
  return Number(c['used_cpu_user']) + Number(c['used_cpu_sys']);
}

/** Bytes Redis holds for one recording: its stream, metadata and snapshots (exact, SAMPLES 0). */
async function recordingBytes(redis: Redis, id: string): Promise<{ events: number; snapshots: number; meta: number }> {
  const k = recordingKeys(id);
  const usage = async (key: string): Promise<number> => Number((await redis.call('MEMORY', 'USAGE', key, 'SAMPLES', '0')) ?? 0);
  return { events: await usage(k.events), snapshots: await usage(k.snapshots), meta: await usage(k.meta) };
}

async function dropRecording(redis: Redis, id: string): Promise<void> {
  const k = recordingKeys(id);
  await redis.del(k.events, k.meta, k.snapshots);
  await redis.zrem(indexKeys.byTime, id);
}

// ------------------------------------------------------------------------------------------
// 1. Throughput through the proxy

/**
 * Runs `fn` under the V8 CPU profiler when BENCH_PROFILE is set (the proxy runs in this process,
 * so this is the proxy's profile, plus the benchmark's own idle waiting), and prints the summary.
 */
async function profiled(name: string, fn: () => Promise<void>): Promise<void> {
  if (PROFILE_DIR === undefined) return fn();
  mkdirSync(PROFILE_DIR, { recursive: true });
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
  try {
    await fn();
  } finally {
    const { profile } = await session.post('Profiler.stop');
    session.disconnect();
    const path = `${PROFILE_DIR}/${name}.cpuprofile`;
    writeFileSync(path, JSON.stringify(profile));
    process.stderr.write(`\n## ${name} (${path})\n${formatProfile(summarizeProfile(path, 30))}\n`);
  }
}

interface TransferCase {
  readonly key: string;
  readonly name: string;
  /** What the recording keeps of it. */
  readonly stored: string;
  run(f: Fixture, who: Identity): Promise<void>;
}

function waitExit(child: ReturnType<typeof spawn>, what: string): Promise<void> {
  let err = '';
  child.stderr?.on('data', (b: Buffer) => (err += b.toString()));
  return new Promise((resolve, reject) =>
    child.once('close', (code) => (code === 0 ? resolve() : reject(new Error(`${what} exited ${code}: ${err.trim()}`)))),
  );
}

function transferCases(dir: TempDir, bytes: number): TransferCase[] {
  // A sparse file: reading it costs no disk, and SSH does not compress, so zeros cost what any byte costs.
  const file = dir.file('transfer.bin');
  closeSync(openSync(file, 'w'));
  truncateSync(file, bytes);
  const batch = dir.file('put.batch');
  writeFileSync(batch, `put ${file} /dev/null\n`);
  const ssh = (f: Fixture, who: Identity, command: string, stdin: 'ignore' | number): ReturnType<typeof spawn> =>
    spawn('ssh', [...f.sshOptions(who), '-p', String(f.proxy.port), 'root%web01@127.0.0.1', '--', command], { stdio: [stdin, 'ignore', 'pipe'] });
  return [
    {
      key: 'download',
      name: 'download (exec, stdout)',
      stored: 'every byte, as output events',
      run: (f, who) => waitExit(ssh(f, who, `head -c ${bytes} /dev/zero`, 'ignore'), 'ssh download'),
    },
    {
      key: 'upload',
      name: 'upload (exec, stdin)',
      stored: 'byte counts (input recording off)',
      async run(f, who) {
        const fd = openSync(file, 'r');
        try {
          await waitExit(ssh(f, who, 'cat > /dev/null', fd), 'ssh upload');
        } finally {
          closeSync(fd);
        }
      },
    },
    {
      key: 'sftp',
      name: 'sftp put',
      stored: 'file operations (path, size)',
      run: (f, who) => waitExit(spawn('sftp', [...f.sshOptions(who), '-P', String(f.proxy.port), '-b', batch, 'root%web01@127.0.0.1'], { stdio: ['ignore', 'ignore', 'pipe'] }), 'sftp'),
    },
  ];
}

interface TransferResult {
  readonly name: string;
  readonly stored: string;
  readonly offMBs: number;
  readonly onMBs: number;
  readonly offCpu: number;
  readonly onCpu: number;
  readonly storedBytes: number;
  readonly lagMs: number;
  /** Redis CPU seconds per GiB transferred, recorded. */
  readonly redisCpu: number;
}

async function transferBench(dir: TempDir, server: RedisHandle): Promise<TransferResult[]> {
  const bytes = Math.round(GIB * 1024 * MiB);
  const redis = connect(server.url);
  const inspect = connect(server.url);
  const key = keySigner(nodeCrypto, generateKey(nodeCrypto, 'ssh-ed25519'));
  const recording = await startSessionRecording({ redis, spoolDir: dir.file('spool'), signatures: localSignatureService(key), retentionMs: 3600_000 });
  let recorded = false;
  const f = await startFixture({ users: [access('alice')], proxy: { tap: (m, a) => (recorded ? recording.tap(m, a) : NO_TAP) } });
  const alice = f.identity('alice');
  const results: TransferResult[] = [];
  try {
    for (const c of transferCases(dir, bytes).filter((x) => TRANSFERS.includes(x.key))) {
      const off: { s: number; cpu: number }[] = [];
      const on: { s: number; cpu: number; stored: number; lag: number; redisCpu: number }[] = [];
      for (let round = 0; round < ROUNDS; round++) {
        // Alternate which goes first, so a warming machine favours neither.
        for (const mode of round % 2 === 0 ? [false, true] : [true, false]) {
          recorded = mode;
          const rcpu0 = await redisCpuSeconds(inspect);
          const cpu0 = process.cpuUsage();
          const t0 = performance.now();
          await profiled(`${c.key}-${mode ? 'recorded' : 'plain'}-${round}`, () => c.run(f, alice));
          const s = (performance.now() - t0) / 1000;
          if (!mode) {
            const u = process.cpuUsage(cpu0);
            off.push({ s, cpu: (u.user + u.system) / 1e6 });
            continue;
          }
          // The recording finishes after the client has: how long after, and what it kept.
          const t1 = performance.now();
          while (recording.live > 0) await sleep(5);
          const lag = performance.now() - t1;
          const u = process.cpuUsage(cpu0);
          const [id] = await inspect.zrevrange(indexKeys.byTime, 0, 0);
          const b = await recordingBytes(inspect, id!);
          const redisCpu = (await redisCpuSeconds(inspect)) - rcpu0;
          on.push({ s, cpu: (u.user + u.system) / 1e6, stored: b.events + b.snapshots + b.meta, lag, redisCpu });
          await dropRecording(inspect, id!);
        }
      }
      const mbs = (xs: { s: number }[]): number => bytes / MiB / median(xs.map((x) => x.s));
      results.push({
        name: c.name,
        stored: c.stored,
        offMBs: mbs(off),
        onMBs: mbs(on),
        offCpu: median(off.map((x) => x.cpu)) / GIB,
        onCpu: median(on.map((x) => x.cpu)) / GIB,
        storedBytes: median(on.map((x) => x.stored)),
        lagMs: median(on.map((x) => x.lag)),
        redisCpu: median(on.map((x) => x.redisCpu)) / GIB,
      });
      process.stderr.write(`transfer ${c.name}: ${fmt(results.at(-1)!.offMBs)} -> ${fmt(results.at(-1)!.onMBs)} MiB/s\n`);
    }
  } finally {
    await f.stop();
    await recording.stop({ graceMs: 5_000 });
    redis.disconnect();
    inspect.disconnect();
  }
  return results;
}

// ------------------------------------------------------------------------------------------
// 2. Events per second into Redis

interface AbsorbResult {
  readonly sessions: number;
  readonly eventBytes: number;
  readonly events: number;
  readonly perSecond: number;
  readonly mibPerSecond: number;
  readonly redisCpu: number;
  readonly nodeCpu: number;
}

async function absorbBench(dir: TempDir, server: RedisHandle): Promise<AbsorbResult[]> {
  const redis = connect(server.url);
  const results: AbsorbResult[] = [];
  const spoolDir = dir.file('absorb-spool');
  mkdirSync(spoolDir, { recursive: true });
  try {
    for (const [sessions, eventBytes] of [[1, 200], [8, 200], [32, 200], [8, 4096]] as const) {
      const total = 200_000;
      const per = Math.floor(total / sessions);
      const chunk = new Uint8Array(eventBytes).fill(0x61);
      const counters = new RecordingCounters();
      // flushBytes 1: every output call is one event, no coalescing: the number measured is events.
      const recs = Array.from({ length: sessions }, () => new Recorder({ redis, mode: 'best-effort', spoolDir, flushBytes: 1, metrics: counters, retentionMs: 600_000 }));
      const ids = recs.map((_, i) => `bench-absorb-${process.pid}-${sessions}-${eventBytes}-${i}`);
      await Promise.all(
        recs.map(async (r, i) => {
          await r.start({ sessionId: ids[i]!, user: 'bench', login: 'root', host: 'web01', clientAddress: '127.0.0.1', certSerial: 1n, certKeyId: 'bench', route: 'user-name' });
          await r.event({ type: 'open', channel: 0, kind: 'session' });
          await r.event({ type: 'exec', channel: 0, command: 'bench' });
        }),
      );
      const rcpu0 = await redisCpuSeconds(redis);
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      await Promise.all(
        recs.map(async (r) => {
          for (let i = 0; i < per; i++) {
            const p = r.output(0, 0, chunk);
            if (p) await p;
          }
          await r.end({ bytesIn: 0, bytesOut: per * eventBytes, reason: 'bench' });
          await r.drained();
        }),
      );
      const s = (performance.now() - t0) / 1000;
      const u = process.cpuUsage(cpu0);
      const rcpu = (await redisCpuSeconds(redis)) - rcpu0;
      const events = counters.get('recording_events_stored_total');
      results.push({
        sessions,
        eventBytes,
        events,
        perSecond: events / s,
        mibPerSecond: (sessions * per * eventBytes) / MiB / s,
        redisCpu: rcpu / s,
        nodeCpu: (u.user + u.system) / 1e6 / s,
      });
      process.stderr.write(`absorb ${sessions}x${eventBytes} B: ${fmt(events / s)} events/s\n`);
      for (const id of ids) await dropRecording(redis, id);
    }
  } finally {
    redis.disconnect();
  }
  return results;
}

// ------------------------------------------------------------------------------------------
// 3. Redis memory per hour of a busy interactive session

interface MemoryResult {
  readonly input: boolean;
  readonly totals: ProfileTotals;
  readonly events: number;
  readonly snapshots: number;
  readonly bytes: { events: number; snapshots: number; meta: number };
  readonly usedMemoryDelta: number;
  readonly seconds: number;
}

async function memoryBench(dir: TempDir, server: RedisHandle): Promise<MemoryResult[]> {
  const redis = connect(server.url);
  const results: MemoryResult[] = [];
  const key = keySigner(nodeCrypto, generateKey(nodeCrypto, 'ssh-ed25519'));
  try {
    for (const input of [false, true]) {
      await redis.flushall();
      await redis.call('MEMORY', 'PURGE');
      const before = Number((await info(redis, 'memory'))['used_memory']);
      const base = Date.now();
      let now = base;
      const counters = new RecordingCounters();
      const rec = new Recorder({
        redis,
        mode: 'best-effort',
        spoolDir: dir.file('memory-spool'),
        recordInput: input,
        now: () => now,
        signer: key,
        metrics: counters,
        retentionMs: 30 * 24 * 3600_000,
      });
      const id = `bench-hour-${process.pid}-${input ? 'input' : 'output'}`;
      const t0 = performance.now();
      await rec.start({ sessionId: id, user: 'alice', login: 'ubuntu', host: 'web01', clientAddress: '10.0.4.17:50122', certSerial: 77n, certKeyId: 'alice req=bench', route: 'user-name' });
      await rec.event({ type: 'open', channel: 0, kind: 'session' });
      await rec.event({ type: 'pty', channel: 0, term: 'xterm-256color', cols: 120, rows: 40 });
      await rec.event({ type: 'shell', channel: 0 });
      const totals: ProfileTotals = { output: 0, input: 0, commands: 0 };
      let last = 0;
      for (const step of busyInteractiveSession(HOURS * 3600_000, 5, totals)) {
        // The recorder coalesces output for 10 ms of real time; time here runs faster, so do
        // at each gap of 10 ms what its timer would have done.
        if (step.at - last >= 10) await rec.flush();
        last = step.at;
        now = base + step.at;
        const p =
          step.kind === 'resize'
            ? rec.event({ type: 'resize', channel: 0, cols: step.cols, rows: step.rows })
            : step.kind === 'output'
              ? rec.output(0, 0, step.data)
              : rec.input(0, step.data);
        if (p) await p;
      }
      await rec.event({ type: 'exit', channel: 0, status: 0 });
      await rec.event({ type: 'close', channel: 0 });
      await rec.end({ bytesIn: totals.input, bytesOut: totals.output, reason: 'logout' });
      await rec.drained();
      const seconds = (performance.now() - t0) / 1000;
      const after = Number((await info(redis, 'memory'))['used_memory']);
      results.push({
        input,
        totals,
        events: counters.get('recording_events_stored_total'),
        snapshots: await redis.zcard(recordingKeys(id).snapshots),
        bytes: await recordingBytes(redis, id),
        usedMemoryDelta: after - before,
        seconds,
      });
      process.stderr.write(`memory (input ${input ? 'on' : 'off'}): ${fmt((after - before) / MiB)} MiB\n`);
    }
  } finally {
    redis.disconnect();
  }
  return results;
}

// ------------------------------------------------------------------------------------------

function report(t: TransferResult[], a: AbsorbResult[], m: MemoryResult[]): string {
  const pct = (on: number, off: number): string => `${fmt(((off - on) / off) * 100)}%`;
  const lines = [
    `### Throughput of a ${GIB} GiB transfer through the proxy (median of ${ROUNDS})`,
    '',
    '| transfer | what is stored | not recorded | recorded | cost | proxy CPU s/GiB (off → on) | Redis CPU s/GiB | stored in Redis | recording done after the client |',
    '|---|---|---|---|---|---|---|---|---|',
    ...t.map(
      (r) =>
        `| ${r.name} | ${r.stored} | ${fmt(r.offMBs)} MiB/s | ${fmt(r.onMBs)} MiB/s | ${pct(r.onMBs, r.offMBs)} | ${fmt(r.offCpu)} → ${fmt(r.onCpu)} | ${fmt(r.redisCpu)} | ${fmt(r.storedBytes / MiB)} MiB | ${fmt(r.lagMs)} ms |`,
    ),
    '',
    '### Events per second Redis absorbs from recorders (one connection, pipelined)',
    '',
    '| sessions | event size | events/s | MiB/s | Redis CPU | recorder CPU |',
    '|---|---|---|---|---|---|',
    ...a.map((r) => `| ${r.sessions} | ${r.eventBytes} B | ${fmt(r.perSecond)} | ${fmt(r.mibPerSecond)} | ${fmt(r.redisCpu * 100)}% | ${fmt(r.nodeCpu * 100)}% |`),
    '',
    `### Redis memory for ${HOURS} h of a busy interactive session (simulated, bench/lib/interactive-profile.ts)`,
    '',
    '| input recorded | output | typed | commands | events | snapshots | stream | snapshots | used_memory delta | per hour |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...m.map(
      (r) =>
        `| ${r.input ? 'yes' : 'no'} | ${fmt(r.totals.output / MiB)} MiB | ${fmt(r.totals.input / 1024)} KiB | ${r.totals.commands} | ${r.events} | ${r.snapshots} | ${fmt(r.bytes.events / MiB)} MiB | ${fmt(r.bytes.snapshots / MiB)} MiB | ${fmt(r.usedMemoryDelta / MiB)} MiB | ${fmt((r.bytes.events + r.bytes.snapshots + r.bytes.meta) / MiB / HOURS)} MiB |`,
    ),
  ];
  return lines.join('\n');
}

/** The figures above as report rows: each transfer recorded beside the same transfer not recorded. */
function recordingRows(t: TransferResult[], a: AbsorbResult[], m: MemoryResult[]): Row[] {
  const notRecorded = (value: number) => [{ name: 'not recorded', value }];
  return [
    ...t.map((r): Row => ({ what: `${r.name} through the proxy, ${GIB} GiB`, ours: r.onMBs, unit: 'MiB/s', higherIsBetter: true, anchors: notRecorded(r.offMBs) })),
    ...t.map((r): Row => ({ what: `proxy CPU per GiB, ${r.name}`, ours: r.onCpu, unit: 's', higherIsBetter: false, anchors: notRecorded(r.offCpu) })),
    ...a.map((r): Row => ({ what: `events into Redis, ${r.sessions} sessions × ${r.eventBytes} B`, ours: r.perSecond, unit: '/s', higherIsBetter: true, anchors: [] })),
    ...m.map((r): Row => ({
      what: `Redis memory per hour of a busy interactive session, input ${r.input ? 'recorded' : 'not recorded'}`,
      ours: (r.bytes.events + r.bytes.snapshots + r.bytes.meta) / MiB / HOURS,
      unit: 'MiB',
      higherIsBetter: false,
      anchors: [],
    })),
  ];
}

async function main(): Promise<void> {
  const dir = tempDir('portcullis-bench-recording-');
  const redisDir = dir.file('redis');
  mkdirSync(redisDir);
  // AOF everysec as a production Redis for recordings would run (BENCH_AOF=0 for none).
  const aof = process.env['BENCH_AOF'] === '0' ? [] : ['appendonly yes', 'appendfsync everysec'];
  const server = await startRedis({ dir: redisDir, extraConfig: aof });
  try {
    const t = PARTS.includes('transfer') ? await transferBench(dir, server) : [];
    const a = PARTS.includes('absorb') ? await absorbBench(dir, server) : [];
    const m = PARTS.includes('memory') ? await memoryBench(dir, server) : [];
    process.stdout.write(`${report(t, a, m)}\n`);
    saveResults({
      suite: 'recording',
      title: 'recording: what recording costs, recorded against not recorded',
      command: 'npm run bench:recording',
      rows: recordingRows(t, a, m),
      notes: [
        `Real ssh, sftp, sshd and redis-server (${aof.length > 0 ? 'AOF everysec' : 'no AOF'}); the proxy and its recorders run in the bench process. Transfers: median of ${ROUNDS}, recorded and not alternating.`,
        ...t.map((r) => `${r.name}: stores ${r.stored}; ${fmt(r.storedBytes / MiB)} MiB in Redis, recording done ${fmt(r.lagMs)} ms after the client, Redis ${fmt(r.redisCpu)} CPU s/GiB.`),
        `Memory: ${HOURS} h of a simulated busy interactive session (bench/lib/interactive-profile.ts), exact MEMORY USAGE of its keys.`,
      ],
    });
  } finally {
    await server.stop();
    dir.remove();
  }
}

await main();
// The figures are out. Under a load average of 20 the process once stayed up for 15 minutes after
// this point (a timer of a recording that outlived stop()'s grace, reconnecting to the stopped
// Redis), which held up the report's next suite; end here instead.
process.exit(0);
