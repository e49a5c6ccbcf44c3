import { createWriteStream } from 'node:fs';
import type { Writable } from 'node:stream';
import { AuthError } from '../errors.js';
import type { RedisClient } from '../store/redis.js';
import { auditEventsKey } from '../store/keys.js';
import { auditSeverity } from './codes.js';
import type { AuditEvent } from './event.js';

/** Where events go. write() rejects when the event was not stored; the AuditLog counts that. */
export interface AuditSink {
  /** A short constant ('redis', 'jsonl'): it becomes a metric label, so never request data. */
  readonly name: string;
  write(event: AuditEvent): Promise<void>;
  close?(): Promise<void>;
}

/** Version of the stream entry layout, so that readers can tell old entries from new. */
export const AUDIT_STREAM_FORMAT = '1';

/**
 * The stream entry for an event: flat string fields, code and name on their own so that
 * `redis-cli XRANGE` is readable, actor and fields as JSON.
 */
export function auditStreamEntry(event: AuditEvent): string[] {
  return [
    'v', AUDIT_STREAM_FORMAT,
    'code', event.code,
    'name', event.name,
    'time', event.time,
    'actor', JSON.stringify(event.actor),
    'fields', JSON.stringify(event.fields),
  ];
}

/** One JSON object per line, key order fixed, with the severity spelled out for log shippers. */
export function auditJsonLine(event: AuditEvent): string {
  return (
    JSON.stringify({
      time: event.time,
      code: event.code,
      name: event.name,
      severity: auditSeverity(event.code),
      actor: event.actor,
      fields: event.fields,
    }) + '\n'
  );
}

export interface RedisStreamSinkOptions {
  /**
   * Approximate cap on stream length (XADD MAXLEN ~; default 1,000,000). The stream is for
   * recent queries from the CLI; the JSON lines in ELK or files are the long-term record.
   */
  readonly maxLen?: number;
}

/** Appends events to `pc:{audit}:events`. */
export function redisStreamSink(client: RedisClient, options: RedisStreamSinkOptions = {}): AuditSink {
  const maxLen = options.maxLen ?? 1_000_000;
  if (!Number.isInteger(maxLen) || maxLen < 1) throw new TypeError(`audit: "maxLen" expected a positive integer, got ${maxLen}`);
  const key = auditEventsKey();
  return {
    name: 'redis',
    async write(event) {
      // A closed client would queue nothing and never answer; say so at once.
      if (client.status === 'end') throw new Error('audit: redis client is closed');
      await client.xadd(key, 'MAXLEN', '~', maxLen, '*', ...auditStreamEntry(event));
    },
  };
}

/**
 * Writes JSON lines to a stream (process.stdout, a file). write() resolves when the stream has
 * taken the line; a stream error rejects the writes that were pending and every later one.
 */
export function jsonLinesSink(out: Writable, options: { readonly name?: string; readonly close?: () => Promise<void> } = {}): AuditSink {
  let failed: Error | undefined;
  // Without a listener a stream error (disk full, EPIPE) would be thrown as an uncaught event
  // and take the whole service down over an audit line.
  out.on('error', (e) => {
    failed = e;
  });
  const sink: AuditSink = {
    name: options.name ?? 'jsonl',
    write(event) {
      if (failed !== undefined) return Promise.reject(failed);
      if (out.destroyed || out.writableEnded) return Promise.reject(new Error('audit: JSON lines stream is closed'));
      const line = auditJsonLine(event);
      return new Promise<void>((resolve, reject) => {
        out.write(line, (e) => (e ? reject(e) : resolve()));
      });
    },
  };
  if (options.close !== undefined) sink.close = options.close;
  return sink;
}

/**
 * A JSON lines file opened for appending (created 0600: events name users and hosts). Resolves
 * once the file is open, so a bad path fails at startup rather than on the first event.
 */
export function openJsonLinesFile(path: string): Promise<AuditSink> {
  const out = createWriteStream(path, { flags: 'a', mode: 0o600 });
  return new Promise((resolve, reject) => {
    out.once('error', (e) => reject(new AuthError('ERR_CONFIG', `audit: cannot open ${path} for appending: ${e.message}`)));
    out.once('open', () =>
      resolve(
        jsonLinesSink(out, {
          name: 'jsonl',
          close: () =>
            new Promise<void>((done) => {
              if (out.destroyed) done();
              else out.end(() => done());
            }),
        }),
      ),
    );
  });
}
