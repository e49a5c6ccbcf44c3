// Fault: the proxy's spool disk is full. A tmpfs of 256 KiB stands in for the spool volume.
// Best effort, Redis stopped mid-session: the recorder spools until ENOSPC, then holds events in
// memory up to its cap, then drops the oldest, counting and auditing the loss; the session runs
// on. Strict, no room even for the spool file: the session is refused with the reason. In
// neither case does the proxy crash or hang.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SSHD_PATH, hasTool, run } from '@portcullis/harness';
import { listRecordings } from '@portcullis/recording';
import type { Identity } from '../e2e/support/portcullis.js';
import { exited, metricValue, recordedOutput, recordingEnded, startRecordedSystem, until } from './support.js';
import type { RecordedSystem } from './support.js';

const missing = [...['ssh', 'redis-server', 'mount', 'umount'].filter((t) => !hasTool(t)), ...(existsSync(SSHD_PATH) ? [] : [SSHD_PATH])];
const SPOOL_BYTES = 256 * 1024;
/** Small enough that the test overflows it quickly; the default is 16 MiB. */
const MAX_HELD_BYTES = 2 * 1024 * 1024;
const OUTPUT_BYTES = 8_000_000;

/** A tiny tmpfs, or why there cannot be one (mounting needs root and a permissive sandbox). */
async function mountSpool(): Promise<{ dir: string } | { skip: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-spool-'));
  const r = await run('mount', ['-t', 'tmpfs', '-o', `size=${SPOOL_BYTES},mode=0700`, 'tmpfs', dir]);
  if (r.code !== 0) {
    rmSync(dir, { recursive: true, force: true });
    return { skip: `cannot mount a tmpfs for the spool: ${r.stderr.trim()}` };
  }
  return { dir };
}

async function unmountSpool(dir: string): Promise<void> {
  // Lazily if something still holds it: a test must not leave a mount behind.
  if ((await run('umount', [dir])).code !== 0) await run('umount', ['-l', dir]);
  rmSync(dir, { recursive: true, force: true });
}

