import { existsSync, readFileSync } from 'node:fs';
import ssh2 from 'ssh2';
import { parseKnownHosts, parsePrivateKey, type PublicKey } from '@portcullis/cert-core';
import { nodeCrypto } from '@portcullis/cert-core/node';
import { certificateIdentity, hostCertificateVerifier, HOST_CERTIFICATE_ALGORITHMS } from '@portcullis/proxy';
import { CliError } from '../common/errors.js';
import type { Profile } from '../common/profile.js';
import { ensureCertificate, type EnsuredCertificate } from './certificate.js';

/*
 * `pcsh proxy ssh login@host:port`: the stdio tunnel stock ssh runs as its ProxyCommand. It is
 * the same request as `ssh -W host:port user@bastion` (a direct-tcpip channel the proxy
 * terminates as a jump and records), made with pcsh's own certificate, minted first when the
 * current one is about to expire, so every connection starts with a fresh one. The proxy must
 * prove itself with a host certificate from the host CA in pcsh's known_hosts: a bastion is
 * never trusted on first use.
 */

export const DEFAULT_PROXY_PORT = 3022;

export interface ProxyAddress {
  readonly host: string;
  readonly port: number;
}

/** host:port, [v6]:port or a bare host (port 3022). */
export function parseProxyAddress(text: string): ProxyAddress {
  const m = /^(?:\[([^\]]+)\]|([^:\s]+))(?::(\d{1,5}))?$/.exec(text.trim());
  const port = m?.[3] === undefined ? DEFAULT_PROXY_PORT : Number(m[3]);
  if (!m || port < 1 || port > 65535) throw new CliError('ERR_USAGE', `proxy address: expected host[:port], got ${JSON.stringify(text)}`);
  return { host: m[1] ?? m[2]!, port };
}

/**
 * Where the proxy is: --proxy, else PCSH_PROXY, else the auth host on port 3022 (the
 * one-machine layout `portcullis start` makes).
 */
export function proxyAddressFor(profile: Profile, explicit: string | undefined, env: NodeJS.ProcessEnv = process.env): ProxyAddress {
  const given = explicit ?? env['PCSH_PROXY'];
  if (given !== undefined && given !== '') return parseProxyAddress(given);
  return { host: new URL(profile.authUrl).hostname.replace(/^\[|\]$/g, ''), port: DEFAULT_PROXY_PORT };
}

/** `login@host:port` as ssh's %r@%h:%p gives it (an IPv6 %h comes bare: the port is the last field). */
export function parseTunnelTarget(text: string): { login: string | undefined; host: string; port: number } {
  const at = text.lastIndexOf('@');
  const login = at > 0 ? text.slice(0, at) : undefined;
  const rest = at >= 0 ? text.slice(at + 1) : text;
  const m = /^(?:\[([^\]]+)\]|(.+?))(?::(\d{1,5}))?$/.exec(rest);
  const host = m?.[1] ?? m?.[2];
  const port = m?.[3] === undefined ? 22 : Number(m[3]);
  if (host === undefined || host === '' || port < 1 || port > 65535) throw new CliError('ERR_USAGE', `expected [login@]host[:port], got ${JSON.stringify(text)}`);
  return { login, host, port };
}

/** The host CA keys of pcsh's known_hosts (@cert-authority lines). */
export function hostAuthorities(knownHostsPath: string): PublicKey[] {
  if (!existsSync(knownHostsPath)) return [];
  try {
    return parseKnownHosts(readFileSync(knownHostsPath, 'utf8'))
      .filter((e) => e.marker === 'cert-authority')
      .map((e) => e.key);
  } catch (e) {
    throw new CliError('ERR_CONFIG', `${knownHostsPath} is unreadable (${(e as Error).message}); run pcsh login again`);
  }
}

export interface ProxyConnection {
  readonly client: ssh2.Client;
  readonly cert: EnsuredCertificate;
  readonly address: ProxyAddress;
}

/**
 * What every connection to the proxy presents, read once: the certificate (minted first when
 * it is about to expire), the key behind it, the host CAs the proxy must prove itself with,
 * and where the proxy is. `pcsh bench` dials thousands of connections with one of these.
 */
export interface ProxyIdentity {
  readonly cert: EnsuredCertificate;
  readonly address: ProxyAddress;
  /** The user's own name: what a jump hop logs in as. */
  readonly user: string;
  readonly hostCAs: readonly PublicKey[];
  readonly identity: ReturnType<typeof certificateIdentity>;
}

