// Micro-benchmark of the recording path alone: one Recorder fed BENCH_MIB (default 256) MiB of
// BENCH_CHUNK_KIB (default 32) KiB exec stdout chunks against a real redis-server (AOF everysec
// unless BENCH_AOF=0), honouring the recorder's backpressure like the proxy does. No ssh.
// Run: node --import tsx bench/recording-micro.ts   (profile: node --cpu-prof --import tsx ...)
import { mkdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { startRedis, tempDir } from '@portcullis/harness';
import { Recorder, recordingKeys } from '@portcullis/recording';
import { saveResults } from './lib/results.js';

const MiB = 1024 * 1024;
const TOTAL = Number(process.env['BENCH_MIB'] ?? 256) * MiB;
const CHUNK = Number(process.env['BENCH_CHUNK_KIB'] ?? 32) * 1024;

async function main(): Promise<void> {
  const dir = tempDir('portcullis-bench-recmicro-');
  const redisDir = dir.file('redis');
  mkdirSync(redisDir);
  const aof = process.env['BENCH_AOF'] === '0' ? [] : ['appendonly yes', 'appendfsync everysec'];
  const server = await startRedis({ dir: redisDir, extraConfig: aof });
  const redis = new Redis(server.url, { maxRetriesPerRequest: 1 });
  try {
    // The proxy reuses nothing, but fresh buffers per chunk are what ssh2 hands over.
    const pool = Array.from({ length: 16 }, () => randomBytes(CHUNK));
    const rec = new Recorder({ redis, mode: 'best-effort', ...(process.env['BENCH_FLUSH_KIB'] ? { flushBytes: Number(process.env['BENCH_FLUSH_KIB']) * 1024 } : {}) });
    const id = `bench-micro-${Date.now()}`;
    await rec.start({ sessionId: id, user: 'u', login: 'l', host: 'h', clientAddress: '127.0.0.1', certSerial: 1n, certKeyId: 'k', route: 'user-name' });
    await rec.event({ type: 'open', channel: 0, kind: 'session' });
    await rec.event({ type: 'exec', channel: 0, command: 'cat big' });
    const redisCpu = async (): Promise<number> => {
      const c = Object.fromEntries((await redis.info('cpu')).split('\r\n').map((l) => l.split(':')));
      return Number(c['used_cpu_user']) + Number(c['used_cpu_sys']);
    };
    const rcpu0 = await redisCpu();
    const t0 = process.hrtime.bigint();
    const cpu0 = process.cpuUsage();
    for (let sent = 0, i = 0; sent < TOTAL; sent += CHUNK, i++) {
      const chunk = Buffer.from(pool[i % pool.length]!); // a fresh copy, as from the socket
      const p = rec.output(0, 0, chunk);
      if (p) await p;
    }
    await rec.event({ type: 'exit', channel: 0, status: 0 });
    await rec.event({ type: 'close', channel: 0 });
    await rec.end({ reason: 'closed', bytesIn: 0, bytesOut: TOTAL });
    await rec.drained();
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    const stored = Number(await redis.call('MEMORY', 'USAGE', recordingKeys(id).events, 'SAMPLES', '0'));
    const cpu = process.cpuUsage(cpu0);
    const nodeCpu = (cpu.user + cpu.system) / 1e6;
    const redisCpuUsed = (await redisCpu()) - rcpu0;
    const events = await redis.xlen(recordingKeys(id).events);
    process.stdout.write(
      `recorded ${TOTAL / MiB} MiB in ${(CHUNK / 1024).toFixed(0)} KiB chunks: ${secs.toFixed(2)} s, ${(TOTAL / MiB / secs).toFixed(1)} MiB/s, node cpu ${nodeCpu.toFixed(2)} s, redis cpu ${redisCpuUsed.toFixed(2)} s, events ${events}, stream ${(stored / MiB).toFixed(0)} MiB in Redis\n`,
    );
    const perGiB = (s: number): number => s / (TOTAL / (1024 * MiB));
    saveResults({
      suite: 'recording-micro',
      title: 'recording, the recorder alone (no ssh)',
      command: 'node --import tsx bench/recording-micro.ts',
      rows: [
        { what: `recorder into Redis, ${(CHUNK / 1024).toFixed(0)} KiB chunks`, ours: TOTAL / MiB / secs, unit: 'MiB/s', higherIsBetter: true, anchors: [] },
        { what: 'recorder CPU per GiB', ours: perGiB(nodeCpu), unit: 's', higherIsBetter: false, anchors: [] },
        { what: 'Redis CPU per GiB', ours: perGiB(redisCpuUsed), unit: 's', higherIsBetter: false, anchors: [] },
      ],
      notes: [`${TOTAL / MiB} MiB of exec stdout into one Recorder against a real redis-server (${aof.length > 0 ? 'AOF everysec' : 'no AOF'}), honouring its backpressure; ${events} events, ${(stored / MiB).toFixed(0)} MiB stream in Redis. No anchor: it bounds what the proxy's recorded download can reach.`],
    });
  } finally {
    redis.disconnect();
    await server.stop();
    dir.remove();
  }
}

await main();
