import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { test } from 'node:test';
import fc from 'fast-check';
import { hasTool, runOk, tempDir } from '@portcullis/harness';
import { Recorder } from '../src/recorder.js';
import { readRecordingEvents } from '../src/replay.js';
import { redisFixture, sessionMeta } from './fixture.js';
import { SFTP_MAX_PACKET, SftpStreamParser, type SftpOperation } from '../src/sftp.js';

const SFTP_SERVER = '/usr/lib/openssh/sftp-server';
const skip = (!hasTool('sftp') && 'sftp is not installed') || false;
const skipRedis = skip || (!hasTool('redis-server') && 'redis-server is not installed') || false;

interface Chunk {
  readonly dir: 'c' | 's';
  readonly data: Uint8Array;
}

/**
 * Real SFTP bytes: `sftp -b batch -D wrapper` talks SFTP over the wrapper's stdio (no sshd, no
 * encryption); the wrapper runs OpenSSH's sftp-server and logs every chunk of both directions,
 * in the order they crossed, as JSON lines.
 */
async function captureSftp(dir: string, batch: string): Promise<Chunk[]> {
  const log = `${dir}/chunks.jsonl`;
  const wrapper = `${dir}/tee-sftp-server.mjs`;
  writeFileSync(
    wrapper,
    `#!${process.execPath}
import { spawn } from 'node:child_process';
import { appendFileSync } from 'node:fs';
const child = spawn(${JSON.stringify(SFTP_SERVER)}, [], { stdio: ['pipe', 'pipe', 'inherit'] });
const log = (dir, b) => appendFileSync(${JSON.stringify(log)}, JSON.stringify({ dir, b: b.toString('base64') }) + '\\n');
process.stdin.on('data', (b) => { log('c', b); child.stdin.write(b); });
process.stdin.on('end', () => child.stdin.end());
child.stdout.on('data', (b) => { log('s', b); process.stdout.write(b); });
child.on('exit', (code) => process.exitCode = code ?? 1);
`,
  );
  chmodSync(wrapper, 0o755);
  writeFileSync(`${dir}/batch`, batch);
  await runOk('sftp', ['-b', `${dir}/batch`, '-D', wrapper], { cwd: dir });
  return readFileSync(log, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const o = JSON.parse(l) as { dir: 'c' | 's'; b: string };
      return { dir: o.dir, data: new Uint8Array(Buffer.from(o.b, 'base64')) };
    });
}

function parseAll(chunks: readonly Chunk[], split: (n: number) => number[] = (n) => [n]): SftpOperation[] {
  const p = new SftpStreamParser();
  const ops: SftpOperation[] = [];
  for (const c of chunks) {
    let at = 0;
    for (const size of split(c.data.length)) {
      const piece = c.data.subarray(at, at + size);
      at += size;
      ops.push(...(c.dir === 'c' ? p.clientData(piece) : p.serverData(piece)));
    }
  }
  ops.push(...p.end());
  return ops;
}

