/**
 * How the recorder tells operators that recording is in trouble. Counters go to whatever metrics
 * system the service uses (the proxy maps them onto prom-client); troubles go to a callback so
 * the service can log, alert and audit them. Nothing here decides what to do: the mode does.
 */
export type RecordingMetricName =
  /** Events written to Redis (directly or drained from the spool). */
  | 'recording_events_stored_total'
  /** Events written to the spool because Redis would not take them. */
  | 'recording_events_spooled_total'
  /** Events that could be neither stored nor spooled (best effort only; never silent). */
  | 'recording_events_lost_total'
  /** Output and input bytes recorded. */
  | 'recording_bytes_total'
  /** Failed writes, labelled {reason}: redis-unreachable, redis-oom, redis-error, redis-lost, disk-full, spool-error. */
  | 'recording_store_failures_total'
  /** Spool files uploaded by uploadSpool, labelled {state}. */
  | 'recording_spool_uploads_total';

export interface RecordingMetrics {
  count(name: RecordingMetricName, n?: number, labels?: Readonly<Record<string, string>>): void;
}

export type RecordingTroubleKind =
  | 'redis-unreachable'
  | 'redis-oom'
  | 'redis-error'
  | 'disk-full'
  | 'spool-error'
  | 'events-lost'
  /** Redis took everything again; the spool is drained. */
  | 'recovered';

export interface RecordingTrouble {
  readonly kind: RecordingTroubleKind;
  readonly sessionId: string;
  readonly mode: 'strict' | 'best-effort';
  /**
   * What the recorder did about it: `session-ended` (strict), `spooling`, `holding-in-memory`,
   * `dropping`, `drained`, `continuing` (Redis lost events it had confirmed; the rest follows the gap).
   */
  readonly action: 'session-ended' | 'spooling' | 'holding-in-memory' | 'dropping' | 'drained' | 'continuing';
  readonly message: string;
}

/** In-memory counters, for tests and for services that scrape them into their own registry. */
export class RecordingCounters implements RecordingMetrics {
  private readonly values = new Map<string, number>();

  count(name: RecordingMetricName, n = 1, labels?: Readonly<Record<string, string>>): void {
    const key = this.key(name, labels);
    this.values.set(key, (this.values.get(key) ?? 0) + n);
  }

  get(name: RecordingMetricName, labels?: Readonly<Record<string, string>>): number {
    return this.values.get(this.key(name, labels)) ?? 0;
  }

  /** Every counter as `name{label="value"}` → value. */
  all(): ReadonlyMap<string, number> {
    return this.values;
  }

  private key(name: string, labels?: Readonly<Record<string, string>>): string {
    if (!labels) return name;
    const parts = Object.keys(labels)
      .sort()
      .map((k) => `${k}="${labels[k]}"`);
    return `${name}{${parts.join(',')}}`;
  }
}

export const NO_METRICS: RecordingMetrics = { count() {} };
