import { RecordingError } from './errors.js';

/**
 * Redis key names. Every key of one recording carries the hash tag `{rec:ID}`, so a Redis
 * Cluster keeps the recording in one slot and a pipeline of its writes stays on one node. The
 * indexes share the tag `{recidx}`: searches read several of them together.
 */
const ID = /^[A-Za-z0-9._:@+=-]{1,128}$/;

export function checkRecordingId(id: string): string {
  if (!ID.test(id)) {
    throw new RecordingError('ERR_BAD_ID', `recording: session id ${JSON.stringify(id.slice(0, 200))} cannot name a recording (expected 1-128 of A-Z a-z 0-9 . _ : @ + = -)`);
  }
  return id;
}

export const recordingKeys = (id: string) => {
  checkRecordingId(id);
  return {
    events: `pc:{rec:${id}}:events`,
    meta: `pc:{rec:${id}}:meta`,
    snapshots: `pc:{rec:${id}}:snapshots`,
  } as const;
};

export type RecordingKeys = ReturnType<typeof recordingKeys>;

const IDX = 'pc:{recidx}';

export const indexKeys = {
  byTime: `${IDX}:by-time`,
  byUser: (user: string) => `${IDX}:by-user:${user}`,
  byHost: (host: string) => `${IDX}:by-host:${host}`,
  byLogin: (login: string) => `${IDX}:by-login:${login}`,
  /** Members `<lower-cased command line>\n<id>`, scored by the session's start. */
  commands: `${IDX}:commands`,
  /** Every per-user/host/login index key ever written, so retention can prune them all. */
  registry: `${IDX}:keys`,
} as const;

/**
 * Stream entry id of an event: `<ms offset>-<seq>`. Explicit ids make writes idempotent (a
 * retried XADD of an event already stored fails instead of duplicating it), let readers range
 * by time, and make the id itself say which event it is.
 */
export function streamId(t: number, seq: number): string {
  return `${t}-${seq}`;
}

export function parseStreamId(id: string): { t: number; seq: number } | undefined {
  const m = /^(\d+)-(\d+)$/.exec(id);
  if (!m) return undefined;
  return { t: Number(m[1]), seq: Number(m[2]) };
}
