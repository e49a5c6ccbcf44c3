import { readFileSync, writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { parse as parseYaml } from 'yaml';
import { parsePublicKeyText } from '@portcullis/cert-core';
import { nodeCrypto } from '@portcullis/cert-core/node';
import {
  exportAsciicast,
  exportTranscript,
  findRecordingsByCommand,
  listRecordings,
  readRecordingMeta,
  recordingKeys,
  verifyRecording,
  type RecordingMeta,
  type RecordingQuery,
  type RecordingState,
} from '@portcullis/recording';
import { connectRedis, isStoreError, parseRedisConfig, type RedisClient, type RedisConfig } from '@portcullis/store';
import { CliError } from '../common/errors.js';
import { withExamples } from '../common/help.js';
import { formatSpan, printJson, printTable, writeOut } from '../common/output.js';
import { loggedIn } from '../common/session.js';

/*
 * Recordings from the command line. They are read straight from Redis, not through the web
 * gateway: the gateway's recordings API is bound to browser sessions (cookie + CSRF), which a
 * CLI cannot hold. Reading Redis is an administrator's power already (whoever reaches Redis
 * reaches every recording), so these commands are for admins on the auth/bastion machine:
 * --redis, else PORTCULLIS_REDIS_URL, else the local default. Either is a redis://, rediss:// or
 * unix:// URL, or the path of a service config file (proxy.yaml, web's or auth's) whose `redis`
 * section is used: that is how Sentinel and Cluster are reached, with the service's own settings.
 */

export interface RedisOptions {
  readonly redis?: string;
}

export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

export function redisUrlOf(o: RedisOptions, env: NodeJS.ProcessEnv = process.env): string {
  return o.redis ?? env['PORTCULLIS_REDIS_URL'] ?? DEFAULT_REDIS_URL;
}

/** The --redis value as a redis section: a URL as is, a file by its `redis` section. */
export function redisConfigOf(o: RedisOptions, env: NodeJS.ProcessEnv = process.env): RedisConfig {
  const where = redisUrlOf(o, env);
  if (/^(redis|rediss|unix):\/\//.test(where)) return { url: where };
  let doc: unknown;
  try {
    doc = parseYaml(readFileSync(where, 'utf8'));
  } catch (e) {
    throw new CliError('ERR_USAGE', `--redis: expected a redis://, rediss:// or unix:// URL or a config file with a redis section; cannot read ${where}: ${(e as Error).message}`);
  }
  const section = typeof doc === 'object' && doc !== null ? (doc as Record<string, unknown>)['redis'] : undefined;
  if (section === undefined) throw new CliError('ERR_USAGE', `--redis: ${where} has no redis section`);
  let config: RedisConfig;
  try {
    config = parseRedisConfig(section);
  } catch (e) {
    throw new CliError('ERR_USAGE', `--redis: ${where}: ${(e as Error).message}`);
  }
  if ('embedded' in config) {
    throw new CliError('ERR_USAGE', `--redis: ${where} runs an embedded Redis; pass its socket instead: --redis unix://${config.embedded.stateDir}/redis.sock`);
  }
  return config;
}

/** A Redis connection (URL, Sentinel or Cluster) that fails fast with one line instead of retrying forever. */
export async function openRecordings(o: RedisOptions): Promise<{ client: RedisClient; close(): Promise<void> }> {
  const config = redisConfigOf(o);
  try {
    return await connectRedis(config, { readyTimeoutMs: 3_000, maxRetriesPerRequest: 1 });
  } catch (e) {
    if (!isStoreError(e)) throw e;
    // The store's message names the target without its password.
    throw new CliError('ERR_UNREACHABLE', `cannot reach the recordings' Redis: ${e.message} (recordings are read on the auth machine; --redis or PORTCULLIS_REDIS_URL)`);
  }
}

export async function withRecordings<T>(o: RedisOptions, f: (redis: RedisClient) => Promise<T>): Promise<T> {
  const conn = await openRecordings(o);
  try {
    return await f(conn.client);
  } finally {
    await conn.close();
  }
}

export async function requireRecordingMeta(redis: RedisClient, id: string): Promise<RecordingMeta> {
  let meta: RecordingMeta | undefined;
  try {
    meta = await readRecordingMeta(redis, id);
  } catch (e) {
    throw new CliError('ERR_USAGE', `recording id: ${(e as Error).message}`);
  }
  if (meta === undefined) throw new CliError('ERR_NOT_FOUND', `no recording ${id} (it never existed or has expired); pcsh recordings ls lists them`);
  return meta;
}

function parseTime(text: string, what: string): number {
  const rel = /^(\d+)([smhd])$/.exec(text);
  if (rel) return Date.now() - Number(rel[1]) * { s: 1e3, m: 6e4, h: 36e5, d: 864e5 }[rel[2] as 's' | 'm' | 'h' | 'd'];
  const t = Date.parse(text);
  if (Number.isNaN(t)) throw new CliError('ERR_USAGE', `${what}: expected a time (2026-05-01T10:00Z) or an age (30m, 2d), got ${JSON.stringify(text)}`);
  return t;
}

interface ListOptions extends RedisOptions {
  readonly user?: string;
  readonly host?: string;
  readonly login?: string;
  readonly state?: string;
  readonly since?: string;
  readonly until?: string;
  readonly command?: string;
  readonly limit?: string;
  readonly json?: boolean;
}

function summary(m: RecordingMeta, commands?: readonly string[]): Record<string, unknown> {
  return {
    id: m.id,
    user: m.user,
    login: m.login,
    host: m.host,
    state: m.state,
    started_at: new Date(m.startedAt).toISOString(),
    ...(m.endedAt === undefined ? {} : { ended_at: new Date(m.endedAt).toISOString() }),
    ...(m.command === undefined ? {} : { command: m.command }),
    ...(m.exitStatus === undefined ? {} : { exit_status: m.exitStatus }),
    ...(commands === undefined ? {} : { matched_commands: commands }),
  };
}

export async function listRecordingsCommand(o: ListOptions): Promise<void> {
  const states = ['live', 'ended', 'interrupted'];
  if (o.state !== undefined && !states.includes(o.state)) throw new CliError('ERR_USAGE', `--state: expected ${states.join(', ')}, got ${JSON.stringify(o.state)}`);
  const limit = o.limit === undefined ? 50 : Number(o.limit);
  if (!Number.isInteger(limit) || limit < 1) throw new CliError('ERR_USAGE', `--limit: expected a positive integer, got ${JSON.stringify(o.limit)}`);
  const q: RecordingQuery = {
    ...(o.user === undefined ? {} : { user: o.user }),
    ...(o.host === undefined ? {} : { host: o.host }),
    ...(o.login === undefined ? {} : { login: o.login }),
    ...(o.state === undefined ? {} : { state: o.state as RecordingState }),
    ...(o.since === undefined ? {} : { from: parseTime(o.since, '--since') }),
    ...(o.until === undefined ? {} : { to: parseTime(o.until, '--until') }),
    limit,
  };
  const rows = await withRecordings(o, async (redis) =>
    o.command === undefined
      ? (await listRecordings(redis, q)).map((m) => ({ meta: m, commands: undefined }))
      : (await findRecordingsByCommand(redis, o.command, q)).map((m) => ({ meta: m.meta, commands: m.commands })),
  );
  if (o.json === true) {
    printJson(rows.map((r) => summary(r.meta, r.commands)));
    return;
  }
  const now = Date.now();
  printTable(
    ['Id', 'User', 'Login@Host', 'Started', 'Length', 'State', 'Command'],
    rows.map(({ meta: m, commands }) => [
      m.id,
      m.user,
      `${m.login}@${m.host}`,
      new Date(m.startedAt).toISOString().replace(/\.\d+Z$/, 'Z'),
      formatSpan((m.endedAt ?? now) - m.startedAt),
      m.state,
      (commands?.join(' | ') ?? m.command ?? '(shell)').slice(0, 60),
    ]),
  );
}

async function exportCommand(o: RedisOptions & { format: string; output?: string }, id: string): Promise<void> {
  if (o.format !== 'asciicast' && o.format !== 'text') throw new CliError('ERR_USAGE', `--format: expected asciicast or text, got ${JSON.stringify(o.format)}`);
  const text = await withRecordings(o, async (redis) => {
    await requireRecordingMeta(redis, id);
    return o.format === 'asciicast' ? exportAsciicast(redis, id) : exportTranscript(redis, id);
  });
  if (o.output === undefined) process.stdout.write(text);
  else writeFileSync(o.output, text);
}

async function verifyCommand(o: RedisOptions & { profile?: string; json?: boolean }, id: string): Promise<void> {
  // The signer's key comes from auth (public), never from the recording it is to check.
  const { api } = loggedIn(o.profile);
  const { public_key } = await api.call<{ public_key: string }>('GET', '/v1/recordings/key');
  const key = parsePublicKeyText(public_key, 'the recording key').key;
  const report = await withRecordings(o, async (redis) => {
    await requireRecordingMeta(redis, id);
    return verifyRecording(redis, id, key, nodeCrypto);
  });
  if (o.json === true) printJson(report);
  else if (report.ok) writeOut(`recording ${id}: ${report.events} events, digest chain and auth's signature verify`);
  if (!report.ok) {
    const first = report.problems[0];
    throw new CliError('ERR_REFUSED', `recording ${id} does not verify: ${report.problems.length} problem(s)${first === undefined ? '' : `, first: ${first.message}`}`);
  }
}

async function removeCommand(o: RedisOptions, ids: readonly string[]): Promise<void> {
  await withRecordings(o, async (redis) => {
    for (const id of ids) {
      const meta = await requireRecordingMeta(redis, id);
      if (meta.state === 'live') throw new CliError('ERR_REFUSED', `recording ${id} is live; end the session first (pcctl lock)`);
      const k = recordingKeys(id);
      // Index entries of a removed recording are skipped when read and pruned later.
      await redis.del(k.events, k.meta, k.snapshots);
    }
  });
}

export const REDIS_FLAG = ['--redis <url|file>', "the recordings' Redis: a URL, or a config file whose redis section says url, sentinel or cluster (default: PORTCULLIS_REDIS_URL, else redis://127.0.0.1:6379)"] as const;

function addListOptions(cmd: Command): Command {
  return cmd
    .option('--user <name>', 'only this user')
    .option('--host <name>', 'only this host')
    .option('--login <login>', 'only this login')
    .option('--state <state>', 'live, ended or interrupted')
    .option('--since <time>', 'started at or after (ISO time, or an age such as 2h)')
    .option('--until <time>', 'started at or before')
    .option('--limit <n>', 'at most this many (newest first; default 50)')
    .option('--json', 'print JSON')
    .option(...REDIS_FLAG);
}

/** `recordings ls` for pcsh; pcctl gets the whole set (search, export, verify, rm). */
export function addRecordingCommands(program: Command, tool: 'pcsh' | 'pcctl'): void {
  const recordings = program.command('recordings').description('session recordings (administrators; read from Redis on the auth machine)');
  withExamples(
    addListOptions(recordings.command('ls').description('list recordings, newest first').option('--command <text>', 'only sessions that ran a command containing this')).action(
      async (_o, cmd: Command) => listRecordingsCommand(cmd.optsWithGlobals<ListOptions>()),
    ),
    `${tool} recordings ls --user alice --since 1d`,
    `${tool} recordings ls --command "rm -rf" --json`,
  );
  if (tool === 'pcsh') return;
  withExamples(
    addListOptions(recordings.command('search').description('recordings whose commands contain <text>').argument('<text>', 'part of a command')).action(
      async (text: string, _o, cmd: Command) => listRecordingsCommand({ ...cmd.optsWithGlobals<ListOptions>(), command: text }),
    ),
    'pcctl recordings search "systemctl stop"',
  );
  withExamples(
    recordings
      .command('export')
      .description('write a recording as asciicast v2 (asciinema) or as a text transcript')
      .argument('<id>', 'the recording (session) id')
      .option('--format <format>', 'asciicast or text', 'asciicast')
      .option('-o, --output <file>', 'write here instead of stdout')
      .option(...REDIS_FLAG)
      .action(async (id: string, _o, cmd: Command) => exportCommand(cmd.optsWithGlobals<RedisOptions & { format: string; output?: string }>(), id)),
    'pcctl recordings export 01J… -o session.cast && asciinema play session.cast',
    'pcctl recordings export 01J… --format text | less',
  );
  withExamples(
    recordings
      .command('verify')
      .description("check a recording's digest chain and auth's signature")
      .argument('<id>', 'the recording (session) id')
      .option('--json', 'print the report as JSON')
      .option(...REDIS_FLAG)
      .action(async (id: string, _o, cmd: Command) => verifyCommand(cmd.optsWithGlobals<RedisOptions & { profile?: string; json?: boolean }>(), id)),
    'pcctl recordings verify 01J…',
  );
  withExamples(
    recordings
      .command('rm')
      .description('delete finished recordings')
      .argument('<id...>', 'recording ids')
      .option(...REDIS_FLAG)
      .action(async (ids: string[], _o, cmd: Command) => removeCommand(cmd.optsWithGlobals<RedisOptions>(), ids)),
    'pcctl recordings rm 01J…',
  );
}

/** `pcsh sessions ls`: the live sessions (live recordings). */
export function addSessionCommands(program: Command): void {
  const sessions = program.command('sessions').description('sessions running now (administrators)');
  withExamples(
    sessions
      .command('ls')
      .description('list live sessions; pcsh join <id> watches one')
      .option('--user <name>', 'only this user')
      .option('--host <name>', 'only this host')
      .option('--json', 'print JSON')
      .option(...REDIS_FLAG)
      .action(async (_o, cmd: Command) => listRecordingsCommand({ ...cmd.optsWithGlobals<ListOptions>(), state: 'live', limit: '200' })),
    'pcsh sessions ls',
  );
}
