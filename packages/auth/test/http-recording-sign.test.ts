import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { parsePublicKeyText, parseSignature, publicKeysEqual, verifySignature } from '@portcullis/cert-core';
import { nodeCrypto } from '@portcullis/cert-core/node';
import { startRedis, tempDir, type RedisHandle, type TempDir } from '@portcullis/harness';
import { checkRecordingPayload } from '../src/http/routes-recording-sign.js';
import { adminSession, expectError, expectOk, sshKeygen, startTestAuth, type TestAuth } from './http-helpers.js';

/*
 * auth signs finished recordings for enrolled proxies with a key kept for that alone, and
 * publishes its public half. The payload is written out here in the recording package's form
 * (signedRecordingPayload: a context line, then name=JSON lines) because auth does not import
 * that package; the proxy's tests sign real recordings through the same contract.
 */

function payload(fields: Record<string, unknown>): Uint8Array {
  const lines = ['portcullis-recording-v1', ...Object.entries(fields).map(([k, v]) => `${k}=${JSON.stringify(v)}`)];
  return new TextEncoder().encode(lines.join('\n') + '\n');
}

const FINISHED = {
  id: '0b8f3f3e-0d55-4c39-9d5c-4b1f1b0c6e1a',
  user: 'alice',
  login: 'root',
  host: 'web01.example.com',
  state: 'ended',
  exitStatus: 0,
  lastSeq: 42,
  digest: 'a'.repeat(64),
};

describe('recording signatures through the HTTP API', () => {
  let dir: TempDir;
  let redisServer: RedisHandle;
  let auth: TestAuth;
  let credential: string;

  before(async () => {
    dir = tempDir('portcullis-http-recsign-');
    redisServer = await startRedis({ dir: dir.path });
    auth = await startTestAuth({ stateDir: dir.file('state'), redisUrl: redisServer.url });
    const admin = await adminSession(auth);
    const token = expectOk(await auth.api<{ token: string }>('POST', '/v1/admin/tokens', { token: admin, json: { type: 'proxy', ttl: '10m' } })).token;
    const key = await sshKeygen(dir.path, 'proxy_host_key');
    const joined = expectOk(
      await auth.api<{ service_credential?: string }>('POST', '/v1/join', { json: { token, type: 'proxy', hostname: 'bastion.example.com', host_keys: [key.publicKey] } }),
    );
    credential = joined.service_credential!;
  });

  after(async () => {
    await auth?.stop();
    await redisServer?.stop();
    dir?.remove();
  });

  test('an enrolled proxy gets a signature that verifies with the published recording key', async () => {
    const data = payload(FINISHED);
    const signed = expectOk(
      await auth.api<{ signature: string; public_key: string }>('POST', '/v1/proxy/recordings/sign', { token: credential, json: { payload: Buffer.from(data).toString('base64') } }),
    );
    const published = expectOk(await auth.api<{ public_key: string; fingerprint: string }>('GET', '/v1/recordings/key'));
    const key = parsePublicKeyText(published.public_key).key;
    assert.ok(publicKeysEqual(key, parsePublicKeyText(signed.public_key).key));
    assert.match(published.fingerprint, /^SHA256:/);
    const sig = parseSignature(new Uint8Array(Buffer.from(signed.signature, 'base64')));
    assert.equal(verifySignature(nodeCrypto, key, sig, data), true);
    assert.equal(verifySignature(nodeCrypto, key, sig, payload({ ...FINISHED, exitStatus: 1 })), false, 'a changed exit status fails');

    // Not a CA key: neither CA lists it, and the file sits in the CA directory, mode 0600.
    const ca = expectOk(await auth.api<{ user: { authorized_keys: string }; host: { known_hosts: string } }>('GET', '/v1/ca'));
    const blob = published.public_key.split(' ')[1]!;
    assert.ok(!ca.user.authorized_keys.includes(blob) && !ca.host.known_hosts.includes(blob));
    assert.equal(statSync(dir.file('state/ca/recording-signing-key')).mode & 0o777, 0o600);
  });

  test('only enrolled proxies may ask, and only for recording payloads', async () => {
    const body = { payload: Buffer.from(payload(FINISHED)).toString('base64') };
    expectError(await auth.api('POST', '/v1/proxy/recordings/sign', { json: body }), 401, 'ERR_UNAUTHENTICATED');
    expectError(await auth.api('POST', '/v1/proxy/recordings/sign', { token: 'x'.repeat(43), json: body }), 401, 'ERR_UNAUTHENTICATED');
    const refuse = async (data: Uint8Array, why: RegExp): Promise<void> =>
      expectError(
        await auth.api('POST', '/v1/proxy/recordings/sign', { token: credential, json: { payload: Buffer.from(data).toString('base64') } }),
        400,
        'ERR_BAD_REQUEST',
        why,
      );
    await refuse(new TextEncoder().encode('SSHSIG\nanything\n'), /first line/);
    await refuse(payload({ ...FINISHED, state: 'live' }), /state/);
    await refuse(payload({ ...FINISHED, digest: 'zz' }), /digest/);
    await refuse(new TextEncoder().encode('portcullis-recording-v1\nid="x"\nid="y"\n'), /twice/);
  });
});

describe('checkRecordingPayload', () => {
  test('accepts what the recorder signs and names what is wrong otherwise', () => {
    assert.deepEqual(checkRecordingPayload(payload({ ...FINISHED, state: 'interrupted' })), { id: FINISHED.id, digest: FINISHED.digest });
    const cases: [Uint8Array, RegExp][] = [
      [new Uint8Array([0xff, 0xfe]), /UTF-8/],
      [new TextEncoder().encode('portcullis-recording-v1\nid="x"'), /final newline/],
      [new TextEncoder().encode('portcullis-recording-v1\nnot a field\n'), /name=<JSON>/],
      [new TextEncoder().encode('portcullis-recording-v1\nid={\n'), /not JSON/],
      [payload({ ...FINISHED, id: '' }), /an id/],
      [new Uint8Array(16 * 1024 + 1), /at most/],
    ];
    for (const [bytes, why] of cases) assert.throws(() => checkRecordingPayload(bytes), why);
  });
});
