export * from './process.js';
export * from './sshd.js';
export * from './ssh.js';
export * from './redis.js';
export * from './oidc-provider.js';
export * from './redis-topology.js';
export * from './chromium.js';
