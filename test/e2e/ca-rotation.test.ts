// CA rotation through the real proxy: auth, redis-server, the proxy (which checks client
// certificates against the user CAs it reads from auth, and logs in to the target with
// certificates the upstream CA signs) and an sshd target whose TrustedUserCAKeys file is
// refreshed from GET /v1/ca as a host's krl-refresh does. A freshly minted certificate gets
// through the proxy after every phase of a user CA rotation (the target is not concerned) and of
// an upstream CA rotation (the target learns the new key first); a host CA rotation cannot be
// completed while the proxy or a target still presents a certificate of the old host CA.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { SSHD_PATH, hasTool } from '@portcullis/harness';
import { startSystem } from './support/portcullis.js';
import type { System, UserHandle } from './support/portcullis.js';

const missing = [...['ssh', 'redis-server'].filter((t) => !hasTool(t)), ...(existsSync(SSHD_PATH) ? [] : [SSHD_PATH])];
const skip = missing.length > 0 ? `needs ${missing.join(', ')}` : false;
const CA_CACHE_MS = 200;

describe('CA rotation through the proxy', { skip }, () => {
  let sys: System;
  let alice: UserHandle;

  /** What the target's krl-refresh does (it trusts the upstream CA), then time for the proxy's CA cache. */
  const refresh = async (): Promise<number> => {
    const ca = await sys.api<{ upstream: { authorized_keys: string } }>('GET', '/v1/ca');
    writeFileSync(join(sys.dir.file('web01.example.test'), 'trusted_user_ca_keys'), ca.body.upstream.authorized_keys);
    await sleep(CA_CACHE_MS + 50);
    return ca.body.upstream.authorized_keys.trim().split('\n').length;
  };
  const loginThroughProxy = async (what: string): Promise<void> => {
    const id = await alice.mint();
    const r = await sys.ssh({ user: 'root%web01', as: id, command: 'echo through' });
    // On failure: the proxy's last audit events (its refusal reason) and the target's log.
    const why = (): string => [...sys.audit.slice(-3).map((e) => JSON.stringify(e)), sys.targets.get('web01.example.test')?.log().slice(-1500) ?? ''].join('\n');
    assert.equal(r.code, 0, `${what}: ${r.stderr}\n${why()}`);
    assert.equal(r.stdout.trim(), 'through');
  };
  const rotate = (kind: 'user' | 'upstream' | 'host', body: Record<string, unknown>) => sys.api<{ phase: string; hosts_on_old_ca?: string[] }>('POST', `/v1/admin/ca/${kind}/rotation`, { token: sys.adminToken, json: body });

  before(async () => {
    sys = await startSystem({ proxy: { timeouts: { caCacheMs: CA_CACHE_MS } } });
    alice = await sys.user('alice', ['dev']);
  });

  after(async () => {
    await sys?.stop();
  });

  it('user CA: every phase, the proxy follows, the target is not concerned, a new login each time', async () => {
    await loginThroughProxy('before');
    const early = await alice.mint();
    for (const phase of ['init', 'update_clients', 'update_servers', 'standby'] as const) {
      const r = await rotate('user', { phase });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      // Targets never trust the user CA: their file keeps one upstream key throughout.
      assert.equal(await refresh(), 1, phase);
      await loginThroughProxy(phase);
      // A certificate of the old CA works until the old CA is dropped, and is refused after.
      assert.equal((await sys.ssh({ user: 'root%web01', as: early, command: 'true' })).code, phase === 'standby' ? 255 : 0, phase);
    }
  });

  it('upstream CA: every phase, refreshed target, a new login each time', async () => {
    for (const phase of ['init', 'update_clients', 'update_servers', 'standby'] as const) {
      const r = await rotate('upstream', { phase });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      // Before update_clients the old key still signs, so a target that has not refreshed works;
      // from update_clients on the target must have refreshed in init (it has, below).
      await loginThroughProxy(`upstream ${phase}, before the refresh`);
      assert.equal(await refresh(), phase === 'standby' ? 1 : 2, phase);
      await loginThroughProxy(`upstream ${phase}`);
    }
  });

  it('host CA: completing is refused while the proxy and the target present old certificates; rollback keeps logins working', async () => {
    for (const phase of ['init', 'update_clients', 'update_servers'] as const) {
      assert.equal((await rotate('host', { phase })).status, 200);
      await sleep(CA_CACHE_MS + 50);
      await loginThroughProxy(`host ${phase}`);
    }
    const early = await rotate('host', { phase: 'standby' });
    assert.equal(early.status, 409);
    assert.match(JSON.stringify(early.body), /bastion\.example\.test/);
    assert.match(JSON.stringify(early.body), /web01\.example\.test/);
    assert.equal((await rotate('host', { rollback: true })).status, 200);
    await sleep(CA_CACHE_MS + 50);
    await loginThroughProxy('host rolled back');
  });
});
