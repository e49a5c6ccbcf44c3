import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { freePort, hasTool, pingRedis, processAlive, redisProcessesUnder, run, tempDir } from '@portcullis/harness';
import { Redis } from 'ioredis';
import { EmbeddedRedis, type EmbeddedRedisEvent } from '../src/embedded.js';
import { isStoreError } from '../src/errors.js';

const skip = !hasTool('redis-server') && 'redis-server is not installed';
const EMBEDDED_TS = fileURLToPath(new URL('../src/embedded.ts', import.meta.url));

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** Every redis-server pid on the machine (other test files may run their own meanwhile). */
async function redisPids(): Promise<Set<number>> {
  const r = await run('pgrep', ['-x', 'redis-server']);
  return new Set(r.stdout.split('\n').filter(Boolean).map(Number));
}

test('embedded redis: unix socket in a 0700 dir, AOF on, survives SIGKILL with data, stop leaves nothing', { skip }, async (t) => {
  const tmp = tempDir();
  t.after(() => tmp.remove());
  const before = await redisPids();
  const events: EmbeddedRedisEvent[] = [];
  const stateDir = join(tmp.path, 'redis');
  const server = new EmbeddedRedis({ stateDir, restartDelay: { initialMs: 50, maxMs: 500 }, onEvent: (e) => events.push(e) });
  t.after(() => server.stop());
  await server.start();

  assert.equal(statSync(stateDir).mode & 0o777, 0o700);
  const conf = readFileSync(join(stateDir, 'redis.conf'), 'utf8');
  assert.match(conf, /^port 0$/m, 'no TCP listener unless asked');
  assert.match(conf, /^appendonly yes$/m);
  assert.match(conf, /^appendfsync everysec$/m);
  assert.match(conf, /^unixsocketperm 700$/m);
  assert.equal(statSync(join(stateDir, 'redis.conf')).mode & 0o777, 0o600);
  const ep = server.endpoint;
  assert.ok('path' in ep);
  assert.equal(statSync(ep.path).mode & 0o777, 0o700);
  assert.ok(await pingRedis({ path: ep.path }));

  const firstPid = server.pid;
  assert.ok(firstPid !== undefined && processAlive(firstPid));
  assert.equal(Number(readFileSync(join(stateDir, 'redis.pid'), 'utf8')), firstPid);

  const client = new Redis({ path: ep.path, maxRetriesPerRequest: 50, retryStrategy: () => 50 });
  client.on('error', () => undefined); // reconnect noise while the server is down
  t.after(() => client.disconnect());
  await client.set('pc:{test}:before-crash', 'kept');

  process.kill(firstPid, 'SIGKILL');
  await until('a restarted server', () => server.restarts === 1 && server.pid !== undefined && server.pid !== firstPid);
  assert.ok(!processAlive(firstPid));
  // Persisted through the AOF: the reply to SET came after redis wrote it to the file.
  assert.equal(await client.get('pc:{test}:before-crash'), 'kept');
  assert.deepEqual(
    events.map((e) => e.type),
    ['started', 'exited', 'started'],
  );

  const secondPid = server.pid;
  client.disconnect();
  await server.stop();
  assert.equal(server.pid, undefined);
  assert.ok(secondPid !== undefined && !processAlive(secondPid));
  assert.deepEqual(redisProcessesUnder(tmp.path), []);
  // pgrep sees every redis-server on the machine; what is new since the test began must not
  // be one of ours (other test files may start their own meanwhile).
  const after = await redisPids();
  assert.ok(!after.has(firstPid) && !after.has(secondPid), `pgrep still lists ${[...after].join(',')}`);
  assert.deepEqual([...after].filter((pid) => !before.has(pid) && redisProcessesUnder(tmp.path).includes(pid)), []);
  // Stopped is stopped: no restart scheduled behind our back.
  await sleep(300);
  assert.deepEqual(redisProcessesUnder(tmp.path), []);
});

