// Scale-out, end to end: one redis-server, two auth replicas, two bastions (proxy + web gateway,
// each in its own process, each talking to a different replica) and an OpenSSH target
// (support/replicas.ts says what the replicas share and why). Any bastion serves any user; a
// lock or revocation made through one replica reaches the bastion that talks to the other; a
// session running on one bastion is watched live through the other's web gateway; and serials
// drawn concurrently through both replicas never repeat.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { AuthClient } from '@portcullis/auth';
import type { ApiResponse } from '@portcullis/auth';
import { formatPublicKey, generateKey, parseCertificateText, parsePublicKeyText, publicKeysEqual, publicPart, verifyCertificateSignature } from '@portcullis/cert-core';
import { nodeCrypto } from '@portcullis/cert-core/node';
import { SSHD_PATH, hasTool } from '@portcullis/harness';
import { listRecordings } from '@portcullis/recording';
import { LIVE_PROTOCOL, parseLiveMessage } from '@portcullis/web';
import { WebSocket } from 'ws';
import { exited } from './support/portcullis.js';
import { PASSWORD, TARGET, startCluster } from './support/replicas.js';
import type { Bastion, Cluster, Replica } from './support/replicas.js';

const missing = [...['ssh', 'ssh-keygen', 'redis-server'].filter((t) => !hasTool(t)), ...(existsSync(SSHD_PATH) ? [] : [SSHD_PATH])];
const skip = missing.length > 0 ? `needs ${missing.join(', ')}` : false;

async function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

/** An admin signed in to a bastion's web gateway, as the browser app does it (cookie + CSRF). */
async function webAdmin(b: Bastion): Promise<{ cookie: string }> {
  const client = new AuthClient({ url: b.webUrl, fingerprint: b.webFingerprint });
  const cookieOf = (r: ApiResponse): string => {
    const set = r.headers['set-cookie'];
    const line = Array.isArray(set) ? set[0] : set;
    const c = line === undefined ? undefined : /^([^=]+=[^;]*)/.exec(line)?.[1];
    if (c === undefined) throw new Error(`no session cookie from ${b.webUrl}: ${r.status}`);
    return c;
  };
  const session = await client.request<{ csrf: string }>('GET', '/web/api/session');
  assert.equal(session.status, 200);
  const login = await client.request<Record<string, unknown>>('POST', '/web/api/login/password', {
    json: { username: 'admin', password: PASSWORD },
    headers: { origin: b.webUrl, 'x-csrf-token': session.body.csrf, cookie: cookieOf(session) },
  });
  assert.equal(login.status, 200, login.bytes.toString());
  return { cookie: cookieOf(login) };
}

