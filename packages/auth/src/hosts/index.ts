export * from './inventory.js';
export * from './join-tokens.js';
export * from './sshsig.js';
export * from './enrollment.js';
