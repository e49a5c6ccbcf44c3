/**
 * What the proxy needs from auth. auth and proxy never import each other: this interface is
 * implemented over auth's HTTP API (authority-http.ts), with the proxy's service credential
 * from its enrollment. Everything here is re-checked by auth at the moment of the call.
 */
import type { PublicKey } from '@portcullis/cert-core';
import type { LockTarget } from './locks.js';

/** A registered host as the proxy may dial it. */
export interface TargetHost {
  /** The inventory name: the host certificate must name it. */
  readonly name: string;
  /** Where to dial: address (or DNS name) and port of its sshd. */
  readonly address: string;
  readonly port: number;
  readonly labels: Readonly<Record<string, string>>;
}

/** The user behind a certificate, as auth's policy sees them now. */
export interface UserAccess {
  readonly user: string;
  readonly roles: readonly string[];
  readonly logins: readonly string[];
  readonly portForwarding: boolean;
  readonly agentForwarding: boolean;
  readonly x11Forwarding: boolean;
  readonly recordSession: 'strict' | 'best-effort';
  readonly recordInput: boolean;
  /** Seconds without traffic before a session is closed. */
  readonly idleTimeout: number;
}

export interface IssuedCertificate {
  /** The certificate line (`...-cert-v01@openssh.com AAAA...`). */
  readonly certificate: string;
  readonly serial: bigint;
  readonly validBefore: bigint;
}

/**
 * The user certificate a client authenticated with, as auth is told of it: auth refuses a
 * revoked certificate, or one whose login session was revoked, at the moment it is asked,
 * without waiting for the proxy's next KRL poll.
 */
export interface ClientCertificateRef {
  readonly serial: bigint;
  readonly keyId: string;
  /** `SHA256:...` of the certified key. */
  readonly fingerprint: string;
}

/** What the proxy asks auth for to log in to a target on a user's behalf. */
export interface UpstreamCertificateRequest {
  readonly user: string;
  readonly login: string;
  readonly host: string;
  readonly publicKey: PublicKey;
  readonly requestId: string;
  /** The certificate the client authenticated with; auth re-checks it before signing. */
  readonly client: ClientCertificateRef;
}

export interface AuthorityClient {
  /** The trusted user CA keys (several during a rotation). */
  userCAs(): Promise<readonly PublicKey[]>;
  /** The trusted host CA keys. */
  hostCAs(): Promise<readonly PublicKey[]>;
  /** The current KRL bytes and its version/ETag; the proxy caches and refreshes it. */
  krl(etag?: string): Promise<{ readonly bytes: Uint8Array; readonly etag: string } | 'unchanged'>;
  /** Resolves a name to exactly one registered host; ambiguity and absence are errors. */
  resolveHost(query: string): Promise<TargetHost>;
  /**
   * The user's access now (locks applied); refuses a locked or unknown user, and, when `client`
   * is given, a revoked client certificate or one whose login session was revoked.
   */
  access(user: string, client?: ClientCertificateRef): Promise<UserAccess>;
  /** A 1-2 minute certificate for exactly `login` on `host`, for `publicKey`. */
  upstreamCertificate(req: UpstreamCertificateRequest): Promise<IssuedCertificate>;
  /** A short host certificate naming `host`, to terminate ProxyJump for it. */
  jumpHostCertificate(req: { readonly host: string; readonly publicKey: PublicKey }): Promise<IssuedCertificate>;
  /** Lock and revocation notices (Redis pub/sub relayed by auth, or read directly). */
  onNotice(listener: (notice: AuthorityNotice) => void): () => void;
}

export type AuthorityNotice =
  /** A `session` lock names a revoked login session (`sess=` in a user certificate's key id). */
  | { readonly kind: 'lock'; readonly target: LockTarget; readonly message?: string }
  | { readonly kind: 'revocation' };
