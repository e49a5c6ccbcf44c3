// The pkcs11 backend selected in auth's config: the service starts with both CAs in a SoftHSM2
// token and publishes their public keys, a token key added to a state directory that already has
// file keys waits as standby (hosts must trust it before it signs), and config mistakes are named.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { startRedis, tempDir } from '@portcullis/harness';
import type { RedisHandle, TempDir } from '@portcullis/harness';
import { parsePublicKeyText, publicKeysEqual, utf8, verifySignature } from '@portcullis/cert-core';
import { nodeCrypto } from '@portcullis/cert-core/node';
import { isAuthError } from '../src/errors.js';
import { parseAuthConfig } from '../src/config/load.js';
import { CaKeystore } from '../src/ca/keystore.js';
import { openPkcs11Signer } from '../src/ca/pkcs11.js';
import { startTestAuth } from './http-helpers.js';
import { SOFTHSM_MODULE, softToken, softhsmMissing } from './ca-pkcs11-fixture.js';
import type { SoftToken } from './ca-pkcs11-fixture.js';

const skip = softhsmMissing();

describe('auth config: ca.<kind>.backend pkcs11', { skip }, () => {
  let dir: TempDir;
  let token: SoftToken;
  let redis: RedisHandle;
  let pinFile: string;

  const pkcs11 = (key_label: string) => ({ backend: 'pkcs11', pkcs11: { module: SOFTHSM_MODULE, token_label: token.label, key_label, pin_file: pinFile } });

  before(async () => {
    dir = tempDir('portcullis-hsm-service-');
    token = await softToken(dir);
    await token.generate('EC:edwards25519', 'user-ca', '11');
    await token.generate('EC:prime256v1', 'host-ca', '12');
    await token.generate('EC:prime256v1', 'next-user-ca', '13');
    pinFile = dir.file('ca.pin');
    writeFileSync(pinFile, `${token.pin}\n`, { mode: 0o600 });
    mkdirSync(dir.file('redis'));
    redis = await startRedis({ dir: dir.file('redis') });
  });

  after(async () => {
    await redis?.stop();
    dir?.remove();
  });

  it('the service signs with both CAs in the token and publishes their public keys', async () => {
    const stateDir = dir.file('state-service');
    const auth = await startTestAuth({ stateDir, redisUrl: redis.url, config: { ca: { user: pkcs11('user-ca'), host: pkcs11('host-ca') } } });
    try {
      const ks = auth.service.context.keystore;
      const user = ks.active('user');
      const host = ks.active('host');
      assert.equal(user.publicKey.type, 'ssh-ed25519');
      assert.equal(host.publicKey.type, 'ecdsa-sha2-nistp256');
      assert.equal(existsSync(ks.keyPath(user.id)), false, 'no private key file for a token key');
      assert.equal(existsSync(ks.keyPath(host.id)), false, 'no private key file for a token key');
      assert.ok(auth.log.some((l) => /ca: user CA signs in pkcs11:.* token "portcullis-ca" key "user-ca"/.test(l)), auth.log.join('\n'));
      const published = await auth.api<{ user: { authorized_keys: string } }>('GET', '/v1/ca');
      const line = published.body.user.authorized_keys.trim();
      assert.ok(publicKeysEqual(parsePublicKeyText(line).key, user.publicKey));
      const data = utf8('signed by the host CA in the token');
      const signer = ks.signer('host');
      assert.ok(verifySignature(nodeCrypto, signer.publicKey, signer.sign(data), data));
      const ready = await auth.api<{ checks: Record<string, string> }>('GET', '/v1/ready');
      assert.equal(ready.status, 200, JSON.stringify(ready.body));
      assert.equal(ready.body.checks['ca_user_token'], 'ok');
      assert.equal(ready.body.checks['ca_host_token'], 'ok');
      assert.ok(!auth.log.some((l) => l.includes(token.pin)), 'the PIN is never logged');
    } finally {
      await auth.stop();
    }
    // A restart finds the same keys listed in the index and in the token.
    const again = await startTestAuth({ stateDir, redisUrl: redis.url, config: { ca: { user: pkcs11('user-ca'), host: pkcs11('host-ca') } } });
    try {
      // The two token keys, and the upstream CA this config leaves to a file key.
      assert.equal(again.service.context.keystore.keys().length, 3);
    } finally {
      await again.stop();
    }
  });

  it('a token key joins a state directory with file keys as standby until activated', () => {
    const stateDir = dir.file('state-migrate');
    const fileOnly = CaKeystore.open({ stateDir, crypto: nodeCrypto });
    const fileUser = fileOnly.active('user');
    const signer = openPkcs11Signer({ module: SOFTHSM_MODULE, tokenLabel: token.label, keyLabel: 'next-user-ca', pin: token.pin, crypto: nodeCrypto });
    try {
      const logs: string[] = [];
      const changes: string[] = [];
      const ks = CaKeystore.open({ stateDir, crypto: nodeCrypto, tokenSigners: { user: signer }, log: (m) => logs.push(m), onChange: (c) => changes.push(`${c.event} ${c.action} ${c.kind}`) });
      assert.equal(ks.active('user').id, fileUser.id, 'the file key keeps signing');
      const staged = ks.keys('user').find((k) => k.status === 'standby');
      assert.ok(staged !== undefined && publicKeysEqual(staged.publicKey, signer.publicKey));
      assert.equal(ks.authorizedKeys('user').trim().split('\n').length, 2, 'proxies are told to trust both');
      assert.deepEqual(changes, ['ca.created imported user', 'ca.trust_changed imported user']);
      assert.ok(logs.some((l) => l.includes(`activate ${staged.id} once hosts trust it`)), logs.join('\n'));
      ks.activate(staged.id);
      assert.equal(ks.signer('user'), signer);
      // Reopened, the index says the token key is active; the token is asked, not a file.
      const reopened = CaKeystore.open({ stateDir, crypto: nodeCrypto, tokenSigners: { user: signer } });
      assert.equal(reopened.signer('user'), signer);
      // The same token key offered as the host CA too is refused: one key, one kind.
      assert.throws(() => CaKeystore.open({ stateDir, crypto: nodeCrypto, tokenSigners: { user: signer, host: signer } }), (e: unknown) => isAuthError(e, 'ERR_CONFIG') && /already the user CA/.test(e.message));
      // Without the token configured, the key it lists cannot be found: a clear stop, not a new key.
      assert.throws(() => CaKeystore.open({ stateDir, crypto: nodeCrypto }), (e: unknown) => isAuthError(e, 'ERR_CONFIG') && /is missing/.test(e.message));
    } finally {
      signer.close();
    }
  });

  it('config errors name the key', () => {
    const parse = (ca: unknown) => () => parseAuthConfig({ state_dir: dir.file('x'), redis: { url: redis.url }, ca }, { env: {} });
    const fails = (ca: unknown, message: RegExp) => assert.throws(parse(ca), (e: unknown) => isAuthError(e, 'ERR_CONFIG') && message.test(e.message));
    fails({ user: { backend: 'pkcs11' } }, /ca\.user\.pkcs11: required when backend is pkcs11/);
    fails({ user: { pkcs11: { module: SOFTHSM_MODULE, token_label: 't', key_label: 'k', pin_file: pinFile } } }, /ca\.user\.pkcs11: only used when backend is pkcs11/);
    fails({ host: { backend: 'pkcs11', pkcs11: { module: SOFTHSM_MODULE, key_label: 'k', pin_file: pinFile } } }, /ca\.host\.pkcs11\.token_label: give token_label or slot/);
    fails({ host: { backend: 'pkcs11', pkcs11: { module: SOFTHSM_MODULE, slot: 1, key_label: 'k' } } }, /ca\.host\.pkcs11\.pin_file: give pin_file or pin_env/);
    fails({ host: { backend: 'pkcs11', pkcs11: { module: 'libsofthsm2.so', slot: 1, key_label: 'k', pin_env: 'PIN' } } }, /ca\.host\.pkcs11\.module: expected an absolute path/);
    // A PIN written into the config itself is refused, and not repeated in the message.
    fails({ host: { backend: 'pkcs11', pkcs11: { module: SOFTHSM_MODULE, slot: 1, key_label: 'k', pin_env: 'PIN', pin: '815273' } } }, /^(?!.*815273).*ca\.host\.pkcs11\.pin: unknown key/);
    const ok = parse({ user: pkcs11('user-ca') })();
    assert.equal(ok.ca.user.backend, 'pkcs11');
    assert.equal(ok.ca.host.backend, undefined, 'file, the default, when not given');
  });
});
