// The proxy as its own process, for tests that kill it or run two: main.ts's runMain with the
// config file the test wrote, auth replaced by the stand-in rebuilt from the test's CA keys.
// usage: node --import tsx recording-proxy-child.ts <stand-in.json> <proxy.yaml>
import { readFileSync } from 'node:fs';
import { keySigner, parsePrivateKey } from '@portcullis/cert-core';
import type { SigningPrivateKey } from '@portcullis/cert-core';
import { nodeCrypto } from '@portcullis/cert-core/node';
import { runMain } from '../../src/main.js';
import { localSignatureService } from '../../src/recording.js';
import type { TargetHost, UserAccess } from '../../src/index.js';
import { StandInAuthority } from './authority.js';

/** What the parent test hands over: private keys as OpenSSH text. */
export interface StandInState {
  readonly userCA: string;
  readonly upstreamCA: string;
  readonly hostCA: string;
  readonly recordingKey: string;
  readonly hosts: readonly TargetHost[];
  readonly users: readonly UserAccess[];
}

const [statePath, configPath] = process.argv.slice(2);
if (statePath === undefined || configPath === undefined) {
  process.stderr.write('usage: recording-proxy-child.ts <stand-in.json> <proxy.yaml>\n');
  process.exit(2);
}
const state = JSON.parse(readFileSync(statePath, 'utf8')) as StandInState;
const key = (text: string): SigningPrivateKey => parsePrivateKey(text).key as SigningPrivateKey;
const authority = new StandInAuthority(state.users);
// The same CAs as the parent's stand-in, so its sshd and its clients trust this process.
Object.assign(authority as unknown as Record<string, unknown>, { userCA: key(state.userCA), upstreamCA: key(state.upstreamCA), hostCA: key(state.hostCA) });
authority.hosts.push(...state.hosts);

process.exitCode = await runMain(['--config', configPath], {
  authority,
  signatures: localSignatureService(keySigner(nodeCrypto, key(state.recordingKey))),
  // With workers, which process wrote the event (service-workers.test.ts tells them apart).
  audit: (e) => process.stdout.write(`${JSON.stringify({ ...e, pid: process.pid })}\n`),
  log: (level, message) => process.stderr.write(`proxy ${level}: ${message}\n`),
});
