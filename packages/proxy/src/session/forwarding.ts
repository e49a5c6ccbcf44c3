import { Writable } from 'node:stream';
import type { Duplex } from 'node:stream';
import type { AcceptConnection, ClientChannel, RejectConnection, ServerChannel, TcpipBindInfo, TcpipRequestInfo, TcpConnectionDetails } from 'ssh2';
import { identityFields } from '../audit.js';
import type { Relay } from './relay.js';
import { pumpToClient, pumpToTarget } from './tapped-pump.js';

/*
 * Port forwarding, only when the certificate has permit-port-forwarding AND the user's roles
 * allow it now (relay.policy.portForwarding). Forwarded bytes pass the tap like any other
 * channel's: a forward is a way around session recording, so it must at least be visible.
 */

/** -L and -D: the client opens direct-tcpip; the target's sshd makes the TCP connection. */
export function relayDirectTcpip(relay: Relay, accept: AcceptConnection<ServerChannel>, reject: RejectConnection, info: TcpipRequestInfo): void {
  relay.touch();
  const id = identityFields(relay.identity);
  const fields = { ...id, direction: 'local', destination: `${info.destIP}:${info.destPort}`, origin: `${info.srcIP}:${info.srcPort}` };
  if (!relay.policy.portForwarding) {
    relay.deps.metrics?.channelRefused('direct-tcpip');
    relay.deps.audit('session.port_forward', { ...fields, allowed: false, reason: 'port forwarding is not permitted' }, true);
    reject();
    return;
  }
  relay.upstream.then(
    (up) => {
      if (relay.ended) return reject();
      up.client.forwardOut(info.srcIP, info.srcPort, info.destIP, info.destPort, (err, upstream) => {
        if (err) {
          relay.deps.audit('session.port_forward', { ...fields, allowed: true, error: err.message }, true);
          reject();
          return;
        }
        const channel = accept();
        const ch = relay.channelId();
        relay.deps.audit('session.port_forward', { ...fields, allowed: true, channel: ch });
        void relay.tapEvent({ type: 'open', channel: ch, kind: 'direct-tcpip' });
        void relay.tapEvent({ type: 'forward', channel: ch, direction: 'local', host: info.destIP, port: info.destPort, origin: fields.origin });
        void relayBytes(relay, ch, channel, upstream);
      });
    },
    () => reject(),
  );
}

interface RemoteForward {
  /** What the client asked to bind, as it will match incoming forwarded-tcpip channels. */
  readonly bindAddr: string;
  readonly bindPort: number;
}

/**
 * -R: tcpip-forward and cancel-tcpip-forward go to the target, and each connection the target
 * accepts comes back to the client as forwarded-tcpip. ssh2 sends global request replies in
 * the order the requests came, whenever each is decided, as RFC 4254 requires.
 */
export function handleForwardRequests(relay: Relay): void {
  const forwards = new Map<string, RemoteForward>();
  let listening = false;

  relay.client.on('request', (accept, reject, name, info) => {
    relay.touch();
    if (name !== 'tcpip-forward' && name !== 'cancel-tcpip-forward') {
      reject?.();
      return;
    }
    const bind = info as TcpipBindInfo;
    const ok = accept as ((port?: number) => void) | undefined;
    const fields = { ...identityFields(relay.identity), direction: 'remote', bind: `${bind.bindAddr}:${bind.bindPort}` };
    if (name === 'tcpip-forward' && !relay.policy.portForwarding) {
      relay.deps.metrics?.channelRefused('tcpip-forward');
      relay.deps.audit('session.port_forward', { ...fields, allowed: false, reason: 'port forwarding is not permitted' }, true);
      reject?.();
      return;
    }
    relay.upstream.then(
      (up) => {
        if (relay.ended) return reject?.();
        if (!listening) {
          listening = true;
          up.client.on('tcp connection', (details, acceptUp, rejectUp) => onForwarded(relay, forwards, details, acceptUp, rejectUp));
        }
        if (name === 'tcpip-forward') {
          up.client.forwardIn(bind.bindAddr, bind.bindPort, (err, port) => {
            if (err) {
              relay.deps.audit('session.port_forward', { ...fields, allowed: true, error: err.message }, true);
              reject?.();
              return;
            }
            forwards.set(`${bind.bindAddr}:${port}`, { bindAddr: bind.bindAddr, bindPort: bind.bindPort === 0 ? port : bind.bindPort });
            relay.deps.audit('session.port_forward', { ...fields, allowed: true, port });
            ok?.(port);
          });
        } else {
          up.client.unforwardIn(bind.bindAddr, bind.bindPort, (err) => {
            forwards.delete(`${bind.bindAddr}:${bind.bindPort}`);
            if (err) reject?.();
            else ok?.();
          });
        }
      },
      () => reject?.(),
    );
  });
}

function onForwarded(
  relay: Relay,
  forwards: ReadonlyMap<string, RemoteForward>,
  details: TcpConnectionDetails,
  acceptUp: () => ClientChannel,
  rejectUp: () => void,
): void {
  const f = forwards.get(`${details.destIP}:${details.destPort}`);
  if (f === undefined || relay.ended || !relay.policy.portForwarding) {
    rejectUp();
    return;
  }
  relay.touch();
  relay.client.forwardOut(f.bindAddr, f.bindPort, details.srcIP, details.srcPort, (err, channel) => {
    if (err) {
      rejectUp();
      return;
    }
    const upstream = acceptUp();
    const ch = relay.channelId();
    void relay.tapEvent({ type: 'open', channel: ch, kind: 'forwarded-tcpip' });
    void relay.tapEvent({
      type: 'forward',
      channel: ch,
      direction: 'remote',
      host: f.bindAddr,
      port: f.bindPort,
      origin: `${details.srcIP}:${details.srcPort}`,
    });
    void relayBytes(relay, ch, channel, upstream);
  });
}

/**
 * A byte stream both ways (forwarded TCP). EOF passes through; when both directions are done,
 * or either side closes, both channels are closed.
 */
async function relayBytes(relay: Relay, ch: number, client: Duplex & { close(): void }, upstream: Duplex & { close(): void }): Promise<void> {
  const local = new AbortController();
  const signal = AbortSignal.any([relay.signal, local.signal]);
  const onError = (): void => local.abort();
  const untrack = relay.track({ stderr: nullWritable, end: () => local.abort() });
  const closed = (s: Duplex): Promise<void> => new Promise<void>((resolve) => s.once('close', () => resolve()));
  const toTarget = pumpToTarget(relay, ch, client, upstream, { signal, onError });
  const toClient = pumpToClient(relay, ch, 0, upstream, client, { signal, onError }).then((how) => {
    if (how === 'end') client.end();
  });
  await Promise.race([Promise.all([toTarget, toClient]), closed(client), closed(upstream)]);
  local.abort();
  client.close();
  upstream.close();
  untrack();
  await relay.tapEvent({ type: 'close', channel: ch });
}


/** Forwarded TCP has no stderr to explain a termination on. */
const nullWritable = new Writable({
  write(_chunk, _encoding, cb) {
    cb();
  },
});
