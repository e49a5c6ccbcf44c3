import { createHash } from 'node:crypto';
import { CliError } from '../common/errors.js';
import { checkUserCaFile } from './answer.js';
import { call, fetchKrl, okBody } from './auth-api.js';
import { FileChanges, readIfExists } from './files.js';
import { connectRecorded, enrolledHost, type HostCommandOptions } from './renew.js';

export interface KrlRefreshResult {
  readonly krl: 'unchanged' | 'replaced';
  readonly userCa: 'unchanged' | 'replaced';
}

/**
 * Brings RevokedKeys (and the TrustedUserCAKeys file, so a staged CA rotation reaches the host
 * before the new key signs) up to date. sshd reads both on every login attempt and treats an
 * unreadable KRL as "everything revoked", so nothing is replaced unless the new bytes parse, and
 * then only by rename: a failed download leaves the current files exactly as they were.
 *
 * The If-None-Match value is the SHA-256 of the file on disk (auth's ETag is `"<sha256>"`), not
 * a remembered ETag: a file changed or lost behind our back is then fetched again.
 */
export async function runKrlRefresh(o: HostCommandOptions = {}): Promise<KrlRefreshResult> {
  const out = o.out ?? ((l: string) => process.stdout.write(`${l}\n`));
  const { state, layout } = enrolledHost(o);
  const conn = await connectRecorded(o, state, out);
  const current = readIfExists(layout.krlFile);
  const etag = current === undefined ? undefined : `"${createHash('sha256').update(current).digest('hex')}"`;
  const krl = await fetchKrl(conn, etag);

  // The upstream CA (what the proxy dials with), never `user` (engineers' own certificates):
  // a host trusting the user CA could be reached around the proxy.
  const ca = okBody(await call<{ upstream?: { authorized_keys?: unknown } }>(conn, 'GET', '/v1/ca'), 'fetching the CA keys');
  const userCa = checkUserCaFile(ca.upstream?.authorized_keys, 'upstream.authorized_keys');

  const changes = new FileChanges();
  let krlResult: KrlRefreshResult['krl'] = 'unchanged';
  let caResult: KrlRefreshResult['userCa'] = 'unchanged';
  try {
    if (krl !== 'unchanged' && changes.write(layout.krlFile, krl, 0o644)) krlResult = 'replaced';
    if (changes.write(layout.userCaFile, userCa, 0o644)) caResult = 'replaced';
  } catch (e) {
    changes.rollback();
    throw new CliError('ERR_CONFIG', `cannot write ${layout.dataDir}: ${(e as Error).message}; the current files were kept`);
  }
  if (krlResult === 'replaced') out(`KRL updated: ${layout.krlFile} (${krl === 'unchanged' ? 0 : krl.length} bytes)`);
  if (caResult === 'replaced') out(`trusted (upstream) CA keys updated: ${layout.userCaFile}`);
  return { krl: krlResult, userCa: caResult };
}
