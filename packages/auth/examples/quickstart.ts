// What `npm start` runs: the auth service on https://127.0.0.1:3025 with a development OpenID
// provider beside it, so single sign-on, certificates and the admin API can be tried on one
// machine. State lives in .state/quickstart/ (CA keys, generated TLS certificate, embedded
// Redis); a second start reuses all of it. Stop with Ctrl-C.
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { startOidcProvider, type TestOidcProvider } from '@portcullis/harness';
import { AuthService, SYSTEM_ACTOR, loadAuthConfig } from '../src/index.js';

const STATE_DIR = resolve(process.argv[2] ?? '.state/quickstart');
// Fixed, not free ports: the config written at first start names the provider's issuer URL.
const IDP_PORT = Number(process.env['QUICKSTART_IDP_PORT'] ?? 3026);
const IDP_ISSUER = `http://127.0.0.1:${IDP_PORT}`;
const OIDC_CLIENT_ID = 'portcullis';
const DEMO_USER = 'alice';
const ADMIN_USER = 'admin';

const files = {
  config: join(STATE_DIR, 'auth.yaml'),
  clientSecret: join(STATE_DIR, 'oidc-client-secret'),
  idpUser: join(STATE_DIR, 'dev-idp-user.json'),
  adminInvite: join(STATE_DIR, 'admin-invite.json'),
  audit: join(STATE_DIR, 'audit.jsonl'),
};

function writeSecret(path: string, text: string): void {
  writeFileSync(path, text, { mode: 0o600 });
  chmodSync(path, 0o600);
}

const secret = (): string => randomBytes(18).toString('base64url');

/** Made once and kept, so the provider started next time knows the same client and user. */
function loadOrCreate<T>(path: string, make: () => T): { value: T; created: boolean } {
  if (existsSync(path)) return { value: JSON.parse(readFileSync(path, 'utf8')) as T, created: false };
  const value = make();
  writeSecret(path, `${JSON.stringify(value, null, 2)}\n`);
  return { value, created: true };
}

function writeConfigOnce(): void {
  // Written once: edits made to it afterwards are the operator's and are kept.
  if (existsSync(files.config)) return;
  const everyHost = { '*': '*' };
  const config = {
    state_dir: '.',
    listen: '127.0.0.1:3025',
    // No redis section: an embedded redis-server in <state_dir>/redis. No tls section: a
    // generated certificate, pinned by clients.
    certificates: { user_ttl: '5m' },
    oidc: {
      issuer: IDP_ISSUER,
      client_id: OIDC_CLIENT_ID,
      client_secret_file: 'oidc-client-secret',
      // The development provider speaks plain http on loopback; a real one must be https.
      allow_insecure_loopback_issuer: true,
      role_mapping: [
        { value: 'developers', roles: ['developers'] },
        { value: 'admins', roles: ['developers', 'admin'] },
      ],
    },
    roles: [
      {
        kind: 'role',
        name: 'developers',
        description: 'engineers: their own login and ubuntu on every host',
        spec: { allow: { logins: ['{{user.name}}', 'ubuntu'], host_labels: everyHost }, options: { max_cert_ttl: '5m' } },
      },
      {
        kind: 'role',
        name: 'admin',
        description: 'administers Portcullis (users, roles, hosts, locks, revocation, audit); ubuntu and root on every host',
        spec: { allow: { logins: ['ubuntu', 'root'], host_labels: everyHost }, options: { max_cert_ttl: '5m' } },
      },
    ],
    audit: { sink: 'file', path: 'audit.jsonl' },
  };
  writeFileSync(files.config, `# Written by the quickstart (npm start) at its first start; yours to edit.\n${stringify(config)}`, { mode: 0o600 });
}

interface SavedInvite {
  readonly url: string;
  readonly expiresAt: string;
}

