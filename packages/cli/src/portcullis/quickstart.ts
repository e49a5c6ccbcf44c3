import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { SYSTEM_ACTOR } from '@portcullis/auth';
import { startOidcProvider } from '@portcullis/harness';
import { runMain } from '../common/main.js';
import { CliError } from '../common/errors.js';
import { createProgram } from '../common/main.js';
import { loadStartConfig } from './config.js';
import { startPortcullis } from './start.js';

/*
 * What `npm start` runs: `portcullis start` with every service on loopback (auth :3025, proxy
 * :3022, web :3080) and a development OpenID provider (:3026) beside it, so SSO, pcsh and the
 * proxy can be tried on one machine. The config, the provider's client secret and its demo
 * user are made once in the state directory and reused, so a second start is the same install.
 * The auth state stays where the earlier auth-only quickstart kept it (the directory itself).
 */

const IDP_PORT = Number(process.env['QUICKSTART_IDP_PORT'] ?? 3026);
const CLIENT_ID = 'portcullis';

function once(path: string, make: () => string): string {
  if (!existsSync(path)) writeFileSync(path, make(), { mode: 0o600 });
  return readFileSync(path, 'utf8');
}

function quickstartConfig(): string {
  const every = { '*': '*' };
  const doc = {
    state_dir: '.',
    auth: {
      state_dir: '.',
      listen: '127.0.0.1:3025',
      certificates: { user_ttl: '5m' },
      oidc: {
        issuer: `http://127.0.0.1:${IDP_PORT}`,
        client_id: CLIENT_ID,
        client_secret_file: 'oidc-client-secret',
        // The development provider speaks plain http on loopback; a real one must be https.
        allow_insecure_loopback_issuer: true,
        role_mapping: [
          { value: 'developers', roles: ['developers'] },
          { value: 'admins', roles: ['developers', 'admin'] },
        ],
      },
      roles: [
        { kind: 'role', name: 'developers', spec: { allow: { logins: ['{{user.name}}', 'ubuntu'], host_labels: every }, options: { max_cert_ttl: '5m' } } },
        { kind: 'role', name: 'admin', spec: { allow: { logins: ['ubuntu', 'root'], host_labels: every }, options: { max_cert_ttl: '5m' } } },
      ],
      audit: { sink: 'file', path: 'audit.jsonl' },
    },
    proxy: { listen: '127.0.0.1:3022', name: 'localhost', drain_grace: '10s' },
    web: { listen: '127.0.0.1:3080' },
  };
  return `# Written by npm start (portcullis quickstart) at its first start; yours to edit.\n${stringify(doc)}`;
}

async function quickstart(dirArg: string | undefined): Promise<void> {
  const dir = resolve(dirArg ?? '.state/quickstart');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const secret = once(join(dir, 'oidc-client-secret'), () => `${randomBytes(18).toString('base64url')}\n`).trim();
  const demo = JSON.parse(once(join(dir, 'dev-idp-user.json'), () => `${JSON.stringify({ username: 'alice', password: randomBytes(12).toString('base64url') })}\n`)) as { username: string; password: string };
  const configPath = join(dir, 'portcullis.yaml');
  once(configPath, quickstartConfig);

  const provider = await startOidcProvider({
    port: IDP_PORT,
    users: [{ sub: `sub-${demo.username}`, username: demo.username, password: demo.password, groups: ['developers'], email: `${demo.username}@example.test` }],
    clients: [{ client_id: CLIENT_ID, client_secret: secret, redirect_uris: ['http://127.0.0.1/callback'] }],
  }).catch((e: unknown) => {
    throw new CliError('ERR_UNREACHABLE', `cannot start the development OpenID provider on port ${IDP_PORT}: ${(e as Error).message}`);
  });
  const log = (line: string): void => void process.stderr.write(`${line}\n`);
  let running;
  try {
    running = await startPortcullis(loadStartConfig(configPath), log);
  } catch (e) {
    await provider.stop();
    throw e;
  }
  const info = running.auth!;
  const lines = ['', `Portcullis is running (state in ${dir}):`, `  auth   ${info.url}   TLS SHA-256 ${info.fingerprint}`, `  proxy  ssh -p ${running.proxy?.proxy.port ?? 3022} 127.0.0.1`];
  if (running.web !== undefined) lines.push(`  web    ${running.web.url}`);
  lines.push('');
  if (running.nextSteps.length > 0) lines.push(...running.nextSteps);
  else {
    // Not the first start: the admin either set a password, or still needs a (fresh) link.
    const users = running.authService!.context.users;
    const admin = await users.getUser('admin');
    if (admin !== undefined && admin.passwordHash === undefined) {
      const fresh = await users.resetPassword('admin');
      await running.authService!.context.audit.emit('user.invite_created', SYSTEM_ACTOR, { user: 'admin', purpose: fresh.purpose, expiresAt: new Date(fresh.expiresAt) });
      lines.push('The admin has no password yet; set it here:', `    ${info.url}/invite#${fresh.token}`);
    }
    lines.push(`Admin: pcsh login --auth ${info.url} --fingerprint ${info.fingerprint} --user admin`);
  }
  lines.push(
    '',
    `Single sign-on: the development provider at http://127.0.0.1:${IDP_PORT} knows ${demo.username} (group developers), password in ${join(dir, 'dev-idp-user.json')}`,
    `    pcsh login --auth ${info.url} --fingerprint ${info.fingerprint}            # add --headless without a browser`,
    '    pcsh ls && pcsh ssh ubuntu@<host>                                         # after a host has joined',
    '',
    'Stop with Ctrl-C; the next npm start reuses this state.',
    '',
  );
  process.stdout.write(lines.join('\n'));
  await new Promise<void>((done, fail) => {
    let stopping = false;
    const stop = (why: string): void => {
      if (stopping) return;
      stopping = true;
      log(`quickstart: ${why}: stopping`);
      running
        .stop()
        .then(() => provider.stop())
        .then(done, fail);
    };
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => stop(signal));
    // npm's shell gone (kill <npm pid>) leaves us an orphan holding the ports: stop instead.
    const parent = process.ppid;
    setInterval(() => process.ppid !== parent && stop('parent process gone'), 1000).unref();
  });
}

const program = createProgram('quickstart', 'portcullis start on loopback with a development OpenID provider (npm start)')
  .argument('[state-dir]', 'where the state lives (default .state/quickstart)')
  .action(async (dir: string | undefined) => quickstart(dir));
await runMain('quickstart', program);
