import type { Socket } from 'node:net';
import { isIPv6 } from 'node:net';
import ssh2 from 'ssh2';
import type { AcceptConnection, EncryptedPrivateKey, RejectConnection, ServerChannel, TcpipRequestInfo } from 'ssh2';
import { generateKey, parseCertificateText, publicPart } from '@portcullis/cert-core';
import type { TargetHost } from './authority.js';
import { serverConfig } from './context.js';
import type { JumpHop, ProxyContext } from './context.js';
import { ProxyError, isProxyError } from './errors.js';
import type { AuthenticatedClient } from './login.js';
import { resolveTarget } from './routing.js';
import { hostCertificateKey } from './ssh2-certs.js';

/*
 * ProxyJump (`ssh -J alice@bastion:3022 root@web01`) and pcsh's stdio form (`ssh -W web01:22
 * alice@bastion`, which is what -J runs) both open a direct-tcpip channel to the target on a
 * connection that authenticated as the user itself. The proxy does not connect that channel
 * to the target's TCP port: it terminates the SSH connection that runs inside it, presenting a
 * short host certificate from auth's host CA for the name the client asked for, authenticates
 * the client's user certificate again (for the login, as any login%host connection), and then
 * dials the real target with its own upstream certificate. So every session through a jump is
 * recorded like any other, and a jump can never reach a port that does not speak SSH: the
 * requested port is ignored, the target's registered address and port are dialled.
 */

/** Renew a cached jump certificate this long before it expires (seconds). */
const RENEW_BEFORE = 120n;
/** Names cached at once; the inventory bounds them anyway, this bounds a runaway. */
const MAX_CACHED = 1_000;

interface JumpIdentity {
  readonly hostKey: EncryptedPrivateKey;
  readonly validBefore: bigint;
}

/** The proxy's key and host certificate per name it stands in for, minted by auth on demand. */
export class JumpHostKeys {
  readonly #cache = new Map<string, Promise<JumpIdentity>>();

  async get(ctx: ProxyContext, name: string, target: TargetHost): Promise<EncryptedPrivateKey> {
    const id = `${name}\n${target.name}`;
    const now = BigInt(Math.floor(ctx.config.now() / 1000));
    const cached = this.#cache.get(id);
    if (cached !== undefined) {
      const c = await cached.catch(() => undefined);
      if (c !== undefined && c.validBefore - now > RENEW_BEFORE) return c.hostKey;
      if (this.#cache.get(id) === cached) this.#cache.delete(id);
    }
    const minting = this.#mint(ctx, name);
    this.#cache.set(id, minting);
    minting.catch(() => this.#cache.delete(id));
    while (this.#cache.size > MAX_CACHED) {
      const oldest = this.#cache.keys().next();
      if (oldest.done === true) break;
      this.#cache.delete(oldest.value);
    }
    return (await minting).hostKey;
  }

  async #mint(ctx: ProxyContext, name: string): Promise<JumpIdentity> {
    const key = generateKey(ctx.config.crypto, 'ssh-ed25519');
    const issued = await ctx.config.authority.jumpHostCertificate({ host: name, publicKey: publicPart(key) });
    const { cert } = parseCertificateText(issued.certificate, 'jump host certificate');
    if (cert.kind !== 'host' || !cert.principals.includes(name)) {
      throw new ProxyError('ERR_CONFIG', `proxy: auth's jump certificate for ${JSON.stringify(name)} names ${JSON.stringify(cert.principals)}`);
    }
    return { hostKey: hostCertificateKey(key, cert), validBefore: cert.validBefore };
  }
}

/**
 * A direct-tcpip request on a jump connection. `acceptInner` runs the whole client flow
 * (authentication, routing, relay) on the SSH connection found inside the channel.
 */
export function startJump(
  ctx: ProxyContext,
  who: AuthenticatedClient,
  peer: string,
  accept: AcceptConnection<ServerChannel>,
  reject: RejectConnection,
  info: TcpipRequestInfo,
  acceptInner: (client: ssh2.Connection, hop: JumpHop) => void,
): void {
  const name = info.destIP;
  const cert = who.identity.certificate;
  const refused = (stage: 'route' | 'upstream', e: unknown): void => {
    const err = isProxyError(e) ? e : new ProxyError('ERR_AUTHORITY_UNAVAILABLE', `proxy: ${e instanceof Error ? e.message : String(e)}`);
    ctx.audit('session.refused', {
      stage,
      reason: err.code,
      message: err.message,
      route: 'jump',
      user: who.identity.user,
      host: name,
      clientAddress: peer,
      certSerial: cert.serial.toString(),
      certKeyId: cert.keyId,
    });
    // ssh2 cannot put a reason into the open failure; the audit log has it.
    reject();
  };
  void (async () => {
    let target: TargetHost;
    try {
      target = await resolveTarget(ctx.config.authority, name);
    } catch (e) {
      refused('route', e);
      return;
    }
    let hostKey: EncryptedPrivateKey;
    try {
      hostKey = await ctx.jumpKeys.get(ctx, name, target);
    } catch (e) {
      refused('upstream', e);
      return;
    }
    const channel = accept();
    if (channel === undefined) return;
    const inner = new ssh2.Server(serverConfig(ctx.config, [hostKey]), (client) => acceptInner(client, { user: who.identity.user, host: name }));
    // ssh2 reads the peer from the socket: the inner connection comes from the real client.
    Object.assign(channel, { remoteAddress: peer, remoteFamily: isIPv6(peer) ? 'IPv6' : 'IPv4', remotePort: info.srcPort });
    inner.injectSocket(channel as unknown as Socket);
  })();
}
