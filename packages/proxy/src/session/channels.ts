import type { AcceptConnection, ClientChannel, PseudoTtyInfo, PseudoTtyOptions, ServerChannel, Session } from 'ssh2';
import { envAllowed } from '../config.js';
import { identityFields } from '../audit.js';
import { noBackChannels, onAgentRequest, onX11Request, upstreamBackChannelOptions } from './agent-x11.js';
import { flushed } from './pump.js';
import type { Relay } from './relay.js';
import { pumpToClient, pumpToTarget } from './tapped-pump.js';

/** What the client asked to start on a session channel. */
export type SessionStart =
  | { readonly kind: 'shell' }
  | { readonly kind: 'exec'; readonly command: string }
  | { readonly kind: 'subsystem'; readonly name: string };

/**
 * What actually runs on the target. The certificate's force-command replaces whatever the
 * client asked, as sshd does: the original exec command (or the subsystem name, or nothing for
 * a shell) goes along as SSH_ORIGINAL_COMMAND, which the target sets if its AcceptEnv allows.
 */
export function effectiveStart(asked: SessionStart, forceCommand: string | undefined): { start: SessionStart; env: Record<string, string> } {
  if (forceCommand === undefined) return { start: asked, env: {} };
  const original = asked.kind === 'exec' ? asked.command : asked.kind === 'subsystem' ? asked.name : undefined;
  return { start: { kind: 'exec', command: forceCommand }, env: original === undefined ? {} : { SSH_ORIGINAL_COMMAND: original } };
}

/** How the exit of the target's process reaches the client. */
type Exit = { readonly status: number } | { readonly signal: string; readonly coreDumped: boolean; readonly message: string };

/**
 * Relays one session channel: pty-req and env are answered here (from the certificate's
 * permissions and the env allow-list) and replayed to the target when the shell, exec or
 * subsystem starts; window-change and signal follow it live; output, exit status or signal,
 * EOF and close come back in the target's order.
 *
 * The start request is accepted at once, before the target answers: ssh2 drops data that
 * arrives on a session channel before it is accepted, and OpenSSH sends stdin (sftp its INIT)
 * right behind the request. If the target then refuses, the client reads why on stderr and
 * gets exit status 255, as when ssh itself cannot connect.
 */
