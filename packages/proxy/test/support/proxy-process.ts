// The proxy as a child process (recording-proxy-child.ts): the files it starts from and the
// wait for it to listen, for the tests that kill it, restart it or run it with workers.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { formatPrivateKey, formatPublicKey, publicPart } from '@portcullis/cert-core';
import type { SigningPrivateKey } from '@portcullis/cert-core';
import { nodeCrypto } from '@portcullis/cert-core/node';
import type { UserAccess } from '../../src/index.js';
import { newKey, writeKeyAndCertificate } from './authority.js';
import type { Fixture } from './fixture.js';
import type { StandInState } from './recording-proxy-child.js';
import { waitFor } from './recording.js';

const CHILD = fileURLToPath(new URL('./recording-proxy-child.ts', import.meta.url));
const REPO = fileURLToPath(new URL('../../../../', import.meta.url));

/** Writes the stand-in auth the child rebuilds: the fixture's CAs and hosts, `recordingKey`, `users`. */
export function writeStandInState(path: string, f: Fixture, recordingKey: SigningPrivateKey, users: readonly UserAccess[]): void {
  const state: StandInState = {
    userCA: formatPrivateKey(f.authority.userCA, { crypto: nodeCrypto }),
    upstreamCA: formatPrivateKey(f.authority.upstreamCA, { crypto: nodeCrypto }),
    hostCA: formatPrivateKey(f.authority.hostCA, { crypto: nodeCrypto }),
    recordingKey: formatPrivateKey(recordingKey, { crypto: nodeCrypto }),
    hosts: f.authority.hosts,
    users,
  };
  writeFileSync(path, JSON.stringify(state));
}

/**
 * A state directory with a host key certified by the fixture's host CA and a proxy.yaml of
 * `state_dir` and then `lines`; returns the config file's path.
 */
export function writeProxyStateDir(stateDir: string, f: Fixture, lines: readonly string[]): string {
  mkdirSync(stateDir, { recursive: true });
  const hostKey = newKey();
  writeKeyAndCertificate(`${stateDir}/host_key`, hostKey, f.authority.hostCertificate(hostKey, ['127.0.0.1', 'localhost']));
  const config = `${stateDir}/proxy.yaml`;
  writeFileSync(config, [`state_dir: ${stateDir}`, ...lines].join('\n') + '\n');
  return config;
}

export interface ProxyProcess {
  readonly child: ChildProcess;
  readonly port: number;
  /** The `listening` match on stderr; group 1 is the port. */
  readonly listening: RegExpExecArray;
  stdout(): string;
  stderr(): string;
}

/**
 * Starts the child on `statePath` and `config`, waits until its stderr matches `listening`
 * (group 1 the port) and adds the fixture's host CA for that port to the clients' known_hosts.
 */
export async function startProxyProcess(f: Fixture, statePath: string, config: string, listening: RegExp, timeoutMs: number): Promise<ProxyProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, statePath, config], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (err += b.toString()));
  const m = await waitFor(
    'the proxy process to listen',
    () => {
      if (child.exitCode !== null) throw new Error(`the proxy exited ${child.exitCode}: ${err}`);
      return listening.exec(err) ?? undefined;
    },
    timeoutMs,
  );
  const port = Number(m[1]);
  appendFileSync(f.knownHosts, `@cert-authority [127.0.0.1]:${port} ${formatPublicKey(publicPart(f.authority.hostCA))}\n`);
  return { child, port, listening: m, stdout: () => out, stderr: () => err };
}
