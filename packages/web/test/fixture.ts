import { mkdirSync } from 'node:fs';
import { Redis } from 'ioredis';
import { AuthClient, AuthService, parseAuthConfig, type AuthServiceInfo } from '@portcullis/auth';
import { freePort, startOidcProvider, startRedis, tempDir, type RedisHandle, type TempDir, type TestOidcProvider } from '@portcullis/harness';
import { buildAppAssets, type AppAssets } from '../src/assets.js';
import { parseWebConfig } from '../src/config.js';
import { WebGateway, type WebGatewayInfo } from '../src/gateway.js';
import type { TerminalEngine } from '../src/terminal.js';

/*
 * Real processes on loopback for the gateway's tests: redis-server, an OpenID provider, the auth
 * service over TLS, and the gateway in front of it, named `localhost` (browsers refuse WebAuthn
 * for IP addresses, and the SSO redirect is registered under that name).
 */

export const OIDC_CLIENT = { client_id: 'portcullis-web', client_secret: 'web-test-client-secret-0123456789' };
export const ALICE = { sub: 'sub-alice', username: 'alice', password: 'alice-password-1', groups: ['sre'] };
export const BOB = { sub: 'sub-bob', username: 'bob', password: 'bob-password-123', groups: ['eng'] };
export const ADMIN_PASSWORD = 'correct horse battery staple';

const ROLES = [{ kind: 'role', name: 'dev', spec: { allow: { logins: ['ubuntu', 'deploy'], host_labels: { '*': '*' } } } }];

export interface WebFixture {
  readonly dir: TempDir;
  readonly redisServer: RedisHandle;
  /** For writing recordings and inspecting keys. */
  readonly redis: Redis;
  readonly provider: TestOidcProvider;
  readonly auth: AuthService;
  readonly authInfo: AuthServiceInfo;
  /** auth's API directly (pinned), for setting users up. */
  readonly authApi: AuthClient;
  readonly gateway: WebGateway;
  readonly info: WebGatewayInfo;
  /** The gateway over pinned TLS, as pcsh would reach it. */
  readonly client: AuthClient;
  readonly log: string[];
  stop(): Promise<void>;
}

let shared: Promise<AppAssets> | undefined;
/** One bundle per test process (esbuild takes a few hundred ms). */
export function appAssets(): Promise<AppAssets> {
  shared ??= buildAppAssets();
  return shared;
}

export interface WebFixtureOptions {
  /** auth's roles instead of the default `dev`. */
  readonly roles?: readonly unknown[];
  /** The session engine for the browser terminal (usually a forwarder filled in after start). */
  readonly terminals?: TerminalEngine;
}

export async function startWebFixture(o: WebFixtureOptions = {}): Promise<WebFixture> {
  const dir = tempDir('portcullis-web-');
  const log: string[] = [];
  mkdirSync(dir.file('redis'));
  const redisServer = await startRedis({ dir: dir.file('redis') });
  const [authPort, webPort] = [await freePort(), await freePort()];
  const webOrigin = `https://localhost:${webPort}`;
  const provider = await startOidcProvider({
    users: [ALICE, BOB],
    clients: [{ ...OIDC_CLIENT, redirect_uris: [`${webOrigin}/web/callback`], application_type: 'web' }],
  });
  const config = parseAuthConfig(
    {
      state_dir: dir.file('auth'),
      listen: `127.0.0.1:${authPort}`,
      // A DNS name: WebAuthn's relying party id is this host name.
      public_url: `https://localhost:${authPort}`,
      redis: { url: redisServer.url },
      audit: { sink: 'none' },
      roles: o.roles ?? ROLES,
      oidc: {
        issuer: provider.issuer,
        ...OIDC_CLIENT,
        allow_insecure_loopback_issuer: true,
        redirect_uris: [`${webOrigin}/web/callback`],
        role_mapping: [
          { value: 'sre', roles: ['dev', 'admin'] },
          { value: 'eng', roles: ['dev'] },
        ],
      },
    },
    { env: {} },
  );
  const auth = new AuthService({ config, log: (l) => log.push(`auth: ${l}`), scrypt: { log2N: 10, r: 8, p: 1 }, defaultMetrics: false });
  const authInfo = await auth.start();
  const authApi = new AuthClient({ url: `https://127.0.0.1:${authPort}`, fingerprint: authInfo.fingerprint });
  const gateway = new WebGateway({
    config: parseWebConfig({
      listen: `127.0.0.1:${webPort}`,
      public_url: webOrigin,
      state_dir: dir.file('web'),
      auth: { url: `https://127.0.0.1:${authPort}`, fingerprint: authInfo.fingerprint },
      redis: { url: redisServer.url },
    }),
    log: (l) => log.push(l),
    assets: await appAssets(),
    ...(o.terminals === undefined ? {} : { terminals: o.terminals }),
  });
  const info = await gateway.start();
  const client = new AuthClient({ url: `https://127.0.0.1:${webPort}`, fingerprint: info.fingerprint });
  const redis = new Redis(redisServer.url, { maxRetriesPerRequest: 1 });
  return {
    dir,
    redisServer,
    redis,
    provider,
    auth,
    authInfo,
    authApi,
    gateway,
    info,
    client,
    log,
    async stop() {
      redis.disconnect();
      await gateway.stop().catch(() => undefined);
      await auth.stop().catch(() => undefined);
      await provider.stop().catch(() => undefined);
      await redisServer.stop();
      dir.remove();
    },
  };
}

/** Sets the bootstrap admin's password through its invite (a local user with the admin role). */
export async function setAdminPassword(f: WebFixture): Promise<void> {
  const invite = f.authInfo.bootstrapInvite;
  if (invite === undefined) throw new Error('auth made no bootstrap invite');
  const res = await f.authApi.request('POST', '/v1/invites/accept', { json: { token: invite.token, password: ADMIN_PASSWORD } });
  if (res.status !== 200) throw new Error(`invite: ${res.status} ${res.bytes.toString()}`);
}