test('embedded redis: data survives stop and start', { skip }, async (t) => {
  const tmp = tempDir();
  t.after(() => tmp.remove());
  const stateDir = join(tmp.path, 'redis');
  for (const round of [1, 2]) {
    const server = new EmbeddedRedis({ stateDir });
    await server.start();
    const ep = server.endpoint;
    assert.ok('path' in ep);
    const client = new Redis({ path: ep.path });
    try {
      if (round === 1) await client.incr('pc:{ca}:serial');
      else assert.equal(await client.incr('pc:{ca}:serial'), 2);
    } finally {
      client.disconnect();
      await server.stop();
    }
  }
  assert.deepEqual(redisProcessesUnder(tmp.path), []);
});

test('embedded redis: loopback TCP only when asked, with a 0600 password file', { skip }, async (t) => {
  const tmp = tempDir();
  t.after(() => tmp.remove());
  const port = await freePort();
  const server = new EmbeddedRedis({ stateDir: tmp.file('redis'), port });
  t.after(() => server.stop());
  await server.start();
  const ep = server.endpoint;
  assert.ok('port' in ep);
  assert.equal(ep.host, '127.0.0.1');
  assert.match(ep.password, /^[0-9a-f]{64}$/);
  assert.equal(statSync(tmp.file('redis/password')).mode & 0o777, 0o600);
  assert.equal(readFileSync(tmp.file('redis/password'), 'utf8').trim(), ep.password);
  assert.match(readFileSync(tmp.file('redis/redis.conf'), 'utf8'), /^bind 127\.0\.0\.1$/m);
  assert.equal(await pingRedis({ port }), false, 'no PING without the password');
  assert.equal(await pingRedis({ port }, ep.password), true);
  await server.stop();

  // The password is kept across restarts (clients configured with it keep working).
  const again = new EmbeddedRedis({ stateDir: tmp.file('redis'), port });
  t.after(() => again.stop());
  await again.start();
  const ep2 = again.endpoint;
  assert.ok('port' in ep2 && ep2.password === ep.password);
});

test('embedded redis: a server that cannot start fails with ERR_UNAVAILABLE and its log', { skip }, async (t) => {
  const tmp = tempDir();
  t.after(() => tmp.remove());
  // Hold the port so that redis-server's bind fails.
  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  t.after(() => blocker.close());
  const addr = blocker.address();
  assert.ok(addr !== null && typeof addr === 'object');
  const server = new EmbeddedRedis({ stateDir: tmp.file('redis'), port: addr.port, readyTimeoutMs: 5_000 });
  await assert.rejects(server.start(), (e: unknown) => {
    assert.ok(isStoreError(e, 'ERR_UNAVAILABLE'));
    assert.match(e.message, /^store: embedded redis-server \(.*redis\.conf\) exited \(code 1\) before answering PING; last log lines:\n/);
    assert.match(e.message, /Address already in use/);
    assert.ok(!e.message.includes(readFileSync(tmp.file('redis/password'), 'utf8').trim()), 'no password in the message');
    return true;
  });
  assert.equal(server.pid, undefined);
  assert.deepEqual(redisProcessesUnder(tmp.path), []);

  const missing = new EmbeddedRedis({ stateDir: tmp.file('other'), redisServerPath: tmp.file('no-such-redis-server') });
  await assert.rejects(missing.start(), (e: unknown) => isStoreError(e, 'ERR_UNAVAILABLE') && /no executable redis-server at/.test(e.message));
});

test('embedded redis: refuses a too-long socket path and a directory already supervised', { skip }, async (t) => {
  const tmp = tempDir();
  t.after(() => tmp.remove());
  assert.throws(
    () => new EmbeddedRedis({ stateDir: join(tmp.path, 'x'.repeat(120)) }),
    (e: unknown) => isStoreError(e, 'ERR_CONFIG') && /over the 107 Linux allows/.test(e.message),
  );
  const first = new EmbeddedRedis({ stateDir: tmp.file('redis') });
  t.after(() => first.stop());
  await first.start();
  const second = new EmbeddedRedis({ stateDir: tmp.file('redis') });
  await assert.rejects(second.start(), (e: unknown) => isStoreError(e, 'ERR_UNAVAILABLE') && /already supervised/.test(e.message));
  assert.ok(await pingRedis(first.endpoint as { path: string }), 'the first server is untouched');
});

