import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { CliError } from './errors.js';

/*
 * The client's state under ~/.pcsh (PCSH_HOME overrides it): one profile per auth service,
 * each with where it is, how it is trusted (a pinned certificate fingerprint) and the login
 * session; a key pair and certificate per profile; and a known_hosts file of our own so the
 * user's ~/.ssh/known_hosts is never touched. The directory is 0700 and every file 0600:
 * the session token and private key are as good as the user's password for hours.
 *
 *   ~/.pcsh/current                      name of the profile used by default
 *   ~/.pcsh/profiles/<name>.json         Profile
 *   ~/.pcsh/keys/<name>/id_ed25519       private key (+ .pub, -cert.pub)
 *   ~/.pcsh/known_hosts                  @cert-authority lines, a marked section per profile
 */

export interface Profile {
  readonly name: string;
  /** https://host:port of auth. */
  readonly authUrl: string;
  /** SHA-256 of auth's TLS certificate (`AB:CD:…`); absent when the system's CAs vouch for it. */
  readonly fingerprint?: string;
  readonly user?: string;
  /** The login session token (Bearer). */
  readonly token?: string;
  readonly sessionExpiresAt?: string;
  readonly loginMethod?: string;
}

export interface KeyPaths {
  readonly dir: string;
  readonly privateKey: string;
  readonly publicKey: string;
  readonly certificate: string;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/** PCSH_HOME, or ~/.pcsh. */
export function pcshHome(env: NodeJS.ProcessEnv = process.env): string {
  const h = env['PCSH_HOME'];
  return h !== undefined && h !== '' ? h : join(homedir(), '.pcsh');
}

/** The profile name for an auth URL: its host name, as tsh names profiles after the proxy. */
export function profileNameFor(authUrl: string): string {
  return new URL(authUrl).hostname.replace(/^\[|\]$/g, '').replace(/:/g, '_');
}

export function checkProfileName(name: string): string {
  if (!NAME_RE.test(name)) throw new CliError('ERR_USAGE', `profile name: expected letters, digits, _ . - (up to 128), got ${JSON.stringify(name)}`);
  return name;
}

/** Writes through a temporary file and a rename, so a crash never leaves half a key or token. */
export function writeFileAtomic(path: string, data: string | Uint8Array, mode: number): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, data, { mode });
  chmodSync(tmp, mode);
  renameSync(tmp, path);
}

export function writePrivateFile(path: string, data: string | Uint8Array): void {
  writeFileAtomic(path, data, 0o600);
}

function ensurePrivateDir(path: string): void {
  if (!existsSync(path)) mkdirSync(path, { recursive: true, mode: 0o700 });
  // An existing directory made wider by hand (or by an old umask) is narrowed again.
  if ((statSync(path).mode & 0o077) !== 0) chmodSync(path, 0o700);
}

const SECTION_START = (name: string): string => `# pcsh profile ${name}: begin (managed by pcsh login; edits are lost)`;
const SECTION_END = (name: string): string => `# pcsh profile ${name}: end`;

export class ProfileStore {
  readonly home: string;

  constructor(home: string = pcshHome()) {
    this.home = home;
  }

  #ensureHome(): void {
    ensurePrivateDir(this.home);
    ensurePrivateDir(join(this.home, 'profiles'));
  }

  #profilePath(name: string): string {
    return join(this.home, 'profiles', `${checkProfileName(name)}.json`);
  }

  current(): string | undefined {
    const p = join(this.home, 'current');
    if (!existsSync(p)) return undefined;
    const name = readFileSync(p, 'utf8').trim();
    return name === '' ? undefined : name;
  }

  setCurrent(name: string): void {
    this.#ensureHome();
    writePrivateFile(join(this.home, 'current'), `${checkProfileName(name)}\n`);
  }

  load(name: string): Profile | undefined {
    const path = this.#profilePath(name);
    if (!existsSync(path)) return undefined;
    try {
      const p = JSON.parse(readFileSync(path, 'utf8')) as Profile;
      if (typeof p.authUrl !== 'string') throw new Error('no authUrl');
      return { ...p, name };
    } catch (e) {
      throw new CliError('ERR_CONFIG', `profile ${path} is unreadable (${(e as Error).message}); remove it and log in again`);
    }
  }

  save(profile: Profile): void {
    this.#ensureHome();
    writePrivateFile(this.#profilePath(profile.name), `${JSON.stringify(profile, null, 2)}\n`);
  }

  /** The profile a command works with: the one named, else the current one. */
  resolve(explicit: string | undefined): Profile {
    const name = explicit ?? this.current();
    if (name === undefined) throw new CliError('ERR_AUTH', 'not logged in: run pcsh login --auth https://HOST:3025');
    const p = this.load(name);
    if (p === undefined) throw new CliError('ERR_AUTH', `no profile ${name}: run pcsh login --auth https://HOST:3025 --profile ${name}`);
    return p;
  }

  keyPaths(name: string): KeyPaths {
    const dir = join(this.home, 'keys', checkProfileName(name));
    const privateKey = join(dir, 'id_ed25519');
    return { dir, privateKey, publicKey: `${privateKey}.pub`, certificate: `${privateKey}-cert.pub` };
  }

  ensureKeyDir(name: string): KeyPaths {
    this.#ensureHome();
    ensurePrivateDir(join(this.home, 'keys'));
    const paths = this.keyPaths(name);
    ensurePrivateDir(paths.dir);
    return paths;
  }

  /** Deletes a profile's secrets: session token, key pair, certificate. Keeps URL and pin. */
  forgetSecrets(name: string): void {
    rmSync(this.keyPaths(name).dir, { recursive: true, force: true });
    const p = this.load(name);
    if (p !== undefined) {
      const { token: _t, sessionExpiresAt: _e, ...rest } = p;
      this.save(rest);
    }
  }

  knownHostsPath(): string {
    return join(this.home, 'known_hosts');
  }

  /** Replaces this profile's section of our known_hosts with `lines`; other profiles' stay. */
  writeKnownHosts(name: string, lines: readonly string[]): void {
    this.#ensureHome();
    const path = this.knownHostsPath();
    const kept = existsSync(path) ? withoutSection(readFileSync(path, 'utf8'), name) : [];
    const section = lines.length === 0 ? [] : [SECTION_START(name), ...lines, SECTION_END(name)];
    const all = [...kept, ...section];
    writePrivateFile(path, all.length === 0 ? '' : `${all.join('\n')}\n`);
  }

  removeKnownHosts(name: string): void {
    if (existsSync(this.knownHostsPath())) this.writeKnownHosts(name, []);
  }
}

function withoutSection(text: string, name: string): string[] {
  const out: string[] = [];
  let inside = false;
  for (const line of text.split('\n')) {
    if (line === SECTION_START(name)) inside = true;
    else if (line === SECTION_END(name)) inside = false;
    else if (!inside && line !== '') out.push(line);
  }
  return out;
}
