// cert-core API that exists but is not yet on its public surface (its index.ts does not
// re-export keys/private-key, check/checker or check/userauth yet). Imported by relative path
// in this one file so that switching to '@portcullis/cert-core' is a one-file change.
// TODO(lead): export these from cert-core's index.ts and import them from the package here.
export { formatPrivateKey } from '../../cert-core/src/keys/private-key.js';
export { checkHostCertificate, checkUserCertificate, trustedAuthorities } from '../../cert-core/src/check/checker.js';
export type { HostCertificateCheck, TrustedCAs } from '../../cert-core/src/check/checker.js';
export { verifyUserauthSignature } from '../../cert-core/src/check/userauth.js';
export type { UserauthSignature } from '../../cert-core/src/check/userauth.js';
