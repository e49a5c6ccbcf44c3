import { TextDecoder } from 'node:util';
import type { RecordingEvent, RecordingMeta } from './model.js';
import { readRecordingEvents } from './replay.js';
import { TerminalScreen } from './screen.js';
import type { SftpOperation } from './sftp.js';
import { requireMeta, type RedisClient } from './store.js';

/**
 * Exports for people and other tools: asciicast v2 (what asciinema plays) and a plain text
 * transcript. Both show one terminal channel (the session's shell or command) and mark what
 * happened elsewhere (exec requests, SFTP operations, forwards, exit), so nothing the recording
 * knows is dropped the way peers' exports drop exec commands and non-shell channels.
 */
export interface ExportOptions {
  /** The channel whose output is the terminal (default: the first shell, exec or pty channel). */
  readonly channel?: number;
  /** Include "i" events (default: when input was recorded). */
  readonly includeInput?: boolean;
  /** asciicast idle_time_limit, seconds (players cut longer pauses). */
  readonly idleTimeLimit?: number;
}

/** Chooses the terminal channel as events stream by: the first shell, exec, pty or non-SFTP subsystem. */
class ChannelChoice {
  constructor(private chosen: number | undefined) {}

  is(e: RecordingEvent): boolean {
    if (!('channel' in e)) return false;
    if (this.chosen === undefined) {
      const claims = e.type === 'shell' || e.type === 'exec' || e.type === 'pty' || e.type === 'output' || (e.type === 'subsystem' && e.name !== 'sftp');
      if (claims) this.chosen = e.channel;
    }
    return e.channel === this.chosen;
  }
}

export function describeSftp(op: SftpOperation): string {
  switch (op.op) {
    case 'read':
    case 'write':
      return `sftp ${op.op} ${op.path} ${op.bytes} bytes${op.complete ? '' : ' (not closed)'}`;
    case 'open':
      return `sftp open ${op.path} [${op.flags.join(',')}]${op.ok ? '' : ` failed (status ${op.status})`}`;
    case 'rename':
    case 'symlink':
      return `sftp ${op.op} ${op.path} -> ${op.target}${op.ok ? '' : ` failed (status ${op.status})`}`;
    case 'setstat':
      return `sftp setstat ${op.path}${op.mode === undefined ? '' : ` mode ${op.mode.toString(8)}`}${op.ok ? '' : ` failed (status ${op.status})`}`;
    default:
      return `sftp ${op.op} ${op.path}${op.ok ? '' : ` failed (status ${op.status})`}`;
  }
}

/** A one-line description of an event that is not terminal data, or undefined for data. */
export function describeEvent(e: RecordingEvent): string | undefined {
  switch (e.type) {
    case 'exec':
      return `exec: ${e.command}`;
    case 'subsystem':
      return `subsystem: ${e.name}`;
    case 'shell':
      return 'shell';
    case 'sftp':
      return describeSftp(e.op);
    case 'forward-open':
      return `${e.direction} forward to ${e.host}:${e.port} from ${e.origin}`;
    case 'signal':
      return `signal ${e.name}`;
    case 'exit':
      return e.signal !== undefined ? `exit: signal ${e.signal}` : `exit status ${e.status ?? '?'}`;
    case 'lost':
      return `lost ${e.events} events (${e.bytes} bytes): ${e.reason}`;
    case 'end':
      return `${e.interrupted ? 'interrupted' : 'end'}: ${e.reason}`;
    default:
      return undefined;
  }
}

function title(meta: RecordingMeta): string {
  return `${meta.user} as ${meta.login}@${meta.host}`;
}

const seconds = (t: number): number => Math.round(t) / 1000;

