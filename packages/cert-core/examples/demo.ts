// What `npm start` runs until the services exist: cert-core doing a CA's job end to end.
// Creates (once) a user CA in .state/demo/, issues a five-minute certificate for a fresh key,
// prints it as `ssh-keygen -L` does, and has the real ssh-keygen read it back.
import { existsSync, mkdirSync, readFileSync, writeFileSync, chmodSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { nodeCrypto } from '../src/crypto/node.js';
import {
  DEFAULT_USER_PERMISSIONS,
  fingerprintSha256,
  formatCertificate,
  formatPrivateKey,
  formatPublicKey,
  generateKey,
  isSigningPrivateKey,
  keySigner,
  optionsFromPermissions,
  parsePrivateKey,
  printCertificate,
  publicPart,
  signCertificate,
} from '../src/index.js';

const dir = resolve(process.argv[2] ?? '.state/demo');
mkdirSync(dir, { recursive: true, mode: 0o700 });
const caPath = join(dir, 'user_ca');

if (!existsSync(caPath)) {
  const ca = generateKey(nodeCrypto, 'ssh-ed25519');
  writeFileSync(caPath, formatPrivateKey(ca, { comment: 'portcullis-demo-user-ca', crypto: nodeCrypto }), { mode: 0o600 });
  writeFileSync(`${caPath}.pub`, formatPublicKey(publicPart(ca), 'portcullis-demo-user-ca') + '\n');
  console.log(`created user CA ${fingerprintSha256(nodeCrypto, publicPart(ca))} in ${caPath}`);
}
const { key: ca } = parsePrivateKey(readFileSync(caPath, 'utf8'));
if (!isSigningPrivateKey(ca)) throw new Error(`${caPath} is not a signing key`);

const user = generateKey(nodeCrypto, 'ssh-ed25519');
const now = BigInt(Math.floor(Date.now() / 1000));
const { criticalOptions, extensions } = optionsFromPermissions(DEFAULT_USER_PERMISSIONS);
const cert = signCertificate(
  {
    key: publicPart(user),
    kind: 'user',
    serial: now,
    keyId: 'alice req=demo',
    principals: ['ubuntu'],
    validAfter: now - 60n,
    validBefore: now + 300n,
    criticalOptions,
    extensions,
  },
  keySigner(nodeCrypto, ca),
  { crypto: nodeCrypto },
);
const certPath = join(dir, 'id_ed25519-cert.pub');
writeFileSync(join(dir, 'id_ed25519'), formatPrivateKey(user, { crypto: nodeCrypto }), { mode: 0o600 });
chmodSync(join(dir, 'id_ed25519'), 0o600);
writeFileSync(certPath, formatCertificate(cert, 'alice') + '\n');

console.log('\n# Portcullis prints:');
console.log(printCertificate(cert, { crypto: nodeCrypto, path: certPath }));
try {
  const theirs = execFileSync('ssh-keygen', ['-L', '-f', certPath], { env: { ...process.env, TZ: 'UTC' } }).toString();
  console.log('# ssh-keygen -L prints:');
  console.log(theirs);
  const ours = printCertificate(cert, { crypto: nodeCrypto, path: certPath });
  console.log(theirs.trimEnd() === ours.trimEnd() ? 'identical.' : 'DIFFERENT (a bug: please report it)');
} catch {
  console.log('(ssh-keygen not found: install openssh-client to compare)');
}
console.log(`\nTrust this CA on a host with:  TrustedUserCAKeys ${caPath}.pub`);