describe('fault: the spool disk is full', { skip: missing.length > 0 ? `needs ${missing.join(', ')}` : false }, () => {
  let spool: { dir: string } | { skip: string };
  let r: RecordedSystem | undefined;
  let alice: Identity;
  let sam: Identity;

  before(async () => {
    spool = await mountSpool();
    if ('skip' in spool) return;
    r = await startRecordedSystem({ spoolDir: spool.dir, tuning: { maxHeldBytes: MAX_HELD_BYTES } });
    await r.sys.admin('PUT', '/v1/admin/roles/audited', {
      yaml: 'kind: role\nname: audited\nspec:\n  allow:\n    logins: [root]\n    host_labels: { "*": "*" }\n  options:\n    max_cert_ttl: 10m\n    record_session: strict\n',
    });
    alice = await (await r.sys.user('alice', ['dev'])).mint({ ttl: 600 });
    sam = await (await r.sys.user('sam', ['audited'])).mint({ ttl: 600 });
  });
  after(async () => {
    await r?.stop();
    if (spool !== undefined && 'dir' in spool) await unmountSpool(spool.dir);
  });

  it('best effort, Redis away: the session runs on, the loss is counted, audited and kept in the recording', async (t) => {
    if ('skip' in spool) return t.skip(spool.skip);
    const { sys } = r!;
    const go = sys.dir.file('go');
    const ssh = sys.spawnSsh({
      user: 'root%web01',
      as: alice,
      command: `echo started; while [ ! -e ${go} ]; do sleep 0.05; done; head -c ${OUTPUT_BYTES} /dev/zero | tr '\\0' x; echo; echo done`,
    });
    try {
      await until('the session to start', () => ssh.output().stdout.includes('started\n'));
      // The first line reaches Redis before the outage (it is coalesced for a few ms first), so
      // the loss below is only what the outage and the full spool cost.
      await until('the first line stored', async () => {
        const [live] = await listRecordings(r!.recorderRedis, { user: 'alice' }).catch(() => []);
        return live !== undefined && (await recordedOutput(r!.recorderRedis, live.id)).output.toString().startsWith('started\n');
      }, 20_000);
      await r!.redis.stop();
      writeFileSync(go, '');
      const code = await exited(ssh);
      assert.equal(code, 0, `exit ${code}: ${ssh.output().stderr} (${ssh.output().stdout.length} bytes out)`);
    } finally {
      ssh.kill();
    }
    assert.equal(ssh.output().stdout.length, 'started\n'.length + OUTPUT_BYTES + 'done\n'.length + 1);

    const diskFull = await sys.waitForAudit('session.recording', (e) => e.fields['kind'] === 'disk-full', 20_000);
    assert.equal(diskFull.severity, 'warning');
    assert.equal(diskFull.fields['action'], 'holding-in-memory');
    const lost = await sys.waitForAudit('session.recording', (e) => e.fields['kind'] === 'events-lost', 20_000);
    assert.equal(lost.fields['action'], 'dropping');
    assert.ok((await metricValue(sys, 'recording_events_lost_total')) > 0);
    assert.ok((await metricValue(sys, 'recording_store_failures_total', { reason: 'disk-full' })) > 0);
    assert.ok(r!.logs.some((l) => /^error recording of session .*events-lost/.test(l)), r!.logs.join('\n'));
    for (const l of r!.logs.filter((l) => / (disk-full|events-lost),/.test(l)).slice(0, 2)) t.diagnostic(l);
    await until('the proxy to let go of the session', () => sys.proxy.activeSessions() === 0);

    // Redis back: what the spool and memory held is stored, with the loss written into it.
    await r!.redis.start();
    const [found] = await until('the recording in the index', async () => {
      const l = await listRecordings(r!.recorderRedis, { user: 'alice' }).catch(() => []);
      return l.length > 0 ? l : undefined;
    }, 30_000);
    const meta = await recordingEnded(r!.recorderRedis, found!.id, 30_000);
    assert.ok(meta.lostEvents > 0, `lostEvents ${meta.lostEvents}`);
    const stored = await recordedOutput(r!.recorderRedis, meta.id);
    assert.ok(stored.types.includes('lost'), stored.types.join(' '));
    assert.ok(stored.output.length < OUTPUT_BYTES, 'some output was dropped, and says so');
    assert.ok(stored.output.toString().startsWith('started\n'));
    await until('the spool to empty', () => readdirSync((spool as { dir: string }).dir).length === 0, 30_000);
  });

  it('strict, no room for the spool file: the session is refused with the reason, the proxy carries on', async (t) => {
    if ('skip' in spool) return t.skip(spool.skip);
    const { sys } = r!;
    await r!.redis.start();
    const dir = (spool as { dir: string }).dir;
    const filler = join(dir, 'filler');
    // Fill the volume to the last block.
    const fd = openSync(filler, 'w');
    try {
      for (;;) writeSync(fd, Buffer.alloc(4096));
    } catch (e) {
      assert.equal((e as NodeJS.ErrnoException).code, 'ENOSPC');
    } finally {
      closeSync(fd);
    }
    try {
      const t0 = Date.now();
      const refused = await sys.ssh({ user: 'root%web01', as: sam, command: 'echo must not run' });
      assert.ok(Date.now() - t0 < 15_000);
      assert.notEqual(refused.code, 0, JSON.stringify(sys.audit.filter((a) => a.fields['user'] === 'sam')));
      assert.doesNotMatch(refused.stdout, /must not run/);
      assert.match(refused.stderr, /portcullis: .*record/i);
      t.diagnostic(`strict refusal: ${refused.stderr.trim()}`);
      const e = await sys.waitForAudit('session.recording', (a) => a.fields['user'] === 'sam' && a.fields['kind'] === 'disk-full');
      assert.equal(e.fields['action'], 'session-ended');
      assert.equal(e.fields['mode'], 'strict');
      // Best effort with the same full disk still works: Redis is up, nothing needs the spool.
      const ok = await sys.ssh({ user: 'root%web01', as: alice, command: 'echo best effort runs' });
      assert.equal(ok.stdout, 'best effort runs\n', ok.stderr);
    } finally {
      rmSync(filler, { force: true });
    }
    await until('the proxy to let go of the sessions', () => sys.proxy.activeSessions() === 0);
  });
});
