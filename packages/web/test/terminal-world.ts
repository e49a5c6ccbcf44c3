import assert from 'node:assert/strict';
import { totpCode } from '@portcullis/auth';
import { joinHostKey, startSshd, type HostJoinAnswer, type SshdHandle } from '@portcullis/harness';
import { HttpAuthority, WebSessionEngine, enrollProxy, httpSignatureService, startSessionRecording, type ProxyAuditEvent, type SessionRecording } from '@portcullis/proxy';
import type { TerminalEngine } from '../src/terminal.js';
import { ADMIN_PASSWORD, setAdminPassword, startWebFixture, type WebFixture } from './fixture.js';

/*
 * The browser terminal's world: the web fixture (redis-server, OpenID provider, auth, gateway)
 * plus an OpenSSH target (web01) enrolled through auth's /v1/join with a host token, and the
 * proxy's session engine enrolled with a proxy token, recording into the same Redis with auth
 * signing the recordings. erin is a local user with TOTP whose role demands a second factor
 * for every session, and who may read recordings (admin).
 */

export const ERIN = { name: 'erin', password: 'erin-password-1' };

function roles(sessionMfa: boolean): unknown[] {
  return [
    { kind: 'role', name: 'dev', spec: { allow: { logins: ['ubuntu', 'deploy'], host_labels: { '*': '*' } } } },
    { kind: 'role', name: 'ops', spec: { allow: { logins: ['root'], host_labels: { env: 'dev' } }, options: { require_session_mfa: sessionMfa, record_input: true } } },
  ];
}

export interface TerminalWorld {
  readonly f: WebFixture;
  readonly web01: SshdHandle;
  readonly engine: WebSessionEngine;
  readonly recording: SessionRecording;
  readonly audit: ProxyAuditEvent[];
  readonly totpSecret: string;
  stop(): Promise<void>;
}

