import { FitAddon } from '@xterm/addon-fit';
import { Terminal } from '@xterm/xterm';
import { TERMINAL_CLOSE, TERMINAL_PATH, TERMINAL_PROTOCOL, parseTerminalServerMessage, type TerminalClientMessage } from '../../shared/terminal-protocol.js';
import { h, statusLine, type Page } from './dom.js';
import { DARK, LIGHT } from './terminal.js';

/*
 * The browser terminal (/web/terminal?host=web01&login=ubuntu, opened in its own tab from the
 * hosts page): xterm.js fitted to the window, keystrokes up and output down as binary frames,
 * resizes and latency pings as typed messages. A role's per-session second factor is asked for
 * in the page; a dropped connection or an ended shell says so and offers a new session.
 */

const PING_INTERVAL_MS = 5_000;

export function terminalPage(params: URLSearchParams, parent: HTMLElement): Page {
  const host = params.get('host') ?? '';
  const login = params.get('login') ?? '';
  document.title = `${login}@${host} · Portcullis`;
  const state = h('span', { class: 'badge', id: 'term-state' }, 'connecting');
  const size = h('span', { class: 'muted small mono', id: 'term-size', title: 'Columns × rows' });
  const latency = h('span', { class: 'muted small', id: 'term-latency', title: 'Keystroke round trip to the gateway' });
  const sessionLink = h('span', { class: 'muted small', id: 'term-session' });
  const reconnect = h('button', { type: 'button', id: 'term-reconnect', hidden: true }, 'Reconnect');
  const status = statusLine();
  status.id = 'term-status';
  const code = h('input', { id: 'term-totp', inputmode: 'numeric', autocomplete: 'one-time-code', pattern: '[0-9]{6,8}', 'aria-label': 'Authenticator code', required: true });
  const mfaError = statusLine('error');
  const mfa = h(
    'form',
    { class: 'card mfa', id: 'term-mfa', hidden: true },
    h('h2', null, 'Second factor for this session'),
    h('p', { class: 'muted small' }, `A role requires a fresh code to open ${login}@${host}.`),
    h('div', { class: 'row' }, code, h('button', { type: 'submit', class: 'primary' }, 'Continue')),
    mfaError,
  );
  const screen = h('div', { class: 'term-screen', id: 'term-screen' });
  const node = h(
    'section',
    { class: 'terminal' },
    h('div', { class: 'term-bar' }, h('strong', null, `${login}@${host}`), state, sessionLink, size, latency, reconnect, h('span', { class: 'muted small hint' }, 'Copy Ctrl+Shift+C · Paste Ctrl+Shift+V')),
    status,
    mfa,
    screen,
  );
  parent.replaceChildren(node);
  parent.classList.add('fill');

  const dark = matchMedia('(prefers-color-scheme: dark)');
  const term = new Terminal({
    cursorBlink: true,
    scrollback: 5000,
    fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace',
    fontSize: 14,
    theme: dark.matches ? DARK : LIGHT,
  });
  const onScheme = (): void => {
    term.options.theme = dark.matches ? DARK : LIGHT;
  };
  dark.addEventListener('change', onScheme);
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.open(screen);
  const showSize = (): void => {
    size.textContent = `${term.cols}×${term.rows}`;
    size.dataset['cols'] = String(term.cols);
    size.dataset['rows'] = String(term.rows);
  };
  fit.fit();
  showSize();
  const encoder = new TextEncoder();
  let ws: WebSocket | undefined;
  let live = false;
  let leaving = false;
  let pinger: ReturnType<typeof setInterval> | undefined;

  const send = (m: TerminalClientMessage): void => {
    if (ws?.readyState === WebSocket.OPEN) ws.send(JSON.stringify(m));
  };
  const sendBytes = (b: Uint8Array): void => {
    if (live && ws?.readyState === WebSocket.OPEN) ws.send(b);
  };

  // Ctrl+Shift+C/V: Ctrl+C and Ctrl+V belong to the shell (interrupt, literal next).
  term.attachCustomKeyEventHandler((ev) => {
    if (ev.type !== 'keydown' || !ev.ctrlKey || !ev.shiftKey) return true;
    if (ev.code === 'KeyC') {
      if (term.hasSelection()) void navigator.clipboard.writeText(term.getSelection()).catch(() => status.say('The browser refused the clipboard.', 'error'));
      return false;
    }
    if (ev.code === 'KeyV') {
      // Chromium would also paste natively on Ctrl+Shift+V, and xterm would take that too.
      ev.preventDefault();
      void navigator.clipboard.readText().then(
        (t) => term.paste(t),
        () => status.say('The browser refused to read the clipboard; allow it, or paste with the context menu.', 'error'),
      );
      return false;
    }
    return true;
  });
  term.onData((d) => sendBytes(encoder.encode(d)));
  term.onBinary((d) => sendBytes(Uint8Array.from(d, (c) => c.charCodeAt(0))));
  term.onResize(({ cols, rows }) => {
    showSize();
    send({ type: 'resize', cols, rows });
  });
  const observer = new ResizeObserver(() => fit.fit());
  observer.observe(screen);

  mfa.addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (!code.checkValidity()) return mfaError.say('Enter the 6 to 8 digits your authenticator shows.');
    send({ type: 'mfa-answer', totp: code.value });
    code.value = '';
    mfa.hidden = true;
    state.textContent = 'connecting';
  });

  const ended = (text: string, kind: 'error' | 'info'): void => {
    live = false;
    if (pinger !== undefined) clearInterval(pinger);
    state.textContent = kind === 'error' ? 'disconnected' : 'ended';
    state.className = `badge ${kind === 'error' ? 'interrupted' : 'ended'}`;
    status.say(text, kind);
    reconnect.hidden = false;
    mfa.hidden = true;
  };

  const connect = (): void => {
    reconnect.hidden = true;
    status.say('');
    state.textContent = 'connecting';
    state.className = 'badge';
    term.reset();
    let closeMessage: string | undefined;
    const socket = new WebSocket(`wss://${location.host}${TERMINAL_PATH}`, TERMINAL_PROTOCOL);
    ws = socket;
    socket.binaryType = 'arraybuffer';
    socket.onopen = () => send({ type: 'open', host, login, cols: term.cols, rows: term.rows });
    socket.onmessage = (ev: MessageEvent<ArrayBuffer | string>) => {
      if (typeof ev.data !== 'string') return term.write(new Uint8Array(ev.data));
      const msg = parseTerminalServerMessage(ev.data);
      // Validated on this end too: something else speaking on this socket is not acted on.
      if (msg === undefined) return socket.close(TERMINAL_CLOSE.protocol, 'unexpected message');
      switch (msg.type) {
        case 'session':
          live = true;
          state.textContent = 'connected';
          state.className = 'badge live';
          sessionLink.textContent = `session ${msg.id.slice(0, 8)}`;
          sessionLink.dataset['id'] = msg.id;
          // The size may have changed while the target was being dialled.
          send({ type: 'resize', cols: term.cols, rows: term.rows });
          pinger = setInterval(() => send({ type: 'ping', t: Math.round(performance.now()) }), PING_INTERVAL_MS);
          send({ type: 'ping', t: Math.round(performance.now()) });
          term.focus();
          break;
        case 'mfa':
          state.textContent = 'second factor';
          mfa.hidden = false;
          mfaError.say(msg.error ?? '');
          code.focus();
          break;
        case 'pong':
          latency.textContent = `${Math.max(0, Math.round(performance.now()) - msg.t)} ms`;
          break;
        case 'close':
          closeMessage = msg.reason;
          break;
      }
    };
    socket.onclose = (ev) => {
      if (leaving || ws !== socket) return;
      if (ev.code === TERMINAL_CLOSE.exited) return ended(`The session ended: ${closeMessage ?? (ev.reason || 'closed')}.`, 'info');
      if (ev.code === TERMINAL_CLOSE.unauthorized) {
        ended(`Signed out: ${closeMessage ?? ev.reason}`, 'error');
        reconnect.hidden = true;
        return;
      }
      ended(closeMessage !== undefined ? `The terminal closed: ${closeMessage}` : `The connection dropped${ev.reason ? `: ${ev.reason}` : ''}.`, 'error');
    };
  };
  reconnect.addEventListener('click', connect);
  connect();

  return {
    node,
    dispose() {
      leaving = true;
      parent.classList.remove('fill');
      if (pinger !== undefined) clearInterval(pinger);
      observer.disconnect();
      dark.removeEventListener('change', onScheme);
      if (ws?.readyState === WebSocket.OPEN) {
        send({ type: 'close', reason: 'the user left the page' });
        ws.close(1000, 'left');
      }
      term.dispose();
    },
  };
}
