import { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import {
  asciicastLines,
  decodeEvent,
  describeEvent,
  findRecordingsByCommand,
  listRecordings,
  readRecordingEvents,
  readRecordingMeta,
  recordingKeys,
  type RecordingEvent,
  type RecordingMeta,
  type RecordingQuery,
  type ReplayItem,
} from '@portcullis/recording';
import { z } from 'zod';
import type { EventsPage, RecordingSummary, WireEvent, WireItem } from '../shared/protocol.js';
import { type GatewayContext, parseBody, requireAdmin } from './context.js';
import { WebError } from './errors.js';

/*
 * Recordings for administrators: lists and command search (the recording package's indexes),
 * events from any offset for the player, asciicast downloads and the list of live sessions.
 * Read straight from Redis, like `pcsh play`, so any gateway serves any recording.
 */

export function recordingSummary(m: RecordingMeta, matches?: readonly string[]): RecordingSummary {
  return {
    id: m.id,
    user: m.user,
    login: m.login,
    host: m.host,
    clientAddress: m.clientAddress,
    route: m.route,
    state: m.state,
    ...(m.command === undefined ? {} : { command: m.command }),
    ...(m.cols === undefined ? {} : { cols: m.cols }),
    ...(m.rows === undefined ? {} : { rows: m.rows }),
    startedAt: m.startedAt,
    ...(m.endedAt === undefined ? {} : { endedAt: m.endedAt }),
    ...(m.exitStatus === undefined ? {} : { exitStatus: m.exitStatus }),
    ...(m.exitSignal === undefined ? {} : { exitSignal: m.exitSignal }),
    bytesIn: m.bytesIn,
    bytesOut: m.bytesOut,
    lostEvents: m.lostEvents,
    signed: m.signature !== undefined,
    ...(matches === undefined ? {} : { matches }),
  };
}

/** Unix ms, or an ISO 8601 time (what a datetime input gives). */
const time = z.string().transform((s, c) => {
  const n = /^\d{1,15}$/.test(s) ? Number(s) : Date.parse(s);
  if (!Number.isFinite(n)) {
    c.addIssue({ code: 'custom', message: 'expected Unix milliseconds or an ISO 8601 time' });
    return z.NEVER;
  }
  return n;
});
const name = z.string().min(1).max(256);
const int = (min: number, max: number) => z.string().regex(/^\d{1,10}$/).transform(Number).pipe(z.number().int().min(min).max(max));
const listQuery = z.strictObject({
  user: name.optional(),
  host: name.optional(),
  login: name.optional(),
  state: z.enum(['live', 'ended', 'interrupted']).optional(),
  from: time.optional(),
  to: time.optional(),
  command: z.string().min(1).max(256).regex(/^[^\n]*$/, 'one line').optional(),
  limit: int(1, 500).optional(),
});
const idParams = z.strictObject({ id: z.string().min(1).max(128) });
const eventsQuery = z.strictObject({
  from_ms: int(0, 1e10).optional(),
  after: z.string().regex(/^\d{1,15}-\d{1,15}$/, 'expected <ms>-<seq> from a previous page').optional(),
  channel: int(0, 2 ** 32 - 1).optional(),
  limit: int(1, 10_000).optional(),
});

const PAGE_EVENTS = 2000;
/** Output bytes per page, so one request never carries a whole busy session. */
const PAGE_BYTES = 2 * 1024 * 1024;

function wireEvent(e: RecordingEvent): WireEvent {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(e)) {
    out[k] = v instanceof Uint8Array ? Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') : typeof v === 'bigint' ? v.toString() : v;
  }
  const note = describeEvent(e);
  if (note !== undefined) out['note'] = note;
  return out as WireEvent;
}

export function wireItem(item: ReplayItem): WireItem {
  if (item.kind === 'screen') return { kind: 'screen', ...item.snapshot };
  if (item.kind === 'gap') return item;
  return { kind: 'event', event: wireEvent(item.event) };
}

