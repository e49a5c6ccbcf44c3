import ssh2 from 'ssh2';
import type { AnyAuthMethod, CipherAlgorithm, ConnectConfig, NextAuthHandler } from 'ssh2';
import { generateKey, parseCertificateText, publicPart } from '@portcullis/cert-core';
import type { Certificate, CryptoBackend, TrustedAuthorities } from '@portcullis/cert-core';
import type { AuthorityClient, ClientCertificateRef, IssuedCertificate, TargetHost } from './authority.js';
import { ProxyError, isProxyError } from './errors.js';
import { UPSTREAM_HOST_KEY_ALGORITHMS, certificateIdentity, hostCertificateVerifier } from './ssh2-certs.js';
import type { HostKeyVerdict } from './ssh2-certs.js';

/**
 * AES-GCM first: with AES-NI it is the fastest cipher ssh2 and OpenSSH share, and the proxy
 * decrypts and re-encrypts every byte on one thread.
 */
export const UPSTREAM_CIPHERS: CipherAlgorithm[] = [
  'aes128-gcm@openssh.com',
  'aes256-gcm@openssh.com',
  'chacha20-poly1305@openssh.com',
  'aes128-ctr',
  'aes256-ctr',
];

export interface DialRequest {
  readonly authority: AuthorityClient;
  readonly target: TargetHost;
  readonly user: string;
  readonly login: string;
  /** Ties auth's issuance record to this connection (the proxy's session id). */
  readonly requestId: string;
  /** The certificate the client authenticated with; auth re-checks it before it signs. */
  readonly client: ClientCertificateRef;
  readonly hostCAs: TrustedAuthorities;
  readonly isRevoked: (cert: Certificate) => boolean | string;
  readonly crypto: CryptoBackend;
  readonly now: () => number;
  readonly timeoutMs: number;
  readonly keepaliveIntervalMs: number;
  readonly keepaliveCountMax: number;
}

export interface Upstream {
  readonly client: ssh2.Client;
  readonly target: TargetHost;
  readonly certificate: IssuedCertificate;
  /** The host certificate the target proved to hold. */
  readonly hostCertificate: Certificate;
}

/**
 * Connects to a target as `login`. A fresh Ed25519 key per connection, certified by auth for
 * exactly that login (minted while the key exchange runs, so the two round trips overlap);
 * the target must present a host certificate from the host CA naming its inventory name,
 * whatever address it is dialled at. A plain host key or a foreign CA is refused before any
 * credential is sent: this is the proxy's MITM defence.
 */
