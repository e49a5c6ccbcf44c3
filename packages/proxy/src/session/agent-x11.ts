import ssh2 from 'ssh2';
import type { AcceptConnection, Channel, ClientChannel, RejectConnection, ServerChannel, X11Details, X11Info } from 'ssh2';
import { pump } from './pump.js';
import type { Relay } from './relay.js';

/*
 * Agent and X11 forwarding: the two kinds of channel that the *target* opens back toward the
 * client. The client asks on its session channel (auth-agent-req@openssh.com, x11-req); the
 * proxy answers from the policy (the certificate's permit-agent-forwarding / permit-X11-
 * forwarding AND the user's roles now), asks the target the same when it starts the shell or
 * command, and then relays each channel the target opens (auth-agent@openssh.com, x11) by
 * opening the same kind of channel to the client.
 *
 * The bytes are relayed but not given to the tap: the agent protocol carries signing requests
 * and public keys, X11 a display protocol; neither is terminal output, and recording signature
 * requests would hand a reader of recordings nothing useful. The channel opening and closing
 * are recorded as events, and either counts as activity for the idle timeout.
 *
 * ssh2 has no public way to open an auth-agent channel from its server side, nor to hand its
 * client an agent per connection after connect; both are done through the same internals its
 * own openChannel and agent code use (ssh2 is pinned to 1.17.0; the tests break if they move).
 */

/** ssh2's channel sizes (lib/Channel.js); the server-side open must use the same ones. */
const MAX_WINDOW = 2 * 1024 * 1024;
const PACKET_SIZE = 32 * 1024;

/** What one session channel asked for, as replayed to the target with its start request. */
export interface BackChannelRequests {
  agent: boolean;
  x11: X11Info | undefined;
}

export function noBackChannels(): BackChannelRequests {
  return { agent: false, x11: undefined };
}

/** The client's auth-agent-req on a session channel; granted only when the policy allows it. */
export function onAgentRequest(relay: Relay, asked: BackChannelRequests, ok: (() => void) | undefined, no: (() => void) | undefined): void {
  relay.touch();
  if (!relay.policy.agentForwarding) {
    refused(relay, 'agent', 'agent forwarding (the certificate or the roles do not permit it)');
    no?.();
    return;
  }
  asked.agent = true;
  ok?.();
}

/** The client's x11-req; granted only when the policy allows it. */
export function onX11Request(relay: Relay, asked: BackChannelRequests, ok: (() => void) | undefined, no: (() => void) | undefined, info: X11Info): void {
  relay.touch();
  if (!relay.policy.x11Forwarding) {
    refused(relay, 'x11', 'x11-req (the certificate or the roles do not permit it)');
    no?.();
    return;
  }
  asked.x11 = info;
  ok?.();
}

function refused(relay: Relay, kind: 'agent' | 'x11', what: string): void {
  relay.deps.metrics?.channelRefused(kind);
  relay.deps.log('info', `session ${relay.identity.sessionId}: refused ${what}`);
}

/**
 * The options for ssh2's exec()/shell() that repeat the client's requests to the target, after
 * making sure the upstream connection will relay what the target opens in return.
 */
export function upstreamBackChannelOptions(relay: Relay, upstream: ssh2.Client, asked: BackChannelRequests): { agentForward?: true; x11?: ssh2.X11Options } {
  const out: { agentForward?: true; x11?: ssh2.X11Options } = {};
  if (asked.agent && relay.policy.agentForwarding) {
    installAgentRelay(relay, upstream);
    out.agentForward = true;
  }
  if (asked.x11 !== undefined && relay.policy.x11Forwarding) {
    installX11Relay(relay, upstream);
    // The client's own (fake) cookie goes to the target unchanged: X11 clients there present
    // it, and the client's ssh checks it and swaps in the real one before its display sees it.
    // ssh2 reads the cookie as bytes and hex-encodes bytes again; it is already hex text.
    const cookie = Buffer.isBuffer(asked.x11.cookie) ? asked.x11.cookie.toString('latin1') : String(asked.x11.cookie);
    out.x11 = { single: asked.x11.single, protocol: asked.x11.protocol, cookie, screen: asked.x11.screen };
  }
  return out;
}

// -------------------------------------------------------------------------------------------
// Agent

interface Ssh2ServerInternals {
  _chanMgr: { add(handler: unknown): number };
  _protocol: { openssh_authAgent(channel: number, initWindow: number, maxPacket: number): void };
}

