import { LIVE_CLOSE, LIVE_PROTOCOL, parseLiveMessage, type RecordingSummary } from '../../shared/protocol.js';
import { formatDuration, formatTime, h, statusLine, type Page } from './dom.js';
import { createViewer } from './terminal.js';

/*
 * Watching a session as it happens: the gateway sends the current screen, then the output as it
 * is recorded. A dropped connection says so and offers to reconnect (which starts again from the
 * then-current screen).
 */

export async function liveViewPage(id: string, parent: HTMLElement): Promise<Page> {
  document.title = 'Live session · Portcullis';
  const title = h('h1', null, 'Live session');
  const sub = h('p', { class: 'muted' });
  const badge = h('span', { class: 'badge live', id: 'live-badge' }, 'connecting');
  const screenBox = h('div', { class: 'screen', id: 'live-screen' });
  const notes = h('ol', { class: 'notes', id: 'notes', 'aria-label': 'Events' });
  const status = statusLine();
  const reconnect = h('button', { type: 'button', hidden: true }, 'Reconnect');
  const node = h('section', { class: 'player' }, title, sub, h('div', { class: 'controls' }, badge, reconnect), screenBox, status, h('details', { open: true }, h('summary', null, 'Events'), notes));
  parent.replaceChildren(node);
  const viewer = createViewer(screenBox, 80, 24);
  const term = viewer.term;
  let ws: WebSocket | undefined;
  let closedByUs = false;

  const connect = (): void => {
    reconnect.hidden = true;
    badge.textContent = 'connecting';
    term.reset();
    const socket = new WebSocket(`wss://${location.host}/web/api/recordings/${encodeURIComponent(id)}/live`, LIVE_PROTOCOL);
    ws = socket;
    socket.binaryType = 'arraybuffer';
    socket.onmessage = (ev: MessageEvent<ArrayBuffer | string>) => {
      if (typeof ev.data !== 'string') {
        term.write(new Uint8Array(ev.data));
        return;
      }
      const msg = parseLiveMessage(ev.data);
      if (msg === undefined) {
        // Validated on this end too: something else speaking on this socket is not shown.
        socket.close(1002, 'unexpected message');
        return;
      }
      switch (msg.type) {
        case 'hello': {
          const r: RecordingSummary = msg.recording;
          title.textContent = `${r.user} as ${r.login}@${r.host}`;
          sub.textContent = `started ${formatTime(r.startedAt)} (${formatDuration(Date.now() - r.startedAt)} ago) · from ${r.clientAddress}${r.command === undefined ? '' : ` · ${r.command}`}`;
          badge.textContent = 'LIVE';
          if (r.cols !== undefined && r.rows !== undefined) term.resize(r.cols, r.rows);
          break;
        }
        case 'screen':
          term.reset();
          term.resize(msg.cols, msg.rows);
          term.write(msg.screen);
          break;
        case 'resize':
          term.resize(msg.cols, msg.rows);
          break;
        case 'note':
          notes.append(h('li', null, h('span', { class: 'mono muted' }, formatDuration(msg.t)), ' ', msg.text));
          break;
        case 'gap':
          notes.append(h('li', { class: 'warn' }, `events ${msg.from}–${msg.to} are missing`));
          break;
        case 'end':
          badge.textContent = 'ended';
          status.say(`The session ended: ${msg.reason}`, 'info');
          break;
      }
    };
    socket.onclose = (ev) => {
      if (closedByUs) return;
      if (ev.code === LIVE_CLOSE.ended) {
        badge.textContent = 'ended';
        return;
      }
      badge.textContent = 'disconnected';
      status.say(ev.code === LIVE_CLOSE.unauthorized ? `Signed out: ${ev.reason}` : `The connection dropped${ev.reason ? `: ${ev.reason}` : ''}.`, 'error');
      reconnect.hidden = ev.code === LIVE_CLOSE.unauthorized || ev.code === LIVE_CLOSE.notFound;
    };
  };
  reconnect.addEventListener('click', connect);
  connect();
  return {
    node,
    dispose() {
      closedByUs = true;
      ws?.close(1000, 'viewer left');
      viewer.dispose();
    },
  };
}
