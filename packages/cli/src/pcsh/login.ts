import { setTimeout as sleep } from 'node:timers/promises';
import { ApiRefusal, AuthApi, normalizeFingerprint, presentedCertificate, type AuthTarget } from '../common/auth-api.js';
import { CliError } from '../common/errors.js';
import { ProfileStore, profileNameFor, type Profile } from '../common/profile.js';
import { startProgress, withProgress } from '../common/progress.js';
import { confirm, interactive, promptSecret, promptTotp } from '../common/prompt.js';
import { targetOf } from '../common/session.js';
import { ensureCertificate, newKeyPair } from './certificate.js';
import { listenLoopback, openBrowser } from './loopback.js';

/*
 * pcsh login: decide whether to trust auth's TLS certificate, sign in (browser SSO with a
 * loopback redirect, device code, or a local password), answer a TOTP challenge, then keep
 * the session in the profile, write the host CA line, make a fresh key and mint the first
 * certificate. pcsh logout undoes all of it, revoking the session at auth first.
 */

export interface LoginOptions {
  readonly auth?: string;
  readonly profile?: string;
  readonly fingerprint?: string;
  readonly insecureAcceptFingerprint?: boolean;
  readonly headless?: boolean;
  readonly user?: string;
  readonly browser?: boolean;
  readonly ttl?: string;
}

interface LoginAnswer {
  readonly token: string;
  readonly expires_at: string;
  readonly mfa_verified: boolean;
  readonly user: { readonly name: string; readonly roles: readonly string[] };
}

const DEFAULT_AUTH_PORT = 3025;
const BROWSER_TIMEOUT_MS = 5 * 60_000;