test('sftp: operations parsed from a real sftp client and OpenSSH sftp-server', { skip }, async (t) => {
  const tmp = tempDir();
  t.after(() => tmp.remove());
  const local = `${tmp.path}/local`;
  const remote = `${tmp.path}/remote`;
  mkdirSync(local);
  mkdirSync(remote);
  // Larger than one 32 KiB SFTP write and than the parser's head buffer, not a multiple of either.
  const upload = Buffer.alloc(300_001, 7);
  writeFileSync(`${local}/up.bin`, upload);
  writeFileSync(`${remote}/down.txt`, 'hello from the target\n');
  const chunks = await captureSftp(
    tmp.path,
    [
      `put ${local}/up.bin ${remote}/up.bin`,
      `get ${remote}/down.txt ${local}/down.txt`,
      `mkdir ${remote}/d`,
      `rename ${remote}/up.bin ${remote}/d/moved.bin`,
      `chmod 640 ${remote}/d/moved.bin`,
      `ln -s ${remote}/d/moved.bin ${remote}/link`,
      `rm ${remote}/link`,
      `-rm ${remote}/no-such-file`,
      `rm ${remote}/d/moved.bin`,
      `rmdir ${remote}/d`,
    ].join('\n') + '\n',
  );
  assert.equal(readFileSync(`${local}/down.txt`, 'utf8'), 'hello from the target\n');

  const ops = parseAll(chunks);
  const summary = ops.map((o) => {
    switch (o.op) {
      case 'read':
      case 'write':
        return `${o.op} ${o.path} ${o.bytes}${o.complete ? '' : ' (incomplete)'}`;
      case 'open':
        return `open ${o.path} [${o.flags.join(',')}] ${o.ok ? 'ok' : `status ${o.status}`}`;
      case 'rename':
      case 'symlink':
        return `${o.op} ${o.path} -> ${o.target} ${o.ok ? 'ok' : `status ${o.status}`}`;
      case 'setstat':
        return `setstat ${o.path} ${o.mode?.toString(8)} ${o.ok ? 'ok' : `status ${o.status}`}`;
      default:
        return `${o.op} ${o.path} ${o.ok ? 'ok' : `status ${o.status}`}`;
    }
  });
  // The sftp client stats, realpaths and opens directories around these; only audited ops remain.
  assert.deepEqual(
    summary.filter((s) => !s.startsWith('opendir')),
    [
      `open ${remote}/up.bin [write,create,truncate] ok`,
      `write ${remote}/up.bin 300001`,
      `open ${remote}/down.txt [read] ok`,
      `read ${remote}/down.txt 22`,
      `mkdir ${remote}/d ok`,
      `rename ${remote}/up.bin -> ${remote}/d/moved.bin ok`,
      `setstat ${remote}/d/moved.bin 640 ok`,
      `symlink ${remote}/link -> ${remote}/d/moved.bin ok`,
      `remove ${remote}/link ok`,
      `remove ${remote}/no-such-file status 2`,
      `remove ${remote}/d/moved.bin ok`,
      `rmdir ${remote}/d ok`,
    ],
  );

  // However the same bytes are cut into chunks, the result is the same.
  await fc.assert(
    fc.asyncProperty(fc.array(fc.integer({ min: 1, max: 70_000 }), { minLength: 1, maxLength: 20 }), async (sizes) => {
      const split = (n: number): number[] => {
        const out: number[] = [];
        let i = 0;
        while (n > 0) {
          const s = Math.min(n, sizes[i++ % sizes.length]!);
          out.push(s);
          n -= s;
        }
        return out;
      };
      assert.deepEqual(parseAll(chunks, split), ops);
    }),
    { numRuns: 30 },
  );
  // One byte at a time, the worst case for a framer.
  assert.deepEqual(parseAll(chunks, (n) => Array.from({ length: n }, () => 1)), ops);
});

test('sftp: garbage never throws, and an oversized length claim is skipped without buffering', () => {
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 600 }), { maxLength: 30 }), fc.array(fc.boolean()), (chunks, dirs) => {
      const p = new SftpStreamParser();
      chunks.forEach((c, i) => (dirs[i] ? p.clientData(c) : p.serverData(c)));
      p.end();
    }),
    { numRuns: 300 },
  );

  // A claim of 1 GiB: the parser skips that many bytes without keeping them, then parses again.
  const p = new SftpStreamParser();
  assert.deepEqual(p.clientData(new Uint8Array([0x40, 0, 0, 0, 3])), []);
  assert.equal(p.stats.oversized, 1);
  const filler = new Uint8Array(1 << 20);
  for (let i = 0; i < 1023; i++) p.clientData(filler);
  p.clientData(filler.subarray(1)); // 2^30 - 1 bytes after the type byte: the claim is used up
  p.clientData(Uint8Array.of(0, 0, 0, 9, 13, 0, 0, 0, 5, 0, 0, 0, 0)); // REMOVE id 5 ""
  assert.equal(p.stats.packets, 1);
  assert.deepEqual(p.serverData(Uint8Array.of(0, 0, 0, 9, 101, 0, 0, 0, 5, 0, 0, 0, 0)), [
    { op: 'remove', path: '', ok: true, status: 0 },
  ]);

  // Just over the limit is refused too; just under is parsed.
  const q = new SftpStreamParser();
  const over = new Uint8Array(4);
  new DataView(over.buffer).setUint32(0, SFTP_MAX_PACKET + 1);
  q.clientData(over);
  assert.equal(q.stats.oversized, 1);
});