/** Stored events after stream id `after`, decoded (the continuation of a page). */
async function* eventsAfter(redis: GatewayContext['redis'], id: string, after: string): AsyncGenerator<ReplayItem> {
  const key = recordingKeys(id).events;
  let from = `(${after}`;
  for (;;) {
    const page = await redis.xrangeBuffer(key, from, '+', 'COUNT', 512);
    for (const [, fields] of page) {
      let head: Buffer | undefined;
      let data: Buffer | undefined;
      for (let i = 0; i + 1 < fields.length; i += 2) {
        const f = fields[i]!.toString('latin1');
        if (f === 'e') head = fields[i + 1];
        else if (f === 'd') data = fields[i + 1];
      }
      if (head === undefined) throw new WebError('ERR_INTERNAL', `recording ${id}: a stream entry holds no event`);
      yield { kind: 'event', event: decodeEvent(new Uint8Array(head), new Uint8Array(data ?? Buffer.alloc(0))) };
    }
    const last = page[page.length - 1];
    if (page.length < 512 || last === undefined) return;
    from = `(${last[0].toString('latin1')}`;
  }
}

async function requireRecording(ctx: GatewayContext, id: string): Promise<RecordingMeta> {
  const meta = await readRecordingMeta(ctx.redis, id);
  if (meta === undefined) throw new WebError('ERR_NOT_FOUND', `no recording ${id} (it never existed or has expired)`);
  return meta;
}

export function registerRecordingRoutes(app: FastifyInstance, ctx: GatewayContext): void {
  app.get('/web/api/recordings', async (request) => {
    await requireAdmin(ctx, request);
    const q = parseBody(listQuery, request.query);
    const query: RecordingQuery = {
      ...(q.user === undefined ? {} : { user: q.user }),
      ...(q.host === undefined ? {} : { host: q.host }),
      ...(q.login === undefined ? {} : { login: q.login }),
      ...(q.state === undefined ? {} : { state: q.state }),
      ...(q.from === undefined ? {} : { from: q.from }),
      ...(q.to === undefined ? {} : { to: q.to }),
      limit: q.limit ?? 100,
    };
    if (q.command !== undefined) {
      const found = await findRecordingsByCommand(ctx.redis, q.command, query);
      return { recordings: found.map((m) => recordingSummary(m.meta, m.commands)) };
    }
    return { recordings: (await listRecordings(ctx.redis, query)).map((m) => recordingSummary(m)) };
  });

  app.get('/web/api/live', async (request) => {
    await requireAdmin(ctx, request);
    return { recordings: (await listRecordings(ctx.redis, { state: 'live', limit: 200 })).map((m) => recordingSummary(m)) };
  });

  app.get('/web/api/recordings/:id', async (request) => {
    await requireAdmin(ctx, request);
    const { id } = parseBody(idParams, request.params);
    return recordingSummary(await requireRecording(ctx, id));
  });

  app.get('/web/api/recordings/:id/events', async (request): Promise<EventsPage> => {
    await requireAdmin(ctx, request);
    const { id } = parseBody(idParams, request.params);
    const q = parseBody(eventsQuery, request.query);
    await requireRecording(ctx, id);
    const source =
      q.after !== undefined
        ? eventsAfter(ctx.redis, id, q.after)
        : readRecordingEvents(ctx.redis, id, { ...(q.from_ms === undefined ? {} : { fromMs: q.from_ms }), ...(q.channel === undefined ? {} : { channel: q.channel }) });
    const limit = q.limit ?? PAGE_EVENTS;
    const items: WireItem[] = [];
    let bytes = 0;
    let last: RecordingEvent | undefined;
    let full = false;
    for await (const item of source) {
      items.push(wireItem(item));
      if (item.kind === 'event') {
        last = item.event;
        if ('data' in item.event) bytes += item.event.data.length;
      }
      if (items.length >= limit || bytes >= PAGE_BYTES) {
        full = true;
        break;
      }
    }
    return { items, next: full && last !== undefined ? `${last.t}-${last.seq}` : null };
  });

  app.get('/web/api/recordings/:id/asciicast', async (request, reply) => {
    await requireAdmin(ctx, request);
    const { id } = parseBody(idParams, request.params);
    await requireRecording(ctx, id);
    const lines = asciicastLines(ctx.redis, id);
    // The header line first: a failure before it is still an ordinary error response.
    const first = await lines.next();
    const body = Readable.from(
      (async function* () {
        if (!first.done) yield `${first.value}\n`;
        for await (const line of lines) yield `${line}\n`;
      })(),
    );
    return reply
      .header('content-type', 'application/x-asciicast; charset=utf-8')
      .header('content-disposition', `attachment; filename="${id.replace(/[^A-Za-z0-9._-]/g, '_')}.cast"`)
      .send(body);
  });
}