/** Opens an auth-agent@openssh.com channel from the proxy to the client (what sshd does for `ssh -A`). */
export function openClientAgentChannel(client: ssh2.Connection, cb: (err: Error | undefined, channel?: ServerChannel) => void): void {
  const internals = client as unknown as Ssh2ServerInternals;
  const handler = Object.assign((err: Error | undefined, stream?: ServerChannel) => cb(err, stream), { type: 'auth-agent@openssh.com' });
  const local = internals._chanMgr.add(handler);
  if (local === -1) {
    cb(new Error('no free channels on the client connection'));
    return;
  }
  internals._protocol.openssh_authAgent(local, MAX_WINDOW, PACKET_SIZE);
}

/**
 * The agent ssh2's client consults when the target opens auth-agent@openssh.com: each stream
 * is a fresh agent channel to the client, relayed by the caller (ssh2 pipes it both ways).
 */
class ClientAgentRelay extends ssh2.BaseAgent {
  readonly #relay: Relay;

  constructor(relay: Relay) {
    super();
    this.#relay = relay;
  }

  override getStream(cb: (err: Error | undefined, stream?: Channel) => void): void {
    const relay = this.#relay;
    // Checked again per channel: a lock or a changed role may have come since the request.
    if (relay.ended || !relay.policy.agentForwarding) {
      cb(new Error('agent forwarding is not permitted'));
      return;
    }
    relay.touch();
    openClientAgentChannel(relay.client, (err, channel) => {
      if (err !== undefined || channel === undefined) {
        cb(err ?? new Error('the client refused the agent channel'));
        return;
      }
      const ch = relay.channelId();
      void relay.tapEvent({ type: 'open', channel: ch, kind: 'agent' });
      channel.once('close', () => void relay.tapEvent({ type: 'close', channel: ch }));
      channel.on('data', () => relay.touch());
      const untrack = relay.track({ stderr: channel.stderr, end: () => channel.close() });
      channel.once('close', untrack);
      cb(undefined, channel as unknown as Channel);
    });
  }

  // Never used for authentication: the proxy logs in with its own certificate.
  getIdentities(cb: (err: Error | undefined, keys?: ssh2.ParsedKey[]) => void): void {
    cb(new Error('the relayed agent is for forwarding only'));
  }

  sign(_pubKey: ssh2.ParsedKey, _data: Buffer, _options: unknown, cb?: (err: Error | undefined, signature?: Buffer) => void): void {
    cb?.(new Error('the relayed agent is for forwarding only'));
  }
}

const agentInstalled = new WeakSet<ssh2.Client>();

function installAgentRelay(relay: Relay, upstream: ssh2.Client): void {
  if (agentInstalled.has(upstream)) return;
  agentInstalled.add(upstream);
  (upstream as unknown as { _agent: ssh2.BaseAgent })._agent = new ClientAgentRelay(relay);
}

// -------------------------------------------------------------------------------------------
// X11

const x11Installed = new WeakSet<ssh2.Client>();

function installX11Relay(relay: Relay, upstream: ssh2.Client): void {
  if (x11Installed.has(upstream)) return;
  x11Installed.add(upstream);
  upstream.on('x11', (info: X11Details, accept: AcceptConnection<ClientChannel>, reject: RejectConnection) => {
    if (relay.ended || !relay.policy.x11Forwarding) {
      reject();
      return;
    }
    relay.touch();
    relay.client.x11(info.srcIP, info.srcPort, (err, channel) => {
      if (err) {
        reject();
        return;
      }
      const ch = relay.channelId();
      void relay.tapEvent({ type: 'open', channel: ch, kind: 'x11' });
      void bridge(relay, channel, accept()).then(() => relay.tapEvent({ type: 'close', channel: ch }));
    });
  });
}

/** Both directions with backpressure, EOF passed on; both channels closed when either is done. */
async function bridge(relay: Relay, client: ServerChannel, upstream: ClientChannel): Promise<void> {
  const local = new AbortController();
  const signal = AbortSignal.any([relay.signal, local.signal]);
  const untrack = relay.track({ stderr: client.stderr, end: () => local.abort() });
  const onError = (): void => local.abort();
  const closed = (s: ServerChannel | ClientChannel): Promise<void> => new Promise((resolve) => s.once('close', () => resolve()));
  const up = pump(client, upstream, { signal, onError, onChunk: (c) => relay.traffic(c.length, 0) }).then((how) => {
    if (how === 'end') upstream.end();
  });
  const down = pump(upstream, client, { signal, onError, onChunk: (c) => relay.traffic(0, c.length) }).then((how) => {
    if (how === 'end') client.end();
  });
  await Promise.race([Promise.all([up, down]), closed(client), closed(upstream)]);
  local.abort();
  client.close();
  upstream.close();
  untrack();
}
