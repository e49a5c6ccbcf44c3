import type { RedisClient } from '../store/redis.js';
import { auditEventsKey } from '../store/keys.js';
import { auditEventName, type AuditCode } from './codes.js';
import type { AuditActor, AuditEvent, AuditFieldValue } from './event.js';

/** An event read back from the stream, with its stream id (`<ms>-<seq>`, Redis' clock). */
export interface StoredAuditEvent extends AuditEvent {
  readonly id: string;
}

export interface AuditQuery {
  /**
   * Time range, inclusive. It selects by stream id, i.e. when Redis stored the event, which is
   * within clock skew of the event's own `time`.
   */
  readonly from?: Date;
  readonly to?: Date;
  /** Events where this user acted, or the `user` field names them (e.g. an admin locking them). */
  readonly user?: string;
  /** Event codes ('PC2000I') or names ('cert.issued'); any of them matches. */
  readonly codes?: readonly string[];
  /** At most this many events (default 1,000). */
  readonly limit?: number;
  /** Newest first (as a CLI showing recent events wants); default oldest first. */
  readonly newestFirst?: boolean;
}

/** Whether a stored event passes a query's user and code filters (the time range is Redis'). */
export function matchesAuditQuery(event: AuditEvent, query: Pick<AuditQuery, 'user' | 'codes'>): boolean {
  if (query.codes !== undefined && query.codes.length > 0) {
    if (!query.codes.includes(event.code) && !query.codes.includes(event.name)) return false;
  }
  if (query.user !== undefined) {
    if (event.actor.name !== query.user && event.fields['user'] !== query.user) return false;
  }
  return true;
}

/**
 * Parses one stream entry (the flat field list XRANGE returns). Entries this version cannot
 * read (another format version, an unknown code, broken JSON) give undefined, never a throw:
 * one bad entry must not hide the rest of an audit trail.
 */
export function parseAuditStreamEntry(id: string, flat: readonly string[]): StoredAuditEvent | undefined {
  const f = new Map<string, string>();
  for (let i = 0; i + 1 < flat.length; i += 2) f.set(flat[i] ?? '', flat[i + 1] ?? '');
  if (f.get('v') !== '1') return undefined;
  const code = f.get('code') ?? '';
  const name = auditEventName(code);
  const time = f.get('time');
  if (name === undefined || f.get('name') !== name || time === undefined) return undefined;
  try {
    const actor = JSON.parse(f.get('actor') ?? '') as AuditActor;
    const fields = JSON.parse(f.get('fields') ?? '') as Record<string, AuditFieldValue>;
    if (typeof actor !== 'object' || actor === null || typeof actor.name !== 'string') return undefined;
    if (typeof fields !== 'object' || fields === null || Array.isArray(fields)) return undefined;
    return { id, code: code as AuditCode, name, time, actor, fields };
  } catch {
    return undefined;
  }
}

const PAGE = 500;

/** Reads events from `pc:{audit}:events` by time range, filtered by user and code. */
export async function queryAuditEvents(client: RedisClient, query: AuditQuery = {}): Promise<StoredAuditEvent[]> {
  const limit = query.limit ?? 1_000;
  if (!Number.isInteger(limit) || limit < 1) throw new TypeError(`audit: "limit" expected a positive integer, got ${limit}`);
  const key = auditEventsKey();
  // Millisecond-only ids: Redis reads "<ms>" as "<ms>-0" for a start and "<ms>-max" for an end.
  let low = query.from === undefined ? '-' : String(query.from.getTime());
  let high = query.to === undefined ? '+' : String(query.to.getTime());
  const out: StoredAuditEvent[] = [];
  for (;;) {
    const page = query.newestFirst === true
      ? await client.xrevrange(key, high, low, 'COUNT', PAGE)
      : await client.xrange(key, low, high, 'COUNT', PAGE);
    for (const [id, flat] of page) {
      const event = parseAuditStreamEntry(id, flat);
      if (event !== undefined && matchesAuditQuery(event, query)) {
        out.push(event);
        if (out.length >= limit) return out;
      }
    }
    const last = page[page.length - 1];
    if (page.length < PAGE || last === undefined) return out;
    // Exclusive bounds ("(id", Redis 6.2+) continue after the last entry seen.
    if (query.newestFirst === true) high = `(${last[0]}`;
    else low = `(${last[0]}`;
  }
}
