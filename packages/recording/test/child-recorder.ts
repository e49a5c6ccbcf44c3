/**
 * A recorder in a process of its own, for the crash test: records numbered output lines in
 * best-effort mode and, after each flush (the lines are in Redis or in the spool), prints how
 * many it has. The parent stops Redis under it and then kills it with SIGKILL.
 */
import { Redis } from 'ioredis';
import { Recorder } from '../src/recorder.js';

const [url, spoolDir, sessionId] = process.argv.slice(2) as [string, string, string];
const redis = new Redis(url, { maxRetriesPerRequest: 1, retryStrategy: () => 100 });
redis.on('error', () => {});
const rec = new Recorder({ redis, mode: 'best-effort', spoolDir, storeTimeoutMs: 300, spoolFsync: 'never' });
await rec.start({
  sessionId,
  user: 'carol',
  login: 'root',
  host: 'db02',
  clientAddress: '198.51.100.9:41000',
  certSerial: 77n,
  certKeyId: 'carol',
  route: 'jump',
});
await rec.event({ type: 'exec', channel: 0, command: 'journalctl -f' });
for (let i = 0; ; i++) {
  await rec.output(0, 0, new TextEncoder().encode(`entry ${i}\n`));
  if (i % 25 === 24) {
    await rec.flush();
    process.stdout.write(`stored ${i + 1}\n`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