export async function proxyIdentity(opts: { profile?: string; proxy?: string }): Promise<ProxyIdentity> {
  const cert = await ensureCertificate(opts.profile === undefined ? {} : { profile: opts.profile });
  const address = proxyAddressFor(cert.profile, opts.proxy);
  const hostCAs = hostAuthorities(cert.knownHostsPath);
  if (hostCAs.length === 0) throw new CliError('ERR_CONFIG', `no host CA in ${cert.knownHostsPath}; run pcsh login again`);
  let identity;
  try {
    const key = parsePrivateKey(readFileSync(cert.privateKeyPath, 'utf8')).key;
    identity = certificateIdentity(key as Parameters<typeof certificateIdentity>[0], cert.certificate);
  } catch (e) {
    throw new CliError('ERR_AUTH', `the key in ${cert.privateKeyPath} does not match its certificate (${(e as Error).message}); run pcsh login again`);
  }
  // The outer connection is a jump hop: the proxy wants the user's own name there.
  const user = cert.certificate.keyId.split(/\s+/)[0] ?? cert.profile.user ?? '';
  return { cert, address, user, hostCAs, identity };
}

/**
 * One authenticated SSH connection to the proxy. `username` defaults to the user's own name (a
 * jump hop); `login%host` makes it a connection to that host.
 */
export function dialProxy(id: ProxyIdentity, o: { username?: string; readyTimeoutMs?: number } = {}): Promise<ssh2.Client> {
  const { address } = id;
  const username = o.username ?? id.user;
  const verifier = hostCertificateVerifier({
    trustedHostCAs: id.hostCAs,
    hostname: address.host,
    now: () => BigInt(Math.floor(Date.now() / 1000)),
    crypto: nodeCrypto,
  });
  const where = `${address.host}:${address.port}`;
  const client = new ssh2.Client();
  return new Promise<ssh2.Client>((resolve, reject) => {
    client.once('ready', () => resolve(client));
    client.once('error', (e: Error & { level?: string }) => {
      const v = verifier.verdict;
      if (v !== undefined && !v.accepted) reject(new CliError('ERR_REFUSED', `the proxy at ${where} is not trusted: ${v.reason.replace(/^proxy: /, '')}`));
      else if (e.level === 'client-authentication') reject(new CliError('ERR_AUTH', `the proxy at ${where} refused your certificate (locked, revoked or expired login?); run pcsh login`));
      else if (e.level === 'client-timeout') reject(new CliError('ERR_UNREACHABLE', `no answer from the proxy at ${where} (timed out)`));
      else reject(new CliError('ERR_UNREACHABLE', `cannot reach the proxy at ${where}: ${e.message}`));
    });
    client.connect({
      host: address.host,
      port: address.port,
      username,
      // ssh2 drops a non-string privateKey option; the certificate identity goes through the handler.
      authHandler: [{ type: 'publickey', username, key: id.identity }] as unknown as ssh2.AuthenticationType[],
      hostVerifier: verifier,
      algorithms: { serverHostKey: HOST_CERTIFICATE_ALGORITHMS as ssh2.ServerHostKeyAlgorithm[] },
      readyTimeout: o.readyTimeoutMs ?? 15_000,
      keepaliveInterval: 15_000,
    });
  });
}

/** An authenticated SSH connection to the proxy as the profile's user. */
export async function connectProxy(opts: { profile?: string; proxy?: string }): Promise<ProxyConnection> {
  const id = await proxyIdentity(opts);
  return { client: await dialProxy(id), cert: id.cert, address: id.address };
}

/** Pipes stdin/stdout through a direct-tcpip channel to host:port until either side ends. */
export async function proxySsh(opts: { profile?: string; proxy?: string }, target: string): Promise<void> {
  const { host, port } = parseTunnelTarget(target);
  const { client, address } = await connectProxy(opts);
  const channel = await new Promise<ssh2.ClientChannel>((resolve, reject) =>
    client.forwardOut('127.0.0.1', 0, host, port, (err, stream) => {
      if (err) reject(new CliError('ERR_NOT_FOUND', `the proxy at ${address.host}:${address.port} cannot reach ${host}: ${err.message}`));
      else resolve(stream);
    }),
  ).catch((e: unknown) => {
    client.end();
    throw e;
  });
  await new Promise<void>((resolve) => {
    process.stdin.pipe(channel);
    channel.pipe(process.stdout);
    process.stdin.on('end', () => channel.end());
    channel.on('close', () => resolve());
    client.on('close', () => resolve());
    client.on('error', () => resolve());
  });
  process.stdin.unpipe(channel);
  process.stdin.pause();
  client.end();
}