test('sftp: replies pair with requests by id, in any order, and a failed open is reported', () => {
  const p = new SftpStreamParser();
  const pkt = (type: number, ...fields: (number | string | Uint8Array)[]): Uint8Array => {
    const parts: Buffer[] = [Buffer.of(type)];
    for (const f of fields) {
      if (typeof f === 'number') {
        const b = Buffer.alloc(4);
        b.writeUInt32BE(f);
        parts.push(b);
      } else {
        const s = typeof f === 'string' ? Buffer.from(f) : Buffer.from(f);
        const len = Buffer.alloc(4);
        len.writeUInt32BE(s.length);
        parts.push(len, s);
      }
    }
    const body = Buffer.concat(parts);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(body.length);
    return new Uint8Array(Buffer.concat([len, body]));
  };
  p.clientData(pkt(3, 1, '/etc/shadow', 1, 0)); // OPEN id 1
  p.clientData(pkt(13, 2, '/tmp/x')); // REMOVE id 2
  assert.deepEqual(p.serverData(pkt(101, 2, 0, '', '')), [{ op: 'remove', path: '/tmp/x', ok: true, status: 0 }]);
  assert.deepEqual(p.serverData(pkt(101, 1, 3, 'Permission denied', '')), [
    { op: 'open', path: '/etc/shadow', flags: ['read'], ok: false, status: 3 },
  ]);
  // A reply to an id never asked is ignored.
  assert.deepEqual(p.serverData(pkt(102, 99, 'h')), []);
  assert.equal(p.stats.unmatched, 1);
});

test('recorder: an SFTP channel is stored as file operations, a forward as open and close with byte counts', { skip: skipRedis }, async (t) => {
  const fx = await redisFixture(t);
  const remote = `${fx.tmp.path}/remote`;
  mkdirSync(remote);
  writeFileSync(`${fx.tmp.path}/up.bin`, Buffer.alloc(100_000, 1));
  const chunks = await captureSftp(fx.tmp.path, `put ${fx.tmp.path}/up.bin ${remote}/uploaded.bin\nrm ${remote}/uploaded.bin\n`);
  const rec = new Recorder({ redis: fx.redis, mode: 'strict', spoolDir: fx.tmp.path });
  const meta = sessionMeta();
  await rec.start(meta);
  await rec.event({ type: 'open', channel: 1, kind: 'session' });
  await rec.event({ type: 'subsystem', channel: 1, name: 'sftp' });
  let sftpBytes = 0;
  for (const c of chunks) {
    sftpBytes += c.data.length;
    await (c.dir === 'c' ? rec.input(1, c.data) : rec.output(1, 0, c.data));
  }
  await rec.event({ type: 'exit', channel: 1, status: 0 });
  await rec.event({ type: 'close', channel: 1 });
  await rec.event({ type: 'open', channel: 2, kind: 'direct-tcpip' });
  await rec.event({ type: 'forward', channel: 2, direction: 'local', host: 'db.internal', port: 5432, origin: '127.0.0.1:53000' });
  await rec.input(2, new Uint8Array(1000));
  await rec.output(2, 0, new Uint8Array(250));
  await rec.event({ type: 'close', channel: 2 });
  await rec.end({ bytesIn: 0, bytesOut: 0, reason: 'done' });

  const got: string[] = [];
  for await (const item of readRecordingEvents(fx.redis, meta.sessionId)) {
    if (item.kind !== 'event') continue;
    const e = item.event;
    if (e.type === 'sftp') got.push(`sftp ${e.op.op} ${e.op.path}${'bytes' in e.op ? ` ${e.op.bytes}` : ''}`);
    else if (e.type === 'close') got.push(`close ${e.channel} in=${e.bytesIn} out=${e.bytesOut}`);
    else if (e.type === 'forward-open') got.push(`forward ${e.host}:${e.port} from ${e.origin}`);
    else got.push(e.type);
  }
  assert.deepEqual(got.filter((g) => !g.startsWith('sftp opendir')), [
    'channel',
    'subsystem',
    `sftp open ${remote}/uploaded.bin`,
    `sftp write ${remote}/uploaded.bin 100000`,
    `sftp remove ${remote}/uploaded.bin`,
    'exit',
    `close 1 in=${chunks.filter((c) => c.dir === 'c').reduce((n, c) => n + c.data.length, 0)} out=${chunks.filter((c) => c.dir === 's').reduce((n, c) => n + c.data.length, 0)}`,
    'channel',
    'forward db.internal:5432 from 127.0.0.1:53000',
    'close 2 in=1000 out=250',
    'end',
  ]);
  assert.ok(sftpBytes > 100_000, 'the file went through the channel, and none of it was stored as output');
  const m = await fx.redis.hget(`pc:{rec:${meta.sessionId}}:meta`, 'command');
  assert.equal(m, 'subsystem:sftp');
});
