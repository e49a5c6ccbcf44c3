import { RecordingError } from './errors.js';
import type { RecordingEvent, RecordingEventBody, RecordingMeta, RecordingMode, RecordingState, ScreenSnapshot } from './model.js';
import { isSftpOperation } from './sftp.js';

/**
 * An event as stored: `head` is its JSON (everything but the bytes), `data` the raw bytes of
 * output and input. Raw bytes rather than base64 because output is most of a recording and
 * Redis stores binary strings as they are.
 */
export interface EncodedEvent {
  readonly head: Uint8Array;
  readonly data: Uint8Array;
}

const enc = new TextEncoder();
const dec = new TextDecoder();
const EMPTY = new Uint8Array(0);

export function encodeEvent(e: RecordingEvent): EncodedEvent {
  if (e.type === 'output' || e.type === 'input') {
    const { data, ...rest } = e;
    return { head: enc.encode(JSON.stringify(rest)), data };
  }
  return { head: enc.encode(JSON.stringify(e)), data: EMPTY };
}

/**
 * The bytes the digest chain covers: u32 length || head || u32 length || data. Length prefixes
 * keep a byte moved from data to head (or across events) from hashing the same.
 */
export function canonicalEventBytes(ev: EncodedEvent): Uint8Array {
  const out = new Uint8Array(8 + ev.head.length + ev.data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, ev.head.length);
  out.set(ev.head, 4);
  view.setUint32(4 + ev.head.length, ev.data.length);
  out.set(ev.data, 8 + ev.head.length);
  return out;
}

const int = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const str = (v: unknown): v is string => typeof v === 'string';

function corrupt(what: string): never {
  throw new RecordingError('ERR_CORRUPT', `recording: stored event ${what}`);
}

/** Decodes and checks a stored event; throws ERR_CORRUPT on anything it would not have written. */
export function decodeEvent(head: Uint8Array, data: Uint8Array): RecordingEvent {
  let o: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(dec.decode(head));
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) corrupt('is not a JSON object');
    o = parsed as Record<string, unknown>;
  } catch (e) {
    if (e instanceof RecordingError) throw e;
    corrupt('is not JSON');
  }
  if (!int(o.seq) || !int(o.t)) corrupt(`has no seq or t: ${dec.decode(head).slice(0, 100)}`);
  const ch = o.channel;
  const needChannel = (): void => {
    if (!int(ch)) corrupt(`${String(o.type)} without a channel`);
  };
  const body = o as unknown as RecordingEventBody;
  switch (o.type) {
    case 'output':
      needChannel();
      if (o.stream !== 0 && o.stream !== 1) corrupt('output with a bad stream');
      return { ...(o as { seq: number; t: number; channel: number; stream: 0 | 1 }), type: 'output', data };
    case 'input':
      needChannel();
      return { ...(o as { seq: number; t: number; channel: number }), type: 'input', data };
    case 'pty':
    case 'resize':
      needChannel();
      if (!int(o.cols) || !int(o.rows)) corrupt(`${o.type} without a size`);
      break;
    case 'exec':
      needChannel();
      if (!str(o.command)) corrupt('exec without a command');
      break;
    case 'subsystem':
    case 'signal':
      needChannel();
      if (!str(o.name)) corrupt(`${o.type} without a name`);
      break;
    case 'env':
      needChannel();
      if (!str(o.name) || !str(o.value)) corrupt('env without name and value');
      break;
    case 'channel':
    case 'shell':
    case 'exit':
    case 'forward-open':
      needChannel();
      break;
    case 'close':
      needChannel();
      if (!int(o.bytesIn) || !int(o.bytesOut)) corrupt('close without byte counts');
      break;
    case 'sftp':
      needChannel();
      if (!isSftpOperation(o.op)) corrupt('sftp without an operation');
      break;
    case 'lost':
      if (!int(o.events) || !int(o.bytes)) corrupt('lost without counts');
      break;
    case 'end':
      if (!str(o.reason) || !int(o.bytesIn) || !int(o.bytesOut)) corrupt('end without reason and counts');
      break;
    default:
      corrupt(`of unknown type ${JSON.stringify(o.type)}`);
  }
  if (data.length !== 0) corrupt(`${String(o.type)} with data bytes`);
  return body as RecordingEvent;
}

/** RecordingMeta as the fields of a Redis hash (every value a string; absent fields omitted). */
export function metaToFields(meta: Partial<RecordingMeta>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(meta)) {
    if (v === undefined) continue;
    out[k] = typeof v === 'boolean' ? (v ? '1' : '0') : String(v);
  }
  return out;
}

const NUMERIC = ['cols', 'rows', 'startedAt', 'endedAt', 'exitStatus', 'bytesIn', 'bytesOut', 'lastSeq', 'lostEvents'] as const;
const MODES: readonly RecordingMode[] = ['strict', 'best-effort'];
const STATES: readonly RecordingState[] = ['live', 'ended', 'interrupted'];

export function metaFromFields(id: string, f: Record<string, string>): RecordingMeta {
  const need = (k: string): string => {
    const v = f[k];
    if (v === undefined) throw new RecordingError('ERR_CORRUPT', `recording: ${id} metadata has no ${k}`);
    return v;
  };
  const out: Record<string, unknown> = {
    id,
    user: need('user'),
    login: need('login'),
    host: need('host'),
    clientAddress: f.clientAddress ?? '',
    certSerial: f.certSerial ?? '0',
    certKeyId: f.certKeyId ?? '',
    route: f.route ?? '',
    inputRecorded: f.inputRecorded === '1',
    bytesIn: 0,
    bytesOut: 0,
    lastSeq: 0,
    lostEvents: 0,
  };
  const mode = need('mode') as RecordingMode;
  const state = need('state') as RecordingState;
  if (!MODES.includes(mode) || !STATES.includes(state)) {
    throw new RecordingError('ERR_CORRUPT', `recording: ${id} metadata has mode ${mode} and state ${state}`);
  }
  out.mode = mode;
  out.state = state;
  for (const k of NUMERIC) {
    const v = f[k];
    if (v === undefined) continue;
    const n = Number(v);
    if (!Number.isFinite(n)) throw new RecordingError('ERR_CORRUPT', `recording: ${id} metadata ${k}=${v} is not a number`);
    out[k] = n;
  }
  if (out.startedAt === undefined) throw new RecordingError('ERR_CORRUPT', `recording: ${id} metadata has no startedAt`);
  for (const k of ['command', 'term', 'exitSignal', 'endReason', 'digest', 'signature', 'signedBy'] as const) {
    const v = f[k];
    if (v !== undefined) out[k] = v;
  }
  return out as unknown as RecordingMeta;
}

export function encodeSnapshot(s: ScreenSnapshot): string {
  return JSON.stringify(s);
}

export function decodeSnapshot(s: string): ScreenSnapshot | undefined {
  try {
    const o = JSON.parse(s) as Record<string, unknown>;
    if (int(o.channel) && int(o.seq) && int(o.t) && int(o.cols) && int(o.rows) && str(o.screen)) {
      return o as unknown as ScreenSnapshot;
    }
  } catch {
    // A damaged snapshot only costs a slower seek: the events are the record.
  }
  return undefined;
}