/** `sessionMfa: false` drops the per-session second factor (the load test opens hundreds). */
export async function startTerminalWorld(o: { readonly sessionMfa?: boolean; readonly sshdConfig?: readonly string[] } = {}): Promise<TerminalWorld> {
  // The gateway starts before the engine can be enrolled (that needs auth running), so it gets
  // a forwarder that the engine fills in.
  let engine: WebSessionEngine | undefined;
  const forwarder: TerminalEngine = {
    open: (r) => {
      if (engine === undefined) throw new Error('test: the session engine is not ready');
      return engine.open(r);
    },
  };
  const f = await startWebFixture({ roles: roles(o.sessionMfa ?? true), terminals: forwarder });
  const stops: (() => unknown)[] = [() => f.stop()];
  try {
    await setAdminPassword(f);
    const login = await f.authApi.request<{ token: string }>('POST', '/v1/login/password', { json: { username: 'admin', password: ADMIN_PASSWORD } });
    assert.equal(login.status, 200, login.bytes.toString());
    const adminApi = async <T>(method: string, path: string, json?: unknown): Promise<T> => {
      const r = await f.authApi.request<T>(method, path, { token: login.body.token, ...(json === undefined ? {} : { json }) });
      assert.equal(r.status, 200, `${method} ${path}: ${r.bytes.toString()}`);
      return r.body;
    };

    // web01 joins as `portcullis host join` does: a host token, its key, a host certificate back.
    const d = f.dir.file('web01');
    const { token } = await adminApi<{ token: string }>('POST', '/v1/admin/tokens', { type: 'host', hostname: 'web01', labels: { env: 'dev' } });
    const joined = await joinHostKey(d, async (publicKey) => {
      const r = await f.authApi.request<HostJoinAnswer>('POST', '/v1/join', { json: { token, hostname: 'web01', host_keys: [publicKey] } });
      assert.equal(r.status, 200, r.bytes.toString());
      return r.body;
    });
    const krl = await f.authApi.request('GET', '/v1/krl');
    const web01 = await startSshd({
      dir: d,
      trustedUserCAKeys: joined.userCA,
      revokedKeys: krl.bytes,
      hostKey: joined.hostKey,
      authorizedPrincipalsFile: { contents: 'root\n' },
      extraConfig: ['PermitTTY yes', ...(o.sshdConfig ?? [])],
    });
    stops.push(() => web01.stop());

    // The session engine, enrolled as a proxy, recording into the gateway's Redis.
    const authUrl = f.authApi.url.origin;
    const fingerprint = f.authInfo.fingerprint;
    const proxyToken = (await adminApi<{ token: string }>('POST', '/v1/admin/tokens', { type: 'proxy' })).token;
    const enrolled = await enrollProxy({ url: authUrl, fingerprint, token: proxyToken, hostname: 'bastion', names: ['127.0.0.1', 'localhost'] });
    const authority = new HttpAuthority({
      url: authUrl,
      fingerprint,
      credential: enrolled.credential,
      // sshd listens on a free port; the inventory records names only.
      dialAddress: () => ({ address: '127.0.0.1', port: web01.port }),
    });
    stops.push(() => authority.close());
    const signatures = httpSignatureService({ url: authUrl, fingerprint, credential: enrolled.credential });
    stops.push(() => signatures.close());
    const audit: ProxyAuditEvent[] = [];
    const recording = await startSessionRecording({ redis: f.redis, spoolDir: f.dir.file('spool'), signatures, audit: (e) => audit.push(e) });
    stops.push(() => recording.stop({ graceMs: 2000 }));
    const e = new WebSessionEngine({ authority, tap: recording.tap, audit: (ev) => audit.push(ev), log: (level, m) => f.log.push(`engine ${level}: ${m}`) });
    await e.start();
    stops.push(() => e.stop());
    engine = e;

    // erin: a local user with TOTP (confirmed with the previous time step, so the login and the
    // session's second factor can use the next two).
    const created = await adminApi<{ invite: { token: string } }>('POST', '/v1/admin/users', { name: ERIN.name, roles: ['ops', 'admin'] });
    const accepted = await f.authApi.request('POST', '/v1/invites/accept', { json: { token: created.invite.token, password: ERIN.password } });
    assert.equal(accepted.status, 200, accepted.bytes.toString());
    const erin = await f.authApi.request<{ token: string }>('POST', '/v1/login/password', { json: { username: ERIN.name, password: ERIN.password } });
    assert.equal(erin.status, 200, erin.bytes.toString());
    const enroll = await f.authApi.request<{ secret: string }>('POST', '/v1/mfa/totp/enroll', { token: erin.body.token, json: {} });
    const totpSecret = enroll.body.secret;
    const confirmed = await f.authApi.request('POST', '/v1/mfa/totp/confirm', { token: erin.body.token, json: { totp: totpCode(totpSecret, Date.now() - 30_000) } });
    assert.equal(confirmed.status, 200, confirmed.bytes.toString());

    return {
      f,
      web01,
      engine: e,
      recording,
      audit,
      totpSecret,
      async stop() {
        for (const s of stops.reverse()) await Promise.resolve(s()).catch(() => {});
      },
    };
  } catch (e) {
    for (const s of stops.reverse()) await Promise.resolve(s()).catch(() => {});
    throw e;
  }
}

function sessionCookie(headers: Record<string, unknown>): string {
  const set = headers['set-cookie'];
  const line = (Array.isArray(set) ? set : [String(set ?? '')]).find((c: string) => c.startsWith('__Host-pc_session='));
  if (line === undefined) throw new Error('test: the gateway set no session cookie');
  return line.split(';')[0]!;
}

/** Signs erin in through the gateway's API as the app does (session, password, TOTP); the cookie. */
export async function signInErin(w: TerminalWorld, at = Date.now()): Promise<string> {
  const origin = w.f.info.url;
  const s = await w.f.client.request<{ csrf: string }>('GET', '/web/api/session');
  let cookie = sessionCookie(s.headers);
  const post = async <T>(path: string, json: unknown, csrf: string): Promise<{ body: T; headers: Record<string, unknown> }> => {
    const r = await w.f.client.request<T>('POST', path, { json, headers: { cookie, origin, 'x-csrf-token': csrf } });
    assert.equal(r.status, 200, `${path}: ${r.bytes.toString()}`);
    return { body: r.body, headers: r.headers };
  };
  const first = await post<{ csrf: string }>('/web/api/login/password', { username: ERIN.name, password: ERIN.password }, s.body.csrf);
  cookie = sessionCookie(first.headers);
  const second = await post<{ stage: string }>('/web/api/login/mfa/totp', { totp: totpCode(w.totpSecret, at) }, first.body.csrf);
  assert.equal(second.body.stage, 'authenticated');
  return sessionCookie(second.headers);
}