export function dialTarget(r: DialRequest): Promise<Upstream> {
  const key = generateKey(r.crypto, 'ssh-ed25519');
  const host = JSON.stringify(r.target.name);
  const minting = r.authority
    .upstreamCertificate({ user: r.user, login: r.login, host: r.target.name, publicKey: publicPart(key), requestId: r.requestId, client: r.client })
    .then((issued) => ({ issued, cert: parseCertificateText(issued.certificate, 'upstream certificate').cert }));
  // Settled before anyone awaits it when the dial fails first; the dial reports the error.
  minting.catch(() => {});

  const verifier = hostCertificateVerifier({
    trustedHostCAs: r.hostCAs,
    hostname: r.target.name,
    now: () => BigInt(Math.floor(r.now() / 1000)),
    crypto: r.crypto,
    isRevoked: r.isRevoked,
  });

  return new Promise<Upstream>((resolve, reject) => {
    const client = new ssh2.Client();
    let mintError: unknown;
    let issuedCert: Certificate | undefined;
    let issued: IssuedCertificate | undefined;
    let settled = false;
    const fail = (e: ProxyError): void => {
      if (settled) return;
      settled = true;
      client.removeAllListeners('ready');
      client.on('error', () => {});
      client.end();
      reject(e);
    };

    const authHandler = (_methods: string[] | null, _partial: boolean | null, next: NextAuthHandler): void => {
      minting.then(
        (m) => {
          issued = m.issued;
          issuedCert = m.cert;
          let identity;
          try {
            identity = certificateIdentity(key, m.cert);
          } catch (e) {
            mintError = e;
            next(false as unknown as AnyAuthMethod);
            return;
          }
          // One attempt: a second call means the target refused the certificate.
          if (triedOnce) {
            next(false as unknown as AnyAuthMethod);
            return;
          }
          triedOnce = true;
          next({ type: 'publickey', username: r.login, key: identity });
        },
        (e: unknown) => {
          mintError = e;
          next(false as unknown as AnyAuthMethod);
        },
      );
    };
    let triedOnce = false;

    client.once('ready', () => {
      if (settled) return;
      const hostCert = acceptedCertificate(verifier.verdict);
      if (issued === undefined || hostCert === undefined) {
        fail(new ProxyError('ERR_UPSTREAM', `proxy: connection to ${host} became ready without our login`));
        return;
      }
      settled = true;
      resolve({ client, target: r.target, certificate: issued, hostCertificate: hostCert });
    });
    client.on('error', (e: Error & { level?: string }) => {
      fail(describeDialError(e, { verdict: verifier.verdict, mintError, target: r.target, login: r.login, issued: issuedCert }));
    });
    client.once('close', () => {
      fail(new ProxyError('ERR_UPSTREAM', `proxy: ${host} closed the connection during login`));
    });

    const config: ConnectConfig = {
      host: r.target.address,
      port: r.target.port,
      username: r.login,
      authHandler: authHandler as unknown as ConnectConfig['authHandler'] & object,
      hostVerifier: verifier,
      readyTimeout: r.timeoutMs,
      keepaliveInterval: r.keepaliveIntervalMs,
      keepaliveCountMax: r.keepaliveCountMax,
      algorithms: { serverHostKey: UPSTREAM_HOST_KEY_ALGORITHMS, cipher: UPSTREAM_CIPHERS },
    };
    try {
      client.connect(config);
    } catch (e) {
      fail(new ProxyError('ERR_UPSTREAM', `proxy: cannot dial ${host}: ${e instanceof Error ? e.message : String(e)}`));
    }
  });
}

function acceptedCertificate(v: HostKeyVerdict | undefined): Certificate | undefined {
  return v !== undefined && v.accepted ? v.check.cert : undefined;
}

/** One clear sentence for the user, by what went wrong first. */
function describeDialError(
  e: Error & { level?: string },
  o: { verdict: HostKeyVerdict | undefined; mintError: unknown; target: TargetHost; login: string; issued: Certificate | undefined },
): ProxyError {
  const host = JSON.stringify(o.target.name);
  if (o.verdict !== undefined && !o.verdict.accepted) {
    return new ProxyError('ERR_HOST_KEY', `${o.verdict.reason.replace(/^proxy: /, '')}. The connection was not made: this can be a man-in-the-middle`);
  }
  if (o.mintError !== undefined) {
    const m = o.mintError;
    if (isProxyError(m)) return m;
    return new ProxyError(
      'ERR_ACCESS_DENIED',
      `auth issued no certificate for ${JSON.stringify(o.login)} on ${host}: ${m instanceof Error ? m.message : String(m)}`,
    );
  }
  if (e.level === 'client-authentication') {
    return new ProxyError(
      'ERR_UPSTREAM',
      // sshd gives no reason over SSH; these are the causes seen in practice, the clock first
      // because it is the one nobody looks for (sshd logs "Certificate invalid: expired").
      `${host} refused the login ${JSON.stringify(o.login)} with the certificate from auth: is its clock more than 5 minutes off ` +
        `(it then sees the certificate${validity(o.issued)} as expired or not yet valid), does its sshd trust the upstream CA in TrustedUserCAKeys, does the login exist? Its sshd log says which`,
    );
  }
  if (e.level === 'client-timeout') return new ProxyError('ERR_UPSTREAM', `${host} (${o.target.address}:${o.target.port}) did not answer in time`);
  return new ProxyError('ERR_UPSTREAM', `cannot reach ${host} at ${o.target.address}:${o.target.port}: ${e.message}`);
}

/** ` (valid 10:00:00 to 10:06:00 UTC)`, the window by auth's clock, for a refusal message. */
function validity(cert: Certificate | undefined): string {
  if (cert === undefined) return '';
  const at = (s: bigint): string => new Date(Number(s) * 1000).toISOString().slice(11, 19);
  return ` (valid ${at(cert.validAfter)} to ${at(cert.validBefore)} UTC)`;
}
