export * from './claims.js';
export * from './oidc.js';
export * from './password.js';
export * from './redis-store.js';
export * from './store.js';
export * from './totp.js';
export * from './users.js';
