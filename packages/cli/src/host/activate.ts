import { rmSync } from 'node:fs';
import { CliError } from '../common/errors.js';
import { FileChanges, readIfExists, renameDurably, siblingTempPath, writeNewFile } from './files.js';
import type { HostLayout } from './layout.js';
import { dropInIneffective, reloadSshd, sshdTest, testStagedDropIn, type DropIn, type ReloadResult } from './sshd.js';

/*
 * The one way join and renew change a host: write every file, pass the drop-in through
 * `sshd -t` under a name sshd does not read, rename it in, test the real configuration again
 * and check sshd -T sees it, and only then reload. Any failure on the way puts back every file
 * as it was, so the sshd that is running (and the next one to start) keeps the old, working set.
 */

export interface Activation {
  readonly layout: HostLayout;
  readonly sshd: string;
  /** Writes the data files (certificates, CA keys, KRL, state, timers) through `changes`. */
  readonly write: (changes: FileChanges) => void;
  /** The drop-in to put in place, when this change owns it (join). */
  readonly dropIn?: { readonly text: string; readonly spec: DropIn };
}

export interface Activated {
  readonly changed: readonly string[];
  readonly reload: ReloadResult | undefined;
}

async function validate(a: Activation, changes: FileChanges): Promise<void> {
  a.write(changes);
  if (a.dropIn !== undefined) {
    const current = readIfExists(a.layout.dropIn);
    if (current === undefined || !current.equals(Buffer.from(a.dropIn.text))) {
      const staged = siblingTempPath(a.layout.dropIn, 'new');
      writeNewFile(staged, a.dropIn.text, 0o644);
      try {
        const refused = await testStagedDropIn(a.layout, a.sshd, staged);
        if (refused !== undefined) throw new CliError('ERR_CONFIG', `sshd -t refused the new drop-in: ${refused}`);
        changes.track(a.layout.dropIn);
        renameDurably(staged, a.layout.dropIn);
      } finally {
        rmSync(staged, { force: true });
      }
    }
  }
  // The real thing, exactly as the reload will read it.
  const refused = await sshdTest(a.sshd, a.layout.sshdConfig);
  if (refused !== undefined) throw new CliError('ERR_CONFIG', `sshd -t -f ${a.layout.sshdConfig} failed with the new files: ${refused}`);
  if (a.dropIn !== undefined) {
    const why = await dropInIneffective(a.layout, a.sshd, a.dropIn.spec);
    if (why !== undefined) throw new CliError('ERR_CONFIG', why);
  }
}

export async function activate(a: Activation): Promise<Activated> {
  const changes = new FileChanges();
  try {
    await validate(a, changes);
  } catch (e) {
    const restored = changes.changed.length;
    const failed = changes.rollback();
    const suffix = failed.length > 0 ? `; could NOT restore ${failed.join(', ')}` : restored > 0 ? '; every file was put back as it was' : '';
    if (e instanceof CliError) throw new CliError(e.code, `${e.message}${suffix}`);
    throw new CliError('ERR_CONFIG', `${(e as Error).message}${suffix}`);
  }
  const changed = [...changes.changed];
  // Nothing new for sshd (only the KRL or the state changed, which sshd reads on its own).
  const sshdSees = changed.some((p) => p === a.layout.dropIn || p.endsWith('-cert.pub') || p.startsWith(a.layout.sshdConfigDir));
  return { changed, reload: sshdSees ? await reloadSshd(a.layout, a.sshd) : undefined };
}