/** asciicast v2, one line at a time (a long recording never sits in memory whole). */
export async function* asciicastLines(redis: RedisClient, id: string, opts: ExportOptions = {}): AsyncGenerator<string> {
  const meta = await requireMeta(redis, id);
  const header: Record<string, unknown> = {
    version: 2,
    width: meta.cols ?? 80,
    height: meta.rows ?? 24,
    timestamp: Math.floor(meta.startedAt / 1000),
    title: title(meta),
  };
  if (opts.idleTimeLimit !== undefined) header.idle_time_limit = opts.idleTimeLimit;
  if (meta.command !== undefined) header.command = meta.command;
  if (meta.term !== undefined) header.env = { TERM: meta.term };
  yield JSON.stringify(header);
  const includeInput = opts.includeInput ?? meta.inputRecorded;
  const choice = new ChannelChoice(opts.channel);
  // asciicast strings are text: decode each stream separately so a character split across
  // chunks is not turned into two replacement characters.
  const decoders = new Map<string, TextDecoder>();
  const decode = (k: string, data: Uint8Array): string => {
    let d = decoders.get(k);
    if (!d) decoders.set(k, (d = new TextDecoder('utf-8')));
    return d.decode(data, { stream: true });
  };
  for await (const item of readRecordingEvents(redis, id)) {
    if (item.kind === 'gap') continue;
    if (item.kind !== 'event') continue;
    const e = item.event;
    const at = seconds(e.t);
    if (e.type === 'output' && choice.is(e)) {
      const text = decode(`o${e.stream}`, e.data);
      if (text !== '') yield JSON.stringify([at, 'o', text]);
    } else if (e.type === 'input' && includeInput && choice.is(e)) {
      const text = decode('i', e.data);
      if (text !== '') yield JSON.stringify([at, 'i', text]);
    } else if (e.type === 'resize' && choice.is(e)) {
      yield JSON.stringify([at, 'r', `${e.cols}x${e.rows}`]);
    } else {
      if (e.type === 'pty' || e.type === 'shell' || e.type === 'exec' || e.type === 'subsystem') choice.is(e);
      const label = describeEvent(e);
      if (label !== undefined) yield JSON.stringify([at, 'm', label]);
    }
  }
}

export async function exportAsciicast(redis: RedisClient, id: string, opts: ExportOptions = {}): Promise<string> {
  const lines: string[] = [];
  for await (const line of asciicastLines(redis, id, opts)) lines.push(line);
  return lines.join('\n') + '\n';
}

/**
 * A plain text transcript: the terminal channel's output rendered by a terminal emulator
 * (so backspaces, carriage returns and colours come out as the user saw them), with the other
 * events as `#` lines around it. Full-screen programs draw on the alternate screen, which
 * scrolls nowhere; their last screen is not in the text.
 */
export async function exportTranscript(redis: RedisClient, id: string, opts: ExportOptions = {}): Promise<string> {
  const meta = await requireMeta(redis, id);
  const head = [
    `# session ${meta.id}: ${title(meta)} from ${meta.clientAddress} (certificate ${meta.certKeyId}, serial ${meta.certSerial})`,
    `# started ${new Date(meta.startedAt).toISOString()}${meta.endedAt === undefined ? '' : `, ended ${new Date(meta.endedAt).toISOString()}`} (${meta.state})`,
  ];
  if (meta.command !== undefined) head.push(`# command: ${meta.command}`);
  const notes: string[] = [];
  const choice = new ChannelChoice(opts.channel);
  let screen: TerminalScreen | undefined;
  for await (const item of readRecordingEvents(redis, id)) {
    if (item.kind === 'gap') {
      notes.push(`# events ${item.from}-${item.to} are missing`);
      continue;
    }
    if (item.kind !== 'event') continue;
    const e = item.event;
    if (e.type === 'pty' && choice.is(e)) {
      screen ??= new TerminalScreen(e.cols, e.rows, { scrollback: 1_000_000 });
    } else if (e.type === 'resize' && choice.is(e)) {
      screen?.resize(e.cols, e.rows);
    } else if (e.type === 'output' && choice.is(e)) {
      // No pty: nothing turned LF into CRLF, and lines are as long as the program made them.
      screen ??= new TerminalScreen(1000, 24, { scrollback: 1_000_000, convertEol: true });
      screen.write(e.data);
    } else {
      if (e.type === 'shell' || e.type === 'exec' || e.type === 'subsystem') choice.is(e);
      const label = describeEvent(e);
      if (label !== undefined && e.type !== 'exec') notes.push(`# ${label}`);
    }
  }
  const body = screen ? await screen.allLines() : [];
  screen?.dispose();
  return [...head, ...body, ...notes].join('\n') + '\n';
}
