import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { formatCertificate, formatPrivateKey } from '@portcullis/cert-core';
import { nodeCrypto } from '@portcullis/cert-core/node';
import { HttpAuthority, enrollProxy } from '@portcullis/proxy';
import type { ProxyAuditEvent } from '@portcullis/proxy';
import { parseProxyServiceConfig, startProxyService, type RunningProxyService } from '../src/portcullis/services.js';
import { joinHostKey, startSshd, type HostJoinAnswer, type SshdHandle } from '@portcullis/harness';
import { ADMIN_PASSWORD, adminLaptop, laptop, ok, startStack, type Laptop, type Stack } from './pcsh-login-fixture.js';

/*
 * The pcsh ssh tests' world: the login fixture's redis, OpenID provider and auth, plus an
 * OpenSSH target (web01, env=dev) and a proxy that recorded sessions go through, both enrolled
 * through auth's /v1/join with join tokens as an operator would make them. A user (carol,
 * role dev) is logged in with pcsh on her own laptop, PCSH_PROXY pointing at the proxy.
 */

export interface SshWorld {
  readonly stack: Stack;
  readonly admin: Laptop;
  readonly carol: Laptop;
  readonly adminToken: string;
  readonly proxy: RunningProxyService;
  readonly proxyAddress: string;
  readonly web01: SshdHandle;
  readonly audit: ProxyAuditEvent[];
  adminApi<T = Record<string, unknown>>(method: string, path: string, json?: unknown): Promise<T>;
  stop(): Promise<void>;
}

export async function startSshWorld(prefix: string): Promise<SshWorld> {
  const stack = await startStack(prefix);
  const stops: (() => Promise<unknown> | void)[] = [() => stack.stop()];
  try {
    const admin = await adminLaptop(stack);
    const login = await stack.client.request<{ token: string }>('POST', '/v1/login/password', { json: { username: 'admin', password: ADMIN_PASSWORD } });
    assert.equal(login.status, 200);
    const adminToken = login.body.token;
    const adminApi = async <T>(method: string, path: string, json?: unknown): Promise<T> => {
      const r = await stack.client.request<T>(method, path, { token: adminToken, ...(json === undefined ? {} : { json }) });
      assert.equal(r.status, 200, `${method} ${path}: ${r.bytes.toString()}`);
      return r.body;
    };

    // web01 enrolls as `portcullis host join` would: host token, its key, a certificate back.
    const d = stack.dir.file('web01');
    const { token } = await adminApi<{ token: string }>('POST', '/v1/admin/tokens', { type: 'host', hostname: 'web01', labels: { env: 'dev' } });
    const joined = await joinHostKey(d, async (publicKey) => {
      const r = await stack.client.request<HostJoinAnswer>('POST', '/v1/join', { json: { token, hostname: 'web01', host_keys: [publicKey] } });
      assert.equal(r.status, 200, r.bytes.toString());
      return r.body;
    });
    const krl = await stack.client.request('GET', '/v1/krl');
    const web01 = await startSshd({
      dir: d,
      trustedUserCAKeys: joined.userCA,
      revokedKeys: krl.bytes,
      hostKey: joined.hostKey,
      authorizedPrincipalsFile: { contents: 'root\n' },
      extraConfig: ['Subsystem sftp /usr/lib/openssh/sftp-server', 'PermitTTY yes'],
    });
    stops.push(() => web01.stop());

    // The proxy, enrolled with a proxy token, recording to the same Redis.
    const proxyToken = (await adminApi<{ token: string }>('POST', '/v1/admin/tokens', { type: 'proxy' })).token;
    const enrolled = await enrollProxy({ url: stack.info.url, fingerprint: stack.info.fingerprint, token: proxyToken, hostname: 'bastion', names: ['127.0.0.1', 'localhost'] });
    const state = stack.dir.file('proxy');
    mkdirSync(state);
    const key = enrolled.hostKeys[0]!;
    writeFileSync(`${state}/host_key`, formatPrivateKey(key.privateKey, { crypto: nodeCrypto }), { mode: 0o600 });
    writeFileSync(`${state}/host_key-cert.pub`, `${formatCertificate(key.certificate)}\n`);
    writeFileSync(`${state}/credential`, enrolled.credential, { mode: 0o600 });
    const config = parseProxyServiceConfig({
      state_dir: state,
      name: 'bastion',
      listen: '127.0.0.1:0',
      redis: { url: stack.redis.url },
      auth: { url: stack.info.url, fingerprint: stack.info.fingerprint },
      drain_grace: '1s',
    });
    const authority = new HttpAuthority({
      url: stack.info.url,
      fingerprint: stack.info.fingerprint,
      credential: enrolled.credential,
      // sshd listens on a free port; the inventory records names only.
      dialAddress: () => ({ address: '127.0.0.1', port: web01.port }),
    });
    stops.push(() => authority.close());
    const audit: ProxyAuditEvent[] = [];
    const proxy = await startProxyService(config, { authority, audit: (e) => audit.push(e), log: () => {} });
    stops.push(() => proxy.stop());
    const proxyAddress = `127.0.0.1:${proxy.proxy.port}`;

    // carol: a local user with role dev, logged in with pcsh.
    const created = await adminApi<{ invite: { url?: string; token: string } }>('POST', '/v1/admin/users', { name: 'carol', roles: ['dev'] });
    const res = await stack.client.request('POST', '/v1/invites/accept', { json: { token: created.invite.token, password: 'carol-password-1' } });
    assert.equal(res.status, 200, res.bytes.toString());
    const carol = laptop(stack, 'carol');
    const carolEnv = { ...carol.env, PCSH_PROXY: proxyAddress };
    const carolLaptop: Laptop = { ...carol, env: carolEnv };
    await ok('pcsh', carolLaptop, ['login', '--auth', stack.info.url, '--fingerprint', stack.info.fingerprint, '--user', 'carol'], { env: { PCSH_PASSWORD: 'carol-password-1' } });
    const adminWithProxy: Laptop = { ...admin, env: { ...admin.env, PCSH_PROXY: proxyAddress } };

    return {
      stack,
      admin: adminWithProxy,
      carol: carolLaptop,
      adminToken,
      proxy,
      proxyAddress,
      web01,
      audit,
      adminApi,
      async stop() {
        for (const s of stops.reverse()) await Promise.resolve(s()).catch(() => {});
      },
    };
  } catch (e) {
    for (const s of stops.reverse()) await Promise.resolve(s()).catch(() => {});
    throw e;
  }
}
