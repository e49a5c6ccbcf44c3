import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { canonicalEventBytes, decodeEvent, encodeEvent, metaFromFields, metaToFields } from '../src/codec.js';
import { isRecordingError } from '../src/errors.js';
import { checkRecordingId, parseStreamId, recordingKeys, streamId } from '../src/keys.js';
import type { RecordingEvent, RecordingMeta } from '../src/model.js';
import { play, playbackDelay, playbackSchedule, type ReplayItem } from '../src/replay.js';
import { parseSpool } from '../src/spool.js';
import { TypedLineReader } from '../src/typed-lines.js';
import { enc } from './fixture.js';

test('typed lines: editing keys applied, escape sequences dropped, UTF-8 split across chunks', () => {
  const r = new TypedLineReader();
  const feed = (s: string | Uint8Array) => r.push(typeof s === 'string' ? enc(s) : s);
  assert.deepEqual(feed('ls -la\r'), ['ls -la']);
  assert.deepEqual(feed('cat /etc/pasx\x7fswd\r'), ['cat /etc/passwd']);
  assert.deepEqual(feed('rm -rf /\x15echo ok\r'), ['echo ok'], '^U kills the line');
  assert.deepEqual(feed('git commit -m wip\x17\x17fix\r'), ['git commit fix'], '^W erases words');
  assert.deepEqual(feed('top\x03'), [], '^C discards');
  assert.deepEqual(feed('\x1b[A\x1b[B\x1bOA\x1b[200~vim x\x1b[201~\n'), ['vim x'], 'arrows and paste markers dropped');
  assert.deepEqual(feed('\r\r   \r'), [], 'empty lines skipped');
  const e = enc('echo \u00e9t\u00e9\r');
  assert.deepEqual([...feed(e.subarray(0, 7)), ...feed(e.subarray(7))], ['echo \u00e9t\u00e9']);
  assert.deepEqual(feed('a'.repeat(10_000) + '\r')[0]?.length, 4096, 'bounded');
});

test('playback: speed, idle skipping and seeking are one pure function', () => {
  assert.equal(playbackDelay(0, 1000), 1000);
  assert.equal(playbackDelay(0, 1000, { speed: 4 }), 250);
  assert.equal(playbackDelay(0, 60_000, { idleLimitMs: 2000 }), 2000);
  assert.equal(playbackDelay(0, 60_000, { idleLimitMs: 2000, speed: 2 }), 1000);
  assert.equal(playbackDelay(0, 5000, { fromMs: 10_000 }), 0, 'before the seek point: at once');
  assert.equal(playbackDelay(9000, 12_000, { fromMs: 10_000 }), 2000, 'only the part after the seek point waits');
  assert.deepEqual(playbackSchedule([0, 100, 100, 30_100, 30_200], { idleLimitMs: 1000, speed: 2 }), [0, 50, 50, 550, 600]);
  assert.throws(() => playbackDelay(0, 1, { speed: 0 }), TypeError);
  fc.assert(
    fc.property(fc.array(fc.nat(1e6)).map((a) => a.sort((x, y) => x - y)), fc.double({ min: 0.1, max: 16, noNaN: true }), fc.nat(60_000), (offsets, speed, idle) => {
      const s = playbackSchedule(offsets, { speed, idleLimitMs: idle });
      s.forEach((w, i) => assert.ok(i === 0 || w >= s[i - 1]!, 'never goes back'));
      assert.ok((s.at(-1) ?? 0) <= (offsets.at(-1) ?? 0) / speed + 1e-6, 'never slower than real time / speed');
    }),
  );
});

test('play: the driver waits the scheduled delays and stops on abort', async () => {
  const ev = (seq: number, t: number): ReplayItem => ({ kind: 'event', event: { type: 'output', channel: 0, stream: 0, data: enc('x'), seq, t } });
  const items = async function* () {
    yield ev(1, 0);
    yield ev(2, 500);
    yield ev(3, 20_500);
    yield ev(4, 21_000);
  };
  const waits: number[] = [];
  const shown: number[] = [];
  await play(items(), (i) => void (i.kind === 'event' && shown.push(i.event.seq)), { speed: 2, idleLimitMs: 1000, sleep: async (ms) => void waits.push(ms) });
  assert.deepEqual(waits, [250, 500, 250]);
  assert.deepEqual(shown, [1, 2, 3, 4]);
  const ac = new AbortController();
  const seen: number[] = [];
  await play(items(), (i) => {
    if (i.kind === 'event') seen.push(i.event.seq);
    if (seen.length === 2) ac.abort();
  }, { signal: ac.signal, sleep: async () => {} });
  assert.deepEqual(seen, [1, 2]);
});

