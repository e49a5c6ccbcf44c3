export * from './keystore.js';
export * from './serials.js';
export * from './issue.js';
export * from './access.js';
export * from './signing.js';
export * from './issuer.js';
export * from './client-certificate.js';
