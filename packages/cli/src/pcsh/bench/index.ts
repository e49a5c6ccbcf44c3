export * from './stats.js';
export * from './engine.js';