export function relaySession(relay: Relay, accept: AcceptConnection<Session>): void {
  const session = accept();
  const ch = relay.channelId();
  relay.touch();
  void relay.tapEvent({ type: 'open', channel: ch, kind: 'session' });
  let pty: PseudoTtyInfo | undefined;
  const env: Record<string, string> = {};
  const backChannels = noBackChannels();
  let upstream: ClientChannel | undefined;
  let started = false;
  let closed = false;
  const refused = (kind: 'pty' | 'env' | 'x11' | 'agent' | 'other', what: string): void => {
    relay.deps.metrics?.channelRefused(kind);
    relay.deps.log('info', `session ${relay.identity.sessionId} channel ${ch}: refused ${what}`);
  };

  session.on('pty', (ok, no, info) => {
    relay.touch();
    if (!relay.policy.pty || started) {
      refused('pty', 'pty-req (the certificate has no permit-pty)');
      no?.();
      return;
    }
    pty = info;
    void relay.tapEvent({ type: 'pty', channel: ch, term: info.term, cols: info.cols, rows: info.rows });
    ok?.();
  });
  session.on('env', (ok, no, info) => {
    if (started || !envAllowed(relay.deps.envAllowList, info.key)) {
      no?.();
      return;
    }
    env[info.key] = info.val;
    void relay.tapEvent({ type: 'env', channel: ch, name: info.key, value: info.val });
    ok?.();
  });
  session.on('window-change', (ok, _no, info) => {
    relay.touch();
    if (pty !== undefined) pty = { ...pty, cols: info.cols, rows: info.rows, width: info.width, height: info.height };
    upstream?.setWindow(info.rows, info.cols, info.height, info.width);
    void relay.tapEvent({ type: 'resize', channel: ch, cols: info.cols, rows: info.rows });
    ok?.();
  });
  session.on('signal', (ok, no, info) => {
    if (upstream === undefined) {
      no?.();
      return;
    }
    upstream.signal(info.name);
    void relay.tapEvent({ type: 'signal', channel: ch, name: info.name });
    ok?.();
  });
  // Granted from the policy here, repeated to the target with the start request (agent-x11.ts).
  session.on('x11', (ok, no, info) => (started ? no?.() : onX11Request(relay, backChannels, ok, no, info)));
  session.on('auth-agent', (ok, no) => (started ? no?.() : onAgentRequest(relay, backChannels, ok, no)));

  const begin = (acceptStart: AcceptConnection<ServerChannel>, asked: SessionStart): void => {
    if (started) return;
    started = true;
    const channel = acceptStart();
    if (channel === undefined) return;
    void run(channel, asked);
  };
  session.on('shell', (ok) => begin(ok, { kind: 'shell' }));
  session.on('exec', (ok, _no, info) => begin(ok, { kind: 'exec', command: info.command }));
  session.on('subsystem', (ok, _no, info) => begin(ok, { kind: 'subsystem', name: info.name }));
  session.on('close', () => {
    closed = true;
    upstream?.close();
  });

  async function run(channel: ServerChannel, asked: SessionStart): Promise<void> {
    const untrack = relay.track({ stderr: channel.stderr, end: () => channel.end() });
    const { start, env: forcedEnv } = effectiveStart(asked, relay.policy.forceCommand);
    await relay.tapEvent(
      start.kind === 'shell'
        ? { type: 'shell', channel: ch }
        : start.kind === 'exec'
          ? { type: 'exec', channel: ch, command: start.command }
          : { type: 'subsystem', channel: ch, name: start.name },
    );
    try {
      const up = await relay.upstream;
      if (closed || relay.ended) throw new Error('the session closed before the target answered');
      // Audited once the target is known and before anything runs there.
      relay.deps.audit('session.exec', {
        ...identityFields(relay.identity),
        channel: ch,
        kind: asked.kind,
        command: asked.kind === 'exec' ? asked.command : undefined,
        subsystem: asked.kind === 'subsystem' ? asked.name : undefined,
        forcedCommand: relay.policy.forceCommand,
        pty: pty !== undefined,
      });
      upstream = await openUpstream(up.client, start, pty, { ...env, ...forcedEnv }, upstreamBackChannelOptions(relay, up.client, backChannels));
    } catch (e) {
      const message = e instanceof Error ? e.message.replace(/^proxy: /, '') : String(e);
      channel.stderr.write(`portcullis: ${message}\r\n`);
      await flushed(channel.stderr, relay.signal);
      if (channel.writable) channel.exit(255);
      channel.end();
      untrack();
      return;
    }
    if (closed || relay.ended) {
      upstream.close();
      untrack();
      return;
    }
    const exit = await relayStreams(relay, ch, channel, upstream);
    untrack();
    if (exit !== undefined) {
      relay.exited('status' in exit ? { status: exit.status } : { signal: exit.signal });
      await relay.tapEvent(
        'status' in exit ? { type: 'exit', channel: ch, status: exit.status } : { type: 'exit', channel: ch, signal: exit.signal },
      );
    }
    await relay.tapEvent({ type: 'close', channel: ch });
  }
}

