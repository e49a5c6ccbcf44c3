// Authenticated ssh2 connections for the load scripts: straight to a listener (the proxy with
// `login%host`, or an sshd), or through an OpenSSH bastion as `ssh -J` does (a direct-tcpip
// channel on the bastion, the target's SSH connection inside it).
import ssh2 from 'ssh2';
import type { Certificate, SigningPrivateKey } from '@portcullis/cert-core';
import { UPSTREAM_HOST_KEY_ALGORITHMS, certificateIdentity } from '@portcullis/proxy';
import { CIPHER } from './proxy-system.js';

export interface DialIdentity {
  readonly key: SigningPrivateKey;
  readonly cert: Certificate;
}

function connect(id: DialIdentity, username: string, where: { port: number } | { sock: NodeJS.ReadableStream & NodeJS.WritableStream }): Promise<ssh2.Client> {
  const client = new ssh2.Client();
  return new Promise((resolve, reject) => {
    client.once('ready', () => resolve(client));
    client.once('error', reject);
    client.connect({
      ...('port' in where ? { host: '127.0.0.1', port: where.port } : { sock: where.sock as unknown as ssh2.ConnectConfig['sock'] & object }),
      username,
      authHandler: [{ type: 'publickey', username, key: certificateIdentity(id.key, id.cert) }] as unknown as ssh2.ConnectConfig['authHandler'] & object,
      // The load scripts measure the relay, not host key checking (the ssh-based benches check it).
      hostVerifier: () => true,
      algorithms: { cipher: [CIPHER], serverHostKey: [...UPSTREAM_HOST_KEY_ALGORITHMS] },
      readyTimeout: 60_000,
      keepaliveInterval: 0,
    });
  });
}

export function dialDirect(id: DialIdentity, port: number, username: string): Promise<ssh2.Client> {
  return connect(id, username, { port });
}

/** `ssh -J root@bastion root@target`: the bastion connection closes with the inner one. */
export async function dialThroughBastion(id: DialIdentity, bastionPort: number, targetPort: number, username: string): Promise<ssh2.Client> {
  const outer = await connect(id, username, { port: bastionPort });
  try {
    const channel = await new Promise<ssh2.ClientChannel>((resolve, reject) =>
      outer.forwardOut('127.0.0.1', 0, '127.0.0.1', targetPort, (err, ch) => (err ? reject(err) : resolve(ch))),
    );
    const inner = await connect(id, username, { sock: channel });
    inner.once('close', () => outer.end());
    return inner;
  } catch (e) {
    outer.end();
    throw e;
  }
}