async function main(): Promise<number> {
  mkdirSync(STATE_DIR, { recursive: true, mode: 0o700 });
  // The relying party reads it through client_secret_file; the provider is told the same.
  if (!existsSync(files.clientSecret)) writeSecret(files.clientSecret, `${secret()}\n`);
  const idpUser = loadOrCreate(files.idpUser, () => ({ username: DEMO_USER, password: secret() }));
  writeConfigOnce();

  let provider: TestOidcProvider;
  try {
    provider = await startOidcProvider({
      port: IDP_PORT,
      users: [{ sub: `sub-${idpUser.value.username}`, username: idpUser.value.username, password: idpUser.value.password, groups: ['developers'], email: `${idpUser.value.username}@example.test` }],
      // Loopback redirects on any port (pcsh's browser login), and the device grant (headless).
      clients: [{ client_id: OIDC_CLIENT_ID, client_secret: readFileSync(files.clientSecret, 'utf8').trim(), redirect_uris: ['http://127.0.0.1/callback'] }],
    });
  } catch (e) {
    process.stderr.write(`quickstart: cannot start the development OpenID provider on ${IDP_ISSUER}: ${(e as Error).message}\n`);
    return 1;
  }

  const service = new AuthService({ config: loadAuthConfig(files.config) });
  let info;
  try {
    info = await service.start();
  } catch (e) {
    process.stderr.write(`quickstart: the auth service did not start: ${(e as Error).message}\n`);
    await provider.stop();
    return 1;
  }

  const invite = await adminInvite(service, info.bootstrapInvite, info.url);
  const ca = service.context.keystore.trustedUserCaKeys().trim();
  const url = info.url;
  const curl = `curl -sk --pinnedpubkey '${info.spkiPin}' -H 'content-type: application/json'`;
  const lines = [
    '',
    `Portcullis auth is running at ${url} (state in ${STATE_DIR})`,
    '',
    `TLS certificate (generated; pin it): SHA-256 ${info.fingerprint}`,
    `  public key pin, for curl --pinnedpubkey: ${info.spkiPin}`,
    '',
    invite,
    '',
    `Development identity provider: ${IDP_ISSUER} — sign in as ${idpUser.value.username}, group developers`,
    idpUser.created
      ? `  password: ${idpUser.value.password}   (shown this once; kept in ${files.idpUser})`
      : `  password: in ${files.idpUser} (shown at the first start)`,
    '',
    'Hosts: trust certificates from this CA with sshd_config `TrustedUserCAKeys /etc/ssh/portcullis_user_ca.pub`, that file holding:',
    `  ${ca.split('\n').join('\n  ')}`,
    '',
    `Mint a 5-minute certificate as ${idpUser.value.username} (device sign-in, then a fresh key):`,
    `  ${curl} -d '{}' ${url}/v1/login/device/start`,
    `  # open verification_uri_complete in a browser and sign in; then, with the "handle" it returned:`,
    `  ${curl} -d '{"handle":"HANDLE"}' ${url}/v1/login/device/poll          # -> "token"`,
    `  ssh-keygen -q -t ed25519 -N '' -f ./id_portcullis`,
    `  ${curl} -H 'authorization: Bearer TOKEN' -d "{\\"public_key\\":\\"$(cat ./id_portcullis.pub)\\"}" ${url}/v1/certs/user`,
    `  # "certificate" in the answer is ./id_portcullis-cert.pub (principals ${idpUser.value.username} and ubuntu)`,
    '',
    `Audit events: ${files.audit}. Stop with Ctrl-C; the next npm start picks up where this one left off.`,
    '',
  ];
  process.stdout.write(lines.join('\n'));

  return new Promise<number>((done) => {
    let stopping = false;
    const stop = (why: string): void => {
      if (stopping) return;
      stopping = true;
      process.stderr.write(`quickstart: ${why}: stopping\n`);
      // The service first (it stops accepting, then closes Redis), then its identity provider.
      service
        .stop()
        .then(() => provider.stop())
        .then(
          () => done(0),
          (e: unknown) => {
            process.stderr.write(`quickstart: stop failed: ${String(e)}\n`);
            done(1);
          },
        );
    };
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => stop(signal));
    // `kill <npm's pid>` ends the shell npm started us from but not us: when that leaves us an
    // orphan, stop as if signalled rather than hold the ports with nobody to stop us.
    const parent = process.ppid;
    setInterval(() => {
      if (process.ppid !== parent) stop('parent process gone');
    }, 1000).unref();
  });
}

/**
 * The way in for the first admin. The service makes an invite only on its very first start; the
 * quickstart keeps that link (0600, beside the CA keys) and shows it again until the admin has
 * set a password, and makes a new one only when it expired unused, so a restart never locks
 * the only admin out and never hands out a second live link.
 */
async function adminInvite(service: AuthService, made: { url: string; expiresAt: string } | undefined, url: string): Promise<string> {
  if (made !== undefined) {
    writeSecret(files.adminInvite, `${JSON.stringify({ url: made.url, expiresAt: made.expiresAt } satisfies SavedInvite)}\n`);
    return `Admin: set the password of "${ADMIN_USER}" (link valid until ${made.expiresAt}):\n  ${made.url}`;
  }
  const users = service.context.users;
  const admin = await users.getUser(ADMIN_USER);
  if (admin === undefined || admin.passwordHash !== undefined) {
    // Spent: nothing left to show.
    rmSync(files.adminInvite, { force: true });
    return `Admin: log in as "${ADMIN_USER}" with the password you set (POST ${url}/v1/login/password {"username", "password"})`;
  }
  const saved = existsSync(files.adminInvite) ? (JSON.parse(readFileSync(files.adminInvite, 'utf8')) as SavedInvite) : undefined;
  if (saved !== undefined && Date.parse(saved.expiresAt) > Date.now()) {
    return `Admin: "${ADMIN_USER}" has no password yet; the link from the first start still works until ${saved.expiresAt}:\n  ${saved.url}`;
  }
  const fresh = await users.resetPassword(ADMIN_USER);
  await service.context.audit.emit('user.invite_created', SYSTEM_ACTOR, { user: ADMIN_USER, purpose: fresh.purpose, expiresAt: new Date(fresh.expiresAt) });
  const view: SavedInvite = { url: `${url}/invite#${fresh.token}`, expiresAt: new Date(fresh.expiresAt).toISOString() };
  writeSecret(files.adminInvite, `${JSON.stringify(view)}\n`);
  return `Admin: the first link expired unused; set the password of "${ADMIN_USER}" (valid until ${view.expiresAt}):\n  ${view.url}`;
}

process.exitCode = await main();
