export * from './locks.js';
export * from './notices.js';
export * from './revocations.js';
export * from './krl.js';
export * from './session-locks.js';