function openUpstream(
  client: import('ssh2').Client,
  start: SessionStart,
  pty: PseudoTtyInfo | undefined,
  env: Record<string, string>,
  back: ReturnType<typeof upstreamBackChannelOptions>,
): Promise<ClientChannel> {
  const ptyOptions: PseudoTtyOptions | undefined =
    pty === undefined ? undefined : { term: pty.term, cols: pty.cols, rows: pty.rows, width: pty.width, height: pty.height, modes: pty.modes };
  return new Promise<ClientChannel>((resolve, reject) => {
    const done = (err: Error | undefined, stream: ClientChannel): void => {
      if (err) reject(new Error(`the target refused the ${start.kind} request: ${err.message}`));
      else resolve(stream);
    };
    const hasEnv = Object.keys(env).length > 0;
    try {
      switch (start.kind) {
        case 'shell':
          client.shell(ptyOptions ?? false, { ...back, ...(hasEnv ? { env } : {}) }, done);
          break;
        case 'exec':
          client.exec(start.command, { ...back, ...(ptyOptions === undefined ? {} : { pty: ptyOptions }), ...(hasEnv ? { env } : {}) }, done);
          break;
        case 'subsystem':
          client.subsys(start.name, done);
          break;
      }
    } catch (e) {
      reject(e instanceof Error ? e : new Error(String(e)));
    }
  });
}

/**
 * Pumps both ways until the target is done, then hands the client the exit status (after all
 * output, so nothing arrives after it), EOF and close. Client EOF becomes target EOF; the
 * client closing the channel closes the target's.
 */
async function relayStreams(relay: Relay, ch: number, client: ServerChannel, upstream: ClientChannel): Promise<Exit | undefined> {
  let exit: Exit | undefined;
  upstream.on('exit', (code: number | null, signal?: string, coreDumped?: boolean, message?: string) => {
    exit =
      code !== null && code !== undefined
        ? { status: code }
        : { signal: (signal ?? 'SIGKILL').replace(/^SIG/, ''), coreDumped: coreDumped === true, message: message ?? '' };
  });
  const local = new AbortController();
  const signal = AbortSignal.any([relay.signal, local.signal]);
  const onError = (): void => local.abort();
  // ssh2 emits 'close' on the target's channel after its exit request, if any, was read.
  const upstreamClosed = new Promise<void>((resolve) => upstream.once('close', () => resolve()));
  const clientClosed = new Promise<void>((resolve) => client.once('close', () => resolve()));

  const toTarget = pumpToTarget(relay, ch, client, upstream, { signal, onError });
  const stdout = pumpToClient(relay, ch, 0, upstream, client, { signal, onError });
  const stderr = pumpToClient(relay, ch, 1, upstream.stderr, client.stderr, { signal, onError });

  const outcome = await Promise.race([
    Promise.all([stdout, stderr, upstreamClosed]).then(() => 'target-done' as const),
    clientClosed.then(() => 'client-closed' as const),
    new Promise<'aborted'>((resolve) => signal.addEventListener('abort', () => resolve('aborted'), { once: true })),
  ]);
  if (outcome === 'target-done' && !signal.aborted) {
    await Promise.all([flushed(client, signal), flushed(client.stderr, signal)]);
    if (exit !== undefined && client.writable) {
      if ('status' in exit) client.exit(exit.status);
      else client.exit(exit.signal, exit.coreDumped, exit.message);
    }
    client.end();
  } else {
    upstream.close();
    client.close();
  }
  local.abort();
  await toTarget;
  return exit;
}

/**
 * For connections that name no target: every session channel gets `message` on stderr and
 * exit status 1, so `ssh` prints it and returns instead of hanging.
 */
export function refuseSessions(accept: AcceptConnection<Session>, message: string): void {
  const session = accept();
  const say = (acceptStart: AcceptConnection<ServerChannel>): void => {
    const channel = acceptStart();
    if (channel === undefined) return;
    channel.stderr.write(`${message}\r\n`, () => {
      if (channel.writable) channel.exit(1);
      channel.end();
    });
  };
  session.on('pty', (ok) => ok?.());
  session.on('env', (_ok, no) => no?.());
  session.on('shell', (ok) => say(ok));
  session.on('exec', (ok) => say(ok));
  session.on('subsystem', (ok) => say(ok));
}