describe('two auth replicas and two bastions sharing one Redis', { skip }, () => {
  let c: Cluster;
  let r1: Replica;
  let r2: Replica;
  let p1: Bastion;
  let p2: Bastion;

  before(async () => {
    c = await startCluster();
    [r1, r2] = c.replicas;
    [p1, p2] = c.bastions;
  });

  after(async () => {
    await c?.stop();
  });

  it('any bastion serves any user: one certificate logs in through both to the same target', async () => {
    const alice = await c.user('alice', ['dev'], r1);
    const id = await alice.mint(r2);
    for (const [i, b] of [p1, p2].entries()) {
      const since = c.target.log().length;
      const r = await c.ssh(b, { user: 'root%web01', as: id, command: `echo through bastion ${i + 1}; id -un` });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `through bastion ${i + 1}\nroot\n`);
      // Each bastion asked its own replica for the upstream certificate the target accepted.
      await c.target.waitForLog(/Accepted publickey for root from \S+ port \d+ ssh2: ED25519-CERT SHA256:\S+ ID alice req=\S+ via=bastion\.example\.test/, { since });
      const start = await b.waitForAudit('session.start', (e) => e.fields['user'] === 'alice');
      assert.equal(start.fields['host'], TARGET);
    }
  });

  it('a lock placed through replica 1 ends a live session on bastion 2 (which asks replica 2) within seconds', async () => {
    const carol = await c.user('carol', ['dev'], r1);
    const id = await carol.mint(r1);
    const ssh = c.spawnSsh(p2, { user: 'root%web01', as: id, command: 'echo started; sleep 120' });
    try {
      await until('the session on bastion 2 to start', () => {
        assert.equal(ssh.exitCode, null, ssh.output().stderr);
        return ssh.output().stdout.includes('started') ? true : undefined;
      });
      const t0 = Date.now();
      await r1.admin('POST', '/v1/admin/locks', { target: { kind: 'user', name: 'carol' }, message: 'incident 7 (replicas)' });
      const code = await exited(ssh);
      const elapsed = Date.now() - t0;
      // Bastion 2 polls replica 2's locks every 2 s; replica 2 reads them from the shared Redis.
      assert.ok(elapsed < 10_000, `the session ended ${elapsed} ms after the lock`);
      assert.equal(code, 255);
      assert.match(ssh.output().stderr, /user "carol" was locked: incident 7 \(replicas\)/);
      const t = await p2.waitForAudit('session.terminated', (e) => e.fields['user'] === 'carol');
      assert.equal(t.fields['reason'], 'lock');
      // Bastion 1 refuses her too: replica 2's lock answer and replica 1's are the same.
      const again = await c.ssh(p1, { user: 'root%web01', as: id, command: 'true' });
      assert.equal(again.code, 255);
      await p1.waitForAudit('session.refused', (e) => e.fields['reason'] === 'ERR_ACCESS_DENIED' && /carol/.test(String(e.fields['message'])));
      process.stderr.write(`# lock through replica 1 ended the session on bastion 2 after ${elapsed} ms\n`);
    } finally {
      ssh.kill();
    }
  });

  it('a revocation made through replica 2 refuses a new connection at bastion 1 (which asks replica 1)', async () => {
    const erin = await c.user('erin', ['dev'], r2);
    const id = await erin.mint(r2, { tag: 'revoked' });
    assert.equal((await c.ssh(p1, { user: 'root%web01', as: id, command: 'echo before' })).stdout, 'before\n');
    const t0 = Date.now();
    await r2.admin('POST', '/v1/admin/revoke', { serial: id.serial, reason: 'laptop stolen' });
    // Bastion 1 polls replica 1's KRL every 2 s; a connection between revocation and poll gets in.
    let r;
    do r = await c.ssh(p1, { user: 'root%web01', as: id, command: 'echo after' });
    while (!/Permission denied/.test(r.stderr) && Date.now() - t0 < 15_000);
    const elapsed = Date.now() - t0;
    assert.equal(r.code, 255, r.stderr);
    assert.match(r.stderr, /Permission denied \(publickey\)/);
    assert.ok(elapsed < 10_000, `bastion 1 refused the revoked certificate only ${elapsed} ms after the revocation`);
    // Refused by bastion 1's KRL (ERR_REVOKED) or, when that poll has not landed yet, by replica
    // 1's check of the client certificate in the access request: both read the shared revocations.
    const refused = await p1.waitForAudit('session.refused', (e) => e.fields['stage'] === 'auth' && e.fields['certSerial'] === id.serial);
    assert.ok(
      refused.fields['reason'] === 'ERR_REVOKED' || (refused.fields['reason'] === 'ERR_ACCESS_DENIED' && /revoked/.test(String(refused.fields['message']))),
      JSON.stringify(refused.fields),
    );
    // Her next certificate (another serial) still works, through either bastion.
    const fresh = await erin.mint(r1);
    assert.equal((await c.ssh(p1, { user: 'root%web01', as: fresh, command: 'echo again' })).stdout, 'again\n');
    process.stderr.write(`# revocation through replica 2 refused at bastion 1 after ${elapsed} ms\n`);
  });

  it("a session on bastion 1 is watched live through bastion 2's web gateway", async () => {
    const dora = await c.user('dora', ['dev'], r2);
    const id = await dora.mint(r1);
    const shell = c.spawnSsh(p1, { user: 'root%web01', as: id, args: ['-tt'] });
    let ws: WebSocket | undefined;
    try {
      shell.stdin.write("printf 'before-%s\\n' viewer\n");
      await until('the shell on bastion 1', () => (shell.output().stdout.includes('before-viewer') ? true : undefined));
      const redis = r1.service.context.redis;
      const rec = await until('the live recording', async () => (await listRecordings(redis, { user: 'dora', state: 'live' }))[0]);
      await p1.waitForAudit('session.start', (e) => e.fields['user'] === 'dora');
      assert.equal(p2.audit.filter((e) => e.fields['user'] === 'dora').length, 0, 'the session runs on bastion 1 only');

      const { cookie } = await webAdmin(p2);
      const output: string[] = [];
      const messages: string[] = [];
      const opened = new WebSocket(`${p2.webUrl.replace(/^https:/, 'wss:')}/web/api/recordings/${rec.id}/live`, LIVE_PROTOCOL, {
        headers: { origin: p2.webUrl, cookie },
        // The gateway's own generated certificate; the upgrade's refusals are the gateway tests'.
        rejectUnauthorized: false,
      });
      ws = opened;
      opened.on('message', (data, binary) => (binary ? output.push(Buffer.from(data as Buffer).toString('utf8')) : messages.push(String(data))));
      opened.on('error', () => {});
      await new Promise<void>((resolve, reject) => {
        opened.once('open', () => resolve());
        opened.once('unexpected-response', (_req, res) => reject(new Error(`the live view was refused: ${res.statusCode}`)));
      });
      await until('the hello', () => (messages.some((m) => parseLiveMessage(m)?.type === 'hello') ? true : undefined));

      // Typed on bastion 1 after the viewer joined at bastion 2; the viewer gets the output.
      shell.stdin.write("printf 'typed-%s\\n' on-bastion-1\n");
      await until('the output at the viewer', () => (output.join('').includes('typed-on-bastion-1') ? true : undefined));
      shell.stdin.write('exit\n');
      assert.equal(await exited(shell), 0, shell.output().stderr);
      await until('the end at the viewer', () => (messages.some((m) => parseLiveMessage(m)?.type === 'end') ? true : undefined));
    } finally {
      ws?.close();
      shell.kill();
    }
  });

  it('serials drawn concurrently through both replicas never repeat; every certificate verifies with the one user CA', async () => {
    const frank = await c.user('frank', ['dev'], r1);
    const ca = await r2.api<{ user: { authorized_keys: string } }>('GET', '/v1/ca');
    const caKeys = ca.body.user.authorized_keys.trim().split('\n').map((l) => parsePublicKeyText(l).key);
    assert.equal(caKeys.length, 1);
    const PER_REPLICA = 300;
    const mint = async (via: Replica): Promise<{ certificate: string; serial: string }> => {
      const key = formatPublicKey(publicPart(generateKey(nodeCrypto, 'ssh-ed25519')));
      const r = await via.api<{ certificate: string; serial: string }>('POST', '/v1/certs/user', { token: frank.token, json: { public_key: key, ttl: 300 } });
      assert.equal(r.status, 200, r.bytes.toString('utf8').slice(0, 300));
      return r.body;
    };
    const t0 = Date.now();
    const issued = await Promise.all([r1, r2].flatMap((via) => Array.from({ length: PER_REPLICA }, () => mint(via))));
    const ms = Date.now() - t0;
    const serials = new Set<bigint>();
    for (const { certificate, serial } of issued) {
      const { cert } = parseCertificateText(certificate);
      assert.equal(cert.serial.toString(), serial);
      assert.ok(verifyCertificateSignature(nodeCrypto, cert), `serial ${serial}: the signature does not verify`);
      assert.ok(publicKeysEqual(cert.signatureKey, caKeys[0]!), `serial ${serial}: signed by another key than the user CA`);
      serials.add(cert.serial);
    }
    assert.equal(serials.size, 2 * PER_REPLICA, 'a serial was handed out twice');
    process.stderr.write(`# ${2 * PER_REPLICA} certificates through two replicas in ${ms} ms, all serials distinct\n`);
  });
});
