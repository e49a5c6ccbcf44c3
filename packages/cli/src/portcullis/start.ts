import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { formatCertificate, formatPrivateKey, parseCertificateText, type Certificate } from '@portcullis/cert-core';
import { nodeCrypto } from '@portcullis/cert-core/node';
import { AuthService, SYSTEM_ACTOR, createJoinToken, parseAuthConfig, type AuthServiceInfo, type LoadedAuthConfig } from '@portcullis/auth';
import { enrollProxy } from '@portcullis/proxy';
import { WebGateway, parseWebConfig } from '@portcullis/web';
import { CliError } from '../common/errors.js';
import { proxyNames, serviceDir, type StartConfig } from './config.js';
import { parseProxyServiceConfig, startProxyService, type RunningProxyService } from './services.js';

/*
 * `portcullis start`: the services of one machine in one process. Order matters: auth first
 * (it makes the CAs and, on an empty store, the first admin's invite), then the proxy, which
 * enrolls with that auth on its first start through an ordinary proxy join token (made here,
 * so the proxy holds a service credential and a host certificate like any other proxy), then
 * web. Stopping runs the other way: the proxy stops accepting and lets sessions finish first.
 */

export interface RunningPortcullis {
  readonly auth: AuthServiceInfo | undefined;
  /** The auth service when it runs here (the quickstart reads its user directory). */
  readonly authService: AuthService | undefined;
  readonly proxy: RunningProxyService | undefined;
  readonly web: { readonly url: string } | undefined;
  /** What to tell the operator (printed by the command). */
  readonly nextSteps: readonly string[];
  stop(): Promise<void>;
}

type Log = (line: string) => void;

/** Where the proxy and web reach auth's Redis when they share this process. */
/**
 * The Redis section proxy and web share with auth when they run beside it: auth's own url,
 * sentinel or cluster section, or its embedded server's unix socket (a TCP embedded server has a
 * private password, so it is not shared).
 */
function sharedRedis(auth: LoadedAuthConfig): Record<string, unknown> | undefined {
  const r = auth.redis;
  if (!('embedded' in r)) return r;
  if (r.embedded.port === undefined) return { url: `unix://${join(r.embedded.stateDir, 'redis.sock')}` };
  return undefined;
}

function configError(e: unknown, service: string): never {
  if (e instanceof CliError) throw e;
  const message = e instanceof Error ? e.message : String(e);
  throw new CliError('ERR_CONFIG', `${service}: ${message.replace(/^(invalid auth config|config): /, '')}`);
}

/** The proxy's host certificate as enrolled; undefined when missing or unreadable (then it is renewed). */
export function readProxyCertificate(dir: string): Certificate | undefined {
  try {
    return parseCertificateText(readFileSync(join(dir, 'host_key-cert.pub'), 'utf8').trim(), 'proxy host certificate').cert;
  } catch {
    return undefined;
  }
}

/**
 * Whether the proxy's host certificate should be replaced: past the middle of its life (as
 * auth's own renewal window starts), or missing. An expired one would make every client refuse
 * the proxy, and nothing else renews it while the process runs, so each start checks.
 */
export function proxyCertificateDue(cert: Certificate | undefined, nowMs: number): boolean {
  if (cert === undefined) return true;
  const now = BigInt(Math.floor(nowMs / 1000));
  return now >= cert.validAfter + (cert.validBefore - cert.validAfter) / 2n;
}

function privateDir(path: string): string {
  if (!existsSync(path)) mkdirSync(path, { recursive: true, mode: 0o700 });
  return path;
}

