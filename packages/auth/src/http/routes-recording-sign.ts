import { closeSync, fsyncSync, openSync, readFileSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { encodeSignature, fingerprintSha256, formatPrivateKey, formatPublicKey, generateKey, keySigner, parsePrivateKey } from '@portcullis/cert-core';
import type { CryptoBackend, Signer, SigningPrivateKey } from '@portcullis/cert-core';
import { AuthError } from '../errors.js';
import { type ApiContext, requireProxy } from './context.js';
import { parseInput } from './validation.js';

/*
 * Signatures over finished session recordings (issue 5, tamper evidence). A recording's digest
 * chain is computed by the proxy that recorded it; auth signs the final digest with the
 * recording metadata, so that nothing holding only Redis, or only a proxy's disk, can forge a
 * signed recording. The key is a recording key, never a CA key: it signs recordings only, and
 * anyone who stole it could forge a recording's signature but not a login.
 */

/** The first line of what the recording package signs (signedRecordingPayload). */
const PAYLOAD_CONTEXT = 'portcullis-recording-v1';
/** A payload is about twenty short `name=value` lines; a command line can make it long. */
const MAX_PAYLOAD_BYTES = 16 * 1024;
const KEY_FILE = 'recording-signing-key';

const signBody = z.strictObject({ payload: z.string().min(1).max(Math.ceil(MAX_PAYLOAD_BYTES / 3) * 4) });

/**
 * Checks that bytes are a recording payload and nothing else, so the recording key cannot be
 * made to sign some other kind of message: the context line, then unique `name=<JSON>` lines,
 * with the recording id, a finished state and a SHA-256 final digest among them.
 */
export function checkRecordingPayload(bytes: Uint8Array): { readonly id: string; readonly digest: string } {
  const bad = (why: string): AuthError => new AuthError('ERR_BAD_REQUEST', `recording payload: ${why}`);
  if (bytes.length > MAX_PAYLOAD_BYTES) throw bad(`expected at most ${MAX_PAYLOAD_BYTES} bytes, got ${bytes.length}`);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw bad('expected UTF-8 text');
  }
  const lines = text.split('\n');
  if (lines.pop() !== '') throw bad('expected a final newline');
  if (lines[0] !== PAYLOAD_CONTEXT) throw bad(`expected the first line ${JSON.stringify(PAYLOAD_CONTEXT)}`);
  const fields = new Map<string, unknown>();
  for (const line of lines.slice(1)) {
    const m = /^([A-Za-z]{1,32})=(.*)$/.exec(line);
    if (!m) throw bad(`expected name=<JSON> lines, got ${JSON.stringify(line.slice(0, 40))}`);
    if (fields.has(m[1]!)) throw bad(`field ${m[1]} appears twice`);
    try {
      fields.set(m[1]!, JSON.parse(m[2]!));
    } catch {
      throw bad(`field ${m[1]} is not JSON`);
    }
  }
  const id = fields.get('id');
  const digest = fields.get('digest');
  const state = fields.get('state');
  if (typeof id !== 'string' || id === '') throw bad('expected an id');
  if (typeof digest !== 'string' || !/^[0-9a-f]{64}$/.test(digest)) throw bad('expected digest to be 64 lower-case hex digits');
  if (state !== 'ended' && state !== 'interrupted') throw bad(`expected state "ended" or "interrupted", got ${JSON.stringify(state)}`);
  return { id, digest };
}

/**
 * The recording key: `<keystore dir>/recording-signing-key` (0600, in the 0700 CA directory),
 * made on first use. Created with O_EXCL so two auth processes sharing the directory agree on
 * one key; a file with a loose mode is refused, as the CA keys are.
 */
export function openRecordingKey(dir: string, crypto: CryptoBackend, log: (message: string) => void = () => {}): Signer {
  const path = join(dir, KEY_FILE);
  let key: SigningPrivateKey;
  try {
    const fd = openSync(path, 'wx', 0o600);
    try {
      key = generateKey(crypto, 'ssh-ed25519');
      writeSync(fd, formatPrivateKey(key, { crypto, comment: 'portcullis-recording' }));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    const signer = keySigner(crypto, key);
    writeFileSync(`${path}.pub`, `${formatPublicKey(signer.publicKey, 'portcullis-recording')}\n`, { mode: 0o644 });
    log(`recordings: made the recording signing key ${fingerprintSha256(crypto, signer.publicKey)} (${path})`);
    return Object.freeze(signer);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  const mode = statSync(path).mode & 0o777;
  if ((mode & 0o077) !== 0) throw new AuthError('ERR_CONFIG', `recordings: ${path} has mode ${mode.toString(8)}; expected 600`);
  const parsed = parsePrivateKey(readFileSync(path, 'utf8'));
  return Object.freeze(keySigner(crypto, parsed.key as SigningPrivateKey));
}

/** POST /v1/proxy/recordings/sign for enrolled proxies; GET /v1/recordings/key for verifiers. */
export function registerRecordingSignRoutes(app: FastifyInstance, ctx: ApiContext): void {
  let signer: Signer | undefined;
  // Made on first use, not at start: a service that never sees a proxy makes no key.
  const key = (): Signer => (signer ??= openRecordingKey(ctx.keystore.dir, ctx.crypto, ctx.log));

  app.post('/v1/proxy/recordings/sign', { config: { refusal: 'session.refused' } }, async (request) => {
    await requireProxy(ctx, request);
    const body = parseInput(signBody, request.body);
    const payload = new Uint8Array(Buffer.from(body.payload, 'base64'));
    checkRecordingPayload(payload);
    const s = key();
    return {
      signature: Buffer.from(encodeSignature(s.sign(payload))).toString('base64'),
      public_key: formatPublicKey(s.publicKey, 'portcullis-recording'),
    };
  });

  // Public like the CA keys: anyone holding a recording may check who signed it.
  app.get('/v1/recordings/key', async () => {
    const s = key();
    return { public_key: formatPublicKey(s.publicKey, 'portcullis-recording'), fingerprint: fingerprintSha256(ctx.crypto, s.publicKey) };
  });
}