/** `host`, `host:port` or `https://host[:port]`; auth's port (3025) when none is written. */
export function normalizeAuthUrl(text: string): string {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `https://${text}`;
  let u: URL;
  try {
    u = new URL(withScheme);
  } catch {
    throw new CliError('ERR_USAGE', `--auth: expected https://HOST[:PORT], got ${JSON.stringify(text)}`);
  }
  if (u.protocol !== 'https:') throw new CliError('ERR_USAGE', `--auth: auth is only spoken to over https, got ${u.protocol}//`);
  // new URL() drops an explicit :443, so look at what was written.
  const explicitPort = /^https:\/\/(\[[^\]]+\]|[^/:?#]+):\d+/i.test(withScheme);
  return `https://${u.hostname}${explicitPort ? `:${u.port || 443}` : `:${DEFAULT_AUTH_PORT}`}`;
}

/**
 * Which certificate to pin. An explicit --fingerprint must be what is presented; a profile's
 * pin is kept (AuthClient enforces it); a certificate the system's CAs vouch for needs none.
 * Anything else is trusted on first use only when the user says so, never silently.
 */
async function decideTrust(url: string, opts: LoginOptions, existing: Profile | undefined): Promise<AuthTarget> {
  if (opts.fingerprint !== undefined) {
    let pin: string;
    try {
      pin = normalizeFingerprint(opts.fingerprint);
    } catch (e) {
      throw new CliError('ERR_USAGE', `--fingerprint: ${(e as Error).message}`);
    }
    return { url, fingerprint: pin };
  }
  if (existing?.authUrl === url && existing.fingerprint !== undefined) return { url, fingerprint: existing.fingerprint };
  const presented = await presentedCertificate(url);
  if (presented.trusted) return { url };
  const host = new URL(url).host;
  if (opts.insecureAcceptFingerprint === true) {
    process.stderr.write(`pcsh: trusting auth at ${host} on first use: certificate SHA-256 ${presented.fingerprint}\n`);
    return { url, fingerprint: presented.fingerprint };
  }
  if (interactive()) {
    process.stderr.write(`The auth service at ${host} presents a certificate no system CA vouches for.\n  SHA-256 fingerprint: ${presented.fingerprint}\n`);
    if (await confirm('Does this match the fingerprint its operator gave you?')) return { url, fingerprint: presented.fingerprint };
  }
  throw new CliError(
    'ERR_AUTH',
    `auth at ${host} is not trusted yet: its certificate's SHA-256 fingerprint is ${presented.fingerprint}; ` +
      `compare it with what the service printed at start, then run pcsh login --fingerprint ${presented.fingerprint} (or --insecure-accept-fingerprint)`,
  );
}

/** A TOTP challenge answered: the ticket and a code, once (or three times in a terminal). */
async function finishMfa(api: AuthApi, refusal: ApiRefusal): Promise<LoginAnswer> {
  const ticket = refusal.details['ticket'];
  if (typeof ticket !== 'string') throw refusal;
  const attempts = interactive() ? 3 : 1;
  for (let i = 1; ; i++) {
    const totp = await promptTotp();
    try {
      return await api.call<LoginAnswer>('POST', '/v1/login/mfa', { json: { ticket, totp } });
    } catch (e) {
      if (i >= attempts || !(e instanceof ApiRefusal) || e.apiCode !== 'ERR_MFA_INVALID') throw e;
      process.stderr.write(`pcsh: ${e.message}\n`);
    }
  }
}

async function withMfa(api: AuthApi, attempt: () => Promise<LoginAnswer>): Promise<LoginAnswer> {
  try {
    return await attempt();
  } catch (e) {
    if (e instanceof ApiRefusal && e.apiCode === 'ERR_MFA_REQUIRED') return finishMfa(api, e);
    throw e;
  }
}

async function passwordLogin(api: AuthApi, username: string): Promise<LoginAnswer> {
  const env = process.env['PCSH_PASSWORD'];
  const password = env !== undefined && env !== '' ? env : await promptSecret(`Password for ${username}@${new URL(api.target.url).hostname}: `, 'a password');
  if (password === '') throw new CliError('ERR_USAGE', 'an empty password was given');
  return api.call<LoginAnswer>('POST', '/v1/login/password', { json: { username, password } });
}

async function browserLogin(api: AuthApi, openIt: boolean): Promise<LoginAnswer> {
  const listener = await listenLoopback();
  try {
    const started = await api.call<{ url: string; state: string; expires_at: string }>('POST', '/v1/login/oidc/start', { json: { redirect_uri: listener.redirectUri } });
    const opened = openIt && (await openBrowser(started.url));
    process.stderr.write(opened ? `Opened the browser to sign in. If it did not open, use: ${started.url}\n` : `Open this URL in a browser to sign in: ${started.url}\n`);
    const deadline = Math.min(Date.parse(started.expires_at) - Date.now(), BROWSER_TIMEOUT_MS);
    const callback = await withProgress('Waiting for the sign-in in the browser…', () => listener.waitForCallback(started.state, Math.max(deadline, 10_000)));
    try {
      const answer = await api.call<LoginAnswer>('POST', '/v1/login/oidc/finish', { json: { callback_url: callback.url } });
      callback.respond(true, 'You are signed in to Portcullis. You can close this tab.');
      return answer;
    } catch (e) {
      const mfa = e instanceof ApiRefusal && e.apiCode === 'ERR_MFA_REQUIRED';
      callback.respond(mfa, mfa ? 'One more step: enter the code from your authenticator app in the terminal.' : (e as Error).message);
      throw e;
    }
  } finally {
    listener.close();
  }
}

interface DeviceStart {
  readonly handle: string;
  readonly user_code: string;
  readonly verification_uri: string;
  readonly verification_uri_complete?: string;
  readonly interval: number;
  readonly expires_at: string;
}

async function deviceLogin(api: AuthApi): Promise<LoginAnswer> {
  const d = await api.call<DeviceStart>('POST', '/v1/login/device/start', { json: {} });
  process.stderr.write(`To sign in, open ${d.verification_uri} on any device and enter the code ${d.user_code}\n`);
  if (d.verification_uri_complete !== undefined) process.stderr.write(`(or open ${d.verification_uri_complete})\n`);
  const progress = startProgress('Waiting for the sign-in to be approved…');
  try {
    let interval = Math.max(1, d.interval);
    const deadline = Date.parse(d.expires_at);
    for (;;) {
      // RFC 8628: wait the interval before each poll; auth passes slow_down on as a longer one.
      await sleep(interval * 1000);
      if (Date.now() > deadline) throw new CliError('ERR_AUTH', `the device code expired at ${d.expires_at} before the sign-in was approved; run pcsh login --headless again`);
      const r = await api.call<{ status: string; interval?: number } & Partial<LoginAnswer>>('POST', '/v1/login/device/poll', { json: { handle: d.handle } });
      if (r.status === 'pending') {
        interval = Math.max(interval, r.interval ?? interval);
        continue;
      }
      return r as LoginAnswer;
    }
  } finally {
    progress.stop();
  }
}

export async function login(opts: LoginOptions): Promise<void> {
  const store = new ProfileStore();
  const named = opts.profile ?? (opts.auth === undefined ? store.current() : undefined);
  const previous = named === undefined ? undefined : store.load(named);
  const authText = opts.auth ?? previous?.authUrl;
  if (authText === undefined) throw new CliError('ERR_USAGE', 'pcsh login needs --auth https://HOST:3025 the first time');
  const url = normalizeAuthUrl(authText);
  const name = opts.profile ?? profileNameFor(url);
  const existing = store.load(name);
  if (opts.headless === true && opts.user !== undefined) throw new CliError('ERR_USAGE', '--headless (SSO device code) and --user (local password) exclude each other');

  const target = await decideTrust(url, opts, existing);
  const api = new AuthApi(target);
  const answer = await withMfa(api, () =>
    opts.user !== undefined ? passwordLogin(api, opts.user) : opts.headless === true ? deviceLogin(api) : browserLogin(api, opts.browser !== false),
  );

  const profile: Profile = {
    name,
    authUrl: url,
    ...(target.fingerprint === undefined ? {} : { fingerprint: target.fingerprint }),
    user: answer.user.name,
    token: answer.token,
    sessionExpiresAt: answer.expires_at,
    loginMethod: opts.user !== undefined ? 'password' : opts.headless === true ? 'oidc-device' : 'oidc',
  };
  store.save(profile);
  store.setCurrent(name);

  const session = new AuthApi(targetOf(profile), answer.token);
  const ca = await session.call<{ host: { known_hosts: string } }>('GET', '/v1/ca');
  store.writeKnownHosts(name, ca.host.known_hosts.split('\n').filter((l) => l.trim() !== ''));

  // A fresh key for every login: a key that leaked with an old certificate stays useless.
  newKeyPair(store, profile);
  try {
    await ensureCertificate({ store, profile: name, force: true, ...(opts.ttl === undefined ? {} : { ttl: opts.ttl }) });
  } catch (e) {
    // An administrator's role may grant no login at all; the session is still what pcctl needs.
    if (e instanceof ApiRefusal && e.apiCode === 'ERR_FORBIDDEN') {
      process.stderr.write(`pcsh: logged in as ${answer.user.name}, but no SSH certificate was issued: ${e.message}\n`);
      return;
    }
    throw e;
  }
}

export async function logout(explicitProfile: string | undefined): Promise<void> {
  const store = new ProfileStore();
  const profile = store.resolve(explicitProfile);
  let failure: CliError | undefined;
  if (profile.token !== undefined) {
    try {
      await new AuthApi(targetOf(profile), profile.token).call('POST', '/v1/logout', { json: {} });
    } catch (e) {
      // Already expired or revoked is what logout wants; anything else is reported after the
      // local secrets are gone, so a dead auth service never keeps a key on disk.
      if (!(e instanceof ApiRefusal && e.apiCode === 'ERR_UNAUTHENTICATED')) failure = e instanceof CliError ? e : new CliError('ERR_REFUSED', String(e));
    }
  }
  store.forgetSecrets(profile.name);
  store.removeKnownHosts(profile.name);
  if (failure !== undefined) {
    throw new CliError(failure.code, `local keys and session deleted, but the session could not be revoked at auth: ${failure.message}`);
  }
}
