import type { AuditEventName } from './codes.js';
import { type AuditActor, type AuditEvent, type AuditFieldInput, createAuditEvent } from './event.js';
import type { AuditSink } from './sinks.js';

export interface AuditSinkFailure {
  readonly sink: string;
  readonly message: string;
}

/** What happened to one event: every sink that did not store it, with why. */
export interface AuditResult {
  readonly event: AuditEvent;
  /** Empty when every sink stored the event. */
  readonly failures: readonly AuditSinkFailure[];
}

export interface AuditLogOptions {
  readonly sinks: readonly AuditSink[];
  /** The clock events are stamped with (default: new Date()). */
  readonly now?: () => Date;
  /** A sink that has not answered after this long counts as failed (default 5 s). */
  readonly sinkTimeoutMs?: number;
  /** Counts failures; createAuthMetrics() provides it. */
  readonly metrics?: { auditSinkFailed(sink: string): void };
  /** Told about each failure (for the service log); must not throw, and is ignored if it does. */
  readonly onSinkFailure?: (failure: AuditSinkFailure, event: AuditEvent) => void;
}

/**
 * Sends every event to all sinks at once. Auditing never fails the request being audited:
 * emit() always resolves, a sink that throws or hangs is counted and reported in the result,
 * and the other sinks still get the event (so the JSON lines keep flowing while Redis is down).
 * Callers that must not proceed without a stored event (break-glass) check `failures`.
 */
export class AuditLog {
  readonly #sinks: readonly AuditSink[];
  readonly #now: () => Date;
  readonly #timeoutMs: number;
  readonly #opts: AuditLogOptions;
  readonly #failureCounts = new Map<string, number>();

  constructor(options: AuditLogOptions) {
    if (options.sinks.length === 0) throw new TypeError('audit: AuditLog needs at least one sink');
    const names = options.sinks.map((s) => s.name);
    if (new Set(names).size !== names.length) throw new TypeError(`audit: sink names must be unique, got ${names.join(', ')}`);
    this.#sinks = options.sinks;
    this.#now = options.now ?? (() => new Date());
    this.#timeoutMs = options.sinkTimeoutMs ?? 5_000;
    this.#opts = options;
  }

  /** Builds an event stamped with the log's clock (secret-looking fields redacted) and writes it. */
  emit(name: AuditEventName, actor: AuditActor, fields: Readonly<Record<string, AuditFieldInput>> = {}): Promise<AuditResult> {
    return this.write(createAuditEvent(name, actor, fields, this.#now()));
  }

  async write(event: AuditEvent): Promise<AuditResult> {
    const settled = await Promise.all(this.#sinks.map((sink) => this.#writeOne(sink, event)));
    const failures = settled.filter((f): f is AuditSinkFailure => f !== undefined);
    for (const f of failures) {
      this.#failureCounts.set(f.sink, (this.#failureCounts.get(f.sink) ?? 0) + 1);
      try {
        this.#opts.metrics?.auditSinkFailed(f.sink);
        this.#opts.onSinkFailure?.(f, event);
      } catch {
        // Reporting a failure must not become one.
      }
    }
    return { event, failures };
  }

  /** Failures per sink since this log was made (the metric has the same numbers). */
  failureCounts(): ReadonlyMap<string, number> {
    return new Map(this.#failureCounts);
  }

  /** Closes the sinks that own their output (a file); stdout and the Redis client stay open. */
  async close(): Promise<void> {
    await Promise.all(this.#sinks.map((s) => s.close?.().catch(() => undefined)));
  }

  async #writeOne(sink: AuditSink, event: AuditEvent): Promise<AuditSinkFailure | undefined> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        // Wrapped so that a sink throwing synchronously is caught like one that rejects.
        Promise.resolve().then(() => sink.write(event)),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${this.#timeoutMs} ms`)), this.#timeoutMs);
        }),
      ]);
      return undefined;
    } catch (e) {
      return { sink: sink.name, message: e instanceof Error ? e.message : String(e) };
    } finally {
      clearTimeout(timer);
    }
  }
}
