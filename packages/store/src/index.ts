export * from './errors.js';
export * from './redis.js';
export * from './embedded.js';