export async function startPortcullis(c: StartConfig, log: Log): Promise<RunningPortcullis> {
  const stops: (() => Promise<unknown>)[] = [];
  const stopAll = async (): Promise<void> => {
    for (const s of stops.reverse()) await s().catch((e: unknown) => log(`portcullis: stop: ${String(e)}`));
  };
  const runs = (s: 'auth' | 'proxy' | 'web'): boolean => c.services.includes(s);
  const next: string[] = [];
  try {
    privateDir(c.state_dir);
    let auth: AuthService | undefined;
    let info: AuthServiceInfo | undefined;
    let authConfig: LoadedAuthConfig | undefined;
    if (runs('auth')) {
      try {
        authConfig = parseAuthConfig({ state_dir: serviceDir(c, 'auth'), ...c.auth }, { env: {}, baseDir: c.baseDir });
      } catch (e) {
        configError(e, 'auth');
      }
      auth = new AuthService({ config: authConfig, log });
      info = await auth.start();
      const a = auth;
      stops.push(() => a.stop());
      if (info.bootstrapInvite !== undefined) {
        next.push(
          `Set the first administrator's password (${info.bootstrapInvite.user}); the link works until ${info.bootstrapInvite.expiresAt}:`,
          `    ${info.bootstrapInvite.url}`,
          'Then sign in and let hosts in:',
          `    pcsh login --auth ${info.url} --fingerprint ${info.fingerprint} --user ${info.bootstrapInvite.user}`,
          '    pcctl tokens add host --hostname web01          # prints a join token',
          `    portcullis host join --token <T> --auth ${info.url} --fingerprint ${info.fingerprint}   # on web01, as root`,
        );
      }
    }
    const authUrl = (remote: { url: string; fingerprint: string } | undefined): { url: string; fingerprint: string } =>
      remote ?? { url: info!.url, fingerprint: info!.fingerprint };
    const redisFor = (remote: Record<string, unknown> | undefined, service: string): Record<string, unknown> => {
      const r = remote ?? (authConfig === undefined ? undefined : sharedRedis(authConfig));
      if (r === undefined) throw new CliError('ERR_CONFIG', `config: ${service}.redis: required (url, sentinel or cluster): auth's Redis is not reachable through a local socket`);
      return r;
    };

    let proxy: RunningProxyService | undefined;
    if (runs('proxy')) {
      const dir = privateDir(serviceDir(c, 'proxy'));
      const where = authUrl(c.proxy.auth);
      const { name, names } = proxyNames(c);
      const due = !existsSync(join(dir, 'credential')) || proxyCertificateDue(readProxyCertificate(dir), Date.now());
      if (due && existsSync(join(dir, 'credential'))) {
        if (auth === undefined) log(`proxy: the host certificate in ${dir} is past the middle of its life; to renew it, remove ${join(dir, 'credential')} and start again with a proxy join token made for ${name}`);
        else log('proxy: the host certificate is past the middle of its life: enrolling again for a fresh one');
      }
      if (due && (auth !== undefined || !existsSync(join(dir, 'credential')))) {
        let token = c.proxy.join_token;
        if (token === undefined) {
          if (auth === undefined) throw new CliError('ERR_CONFIG', 'config: proxy.join_token: required for the first start when auth is not run here (pcctl tokens add proxy)');
          // The token an admin would make with pcctl, made by the service itself and audited as
          // such; bound to the proxy's name, because only such a token may replace an enrollment.
          const made = await createJoinToken(auth.context.redis, { type: 'proxy', hostname: name, createdBy: 'portcullis start', ttlSeconds: 600 }, Date.now());
          await auth.context.audit.emit('token.created', SYSTEM_ACTOR, { tokenId: made.joinToken.id, type: 'proxy', hostname: name, expiresAt: new Date(made.joinToken.expiresAt) });
          token = made.token;
        }
        const enrolled = await enrollProxy({ ...where, token, hostname: name, names }).catch((e: unknown) => {
          throw new CliError('ERR_REFUSED', `proxy: enrollment with auth at ${where.url} failed: ${e instanceof Error ? e.message : String(e)}`);
        });
        const key = enrolled.hostKeys[0]!;
        writeFileSync(join(dir, 'host_key'), formatPrivateKey(key.privateKey, { crypto: nodeCrypto }), { mode: 0o600 });
        writeFileSync(join(dir, 'host_key-cert.pub'), `${formatCertificate(key.certificate)}\n`);
        writeFileSync(join(dir, 'known_hosts'), enrolled.knownHosts);
        // Last: its presence is what says the enrollment is complete.
        writeFileSync(join(dir, 'credential'), `${enrolled.credential}\n`, { mode: 0o600 });
        log(`proxy: enrolled with auth as ${name} (${names.join(', ')})`);
      }
      let config;
      try {
        config = parseProxyServiceConfig({
          state_dir: dir,
          name,
          listen: c.proxy.listen,
          redis: redisFor(c.proxy.redis, 'proxy'),
          auth: where,
          drain_grace: c.proxy.drain_grace,
          ...(c.proxy.metrics === undefined ? {} : { metrics: c.proxy.metrics }),
        });
      } catch (e) {
        configError(e, 'proxy');
      }
      const running = await startProxyService(config, { log: (level, m) => log(`proxy ${level}: ${m}`) });
      proxy = running;
      stops.push(() => running.stop());
      log(`proxy: listening on ${running.proxy.host}:${running.proxy.port}`);
    }

    let web: { url: string } | undefined;
    if (runs('web')) {
      const where = authUrl(c.web.auth);
      let config;
      try {
        config = parseWebConfig({
          listen: c.web.listen,
          state_dir: privateDir(serviceDir(c, 'web')),
          auth: where,
          redis: redisFor(c.web.redis, 'web'),
          ...(c.web.public_url === undefined ? {} : { public_url: c.web.public_url }),
          ...(c.web.tls === undefined ? {} : { tls: c.web.tls }),
          ...(c.web.sessions === undefined ? {} : { sessions: c.web.sessions }),
        });
      } catch (e) {
        configError(e, 'web');
      }
      // With the proxy in this process, browser terminals go through its session engine.
      const gateway = new WebGateway({ config, log, ...(proxy === undefined ? {} : { terminals: proxy.webSessions }) });
      const started = await gateway.start();
      stops.push(() => gateway.stop());
      web = { url: started.url };
    }
    return { auth: info, authService: auth, proxy, web, nextSteps: next, stop: stopAll };
  } catch (e) {
    await stopAll();
    throw e;
  }
}