test('codec: events round-trip; damaged ones are ERR_CORRUPT; canonical bytes separate head from data', () => {
  const events: RecordingEvent[] = [
    { type: 'output', channel: 0, stream: 1, data: enc('err\n'), seq: 1, t: 0 },
    { type: 'input', channel: 0, data: enc('ls\r'), seq: 2, t: 5 },
    { type: 'pty', channel: 0, term: 'xterm', cols: 80, rows: 24, seq: 3, t: 5 },
    { type: 'exit', channel: 0, signal: 'KILL', seq: 4, t: 9 },
    { type: 'sftp', channel: 2, op: { op: 'write', path: '/tmp/a', bytes: 10, complete: true }, seq: 5, t: 9 },
    { type: 'forward-open', channel: 4, direction: 'local', host: 'db', port: 5432, origin: '127.0.0.1:5000', seq: 6, t: 10 },
    { type: 'end', reason: 'bye', bytesIn: 1, bytesOut: 2, interrupted: false, seq: 7, t: 11 },
  ];
  for (const e of events) {
    const { head, data } = encodeEvent(e);
    const back = decodeEvent(head, data);
    assert.deepEqual(back, e);
  }
  const bad = [
    ['not json', ''],
    ['[]', ''],
    ['{"type":"output","seq":1,"t":0,"stream":0}', ''],
    ['{"type":"pty","seq":1,"t":0,"channel":0,"cols":-1,"rows":2}', ''],
    ['{"type":"teleport","seq":1,"t":0}', ''],
    ['{"type":"shell","seq":1,"t":0,"channel":0}', 'data on a non-data event'],
  ] as const;
  for (const [head, data] of bad) assert.throws(() => decodeEvent(enc(head), enc(data)), (e) => isRecordingError(e, 'ERR_CORRUPT'), head);
  // "ab" + "c" and "a" + "bc" must not hash alike.
  assert.notDeepEqual(canonicalEventBytes({ head: enc('ab'), data: enc('c') }), canonicalEventBytes({ head: enc('a'), data: enc('bc') }));
});

test('metadata: fields round-trip through the hash; serials stay exact', () => {
  const meta: RecordingMeta = {
    id: 'x1',
    user: 'alice',
    login: 'root',
    host: 'h',
    clientAddress: '[2001:db8::1]:22',
    certSerial: '18446744073709551615',
    certKeyId: 'alice',
    route: 'jump',
    mode: 'strict',
    inputRecorded: true,
    command: 'ls',
    term: 'xterm',
    cols: 80,
    rows: 24,
    startedAt: 1,
    endedAt: 2,
    exitStatus: 0,
    bytesIn: 3,
    bytesOut: 4,
    state: 'ended',
    lastSeq: 5,
    lostEvents: 0,
    digest: 'ab',
  };
  assert.deepEqual(metaFromFields('x1', metaToFields(meta)), meta);
  assert.throws(() => metaFromFields('x1', { ...metaToFields(meta), state: 'deleted' }), (e) => isRecordingError(e, 'ERR_CORRUPT'));
});

test('keys: one hash tag per recording; ids that would break it are refused', () => {
  assert.deepEqual(recordingKeys('a-1'), { events: 'pc:{rec:a-1}:events', meta: 'pc:{rec:a-1}:meta', snapshots: 'pc:{rec:a-1}:snapshots' });
  for (const bad of ['', 'a}b', '{x', 'a b', 'x'.repeat(129), 'a\nb']) {
    assert.throws(() => checkRecordingId(bad), (e) => isRecordingError(e, 'ERR_BAD_ID'), JSON.stringify(bad));
  }
  assert.deepEqual(parseStreamId(streamId(1500, 7)), { t: 1500, seq: 7 });
  assert.equal(parseStreamId('12'), undefined);
});

test('spool parser: never throws on garbage', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 2000 }), (b) => {
      const r = parseSpool(b);
      assert.equal(r.validBytes + r.tornBytes, b.length);
    }),
  );
});