/** Starts a supervisor in a separate node process, returns it and the redis pid it reports. */
async function supervisorProcess(stateDir: string, parentDeathSignal: boolean): Promise<{ kill(): Promise<void>; redisPid: number }> {
  const code = `
    const { EmbeddedRedis } = await import(${JSON.stringify(EMBEDDED_TS)});
    const s = new EmbeddedRedis({ stateDir: ${JSON.stringify(stateDir)}, parentDeathSignal: ${parentDeathSignal} });
    await s.start();
    console.log('READY ' + s.pid);
    setInterval(() => {}, 1000);
  `;
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
  await until('the supervisor process to report READY', () => /READY \d+/.test(out) || child.exitCode !== null, 20_000);
  const m = /READY (\d+)/.exec(out);
  assert.ok(m?.[1] !== undefined, `supervisor process failed: ${out}`);
  return {
    redisPid: Number(m[1]),
    kill: async () => {
      child.kill('SIGKILL');
      await exited;
    },
  };
}

test('embedded redis: a SIGKILLed supervisor takes redis-server with it (parent death signal)', { skip: skip || (!hasTool('setpriv') && 'setpriv is not installed') }, async (t) => {
  const tmp = tempDir();
  t.after(() => tmp.remove());
  const sup = await supervisorProcess(tmp.file('redis'), true);
  t.after(() => {
    if (processAlive(sup.redisPid)) process.kill(sup.redisPid, 'SIGKILL');
  });
  assert.ok(processAlive(sup.redisPid));
  // While that supervisor lives, nobody else may take its directory over.
  const intruder = new EmbeddedRedis({ stateDir: tmp.file('redis') });
  await assert.rejects(intruder.start(), (e: unknown) => isStoreError(e, 'ERR_UNAVAILABLE') && /supervised by another live process \(pid \d+\)/.test(e.message));
  assert.ok(processAlive(sup.redisPid), 'the refusal touched nothing');
  await sup.kill();
  await until('redis-server to exit after its supervisor', () => redisProcessesUnder(tmp.path).length === 0);
});

test('embedded redis: an orphan left by a dead supervisor is stopped on the next start, data intact', { skip }, async (t) => {
  const tmp = tempDir();
  t.after(() => tmp.remove());
  const stateDir = tmp.file('redis');
  // Without the parent death signal the server outlives its SIGKILLed supervisor.
  const sup = await supervisorProcess(stateDir, false);
  t.after(() => {
    if (processAlive(sup.redisPid)) process.kill(sup.redisPid, 'SIGKILL');
  });
  const orphanClient = new Redis({ path: join(stateDir, 'redis.sock') });
  await orphanClient.set('pc:{test}:orphan', 'written-before');
  orphanClient.disconnect();
  await sup.kill();
  await sleep(200);
  assert.ok(processAlive(sup.redisPid), 'the orphan lingers until the next start');
  assert.deepEqual(redisProcessesUnder(tmp.path), [sup.redisPid]);

  const events: EmbeddedRedisEvent[] = [];
  const server = new EmbeddedRedis({ stateDir, onEvent: (e) => events.push(e) });
  t.after(() => server.stop());
  await server.start();
  assert.ok(events.some((e) => e.type === 'orphan_stopped' && e.pid === sup.redisPid), `events: ${JSON.stringify(events)}`);
  assert.ok(!processAlive(sup.redisPid), 'the orphan is gone');
  assert.deepEqual(redisProcessesUnder(tmp.path), [server.pid]);
  const client = new Redis({ path: join(stateDir, 'redis.sock') });
  t.after(() => client.disconnect());
  assert.equal(await client.get('pc:{test}:orphan'), 'written-before');
});
