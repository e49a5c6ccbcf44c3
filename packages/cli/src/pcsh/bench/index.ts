export * from './stats.js';
export * from './engine.js';
export * from './held.js';
export * from './trend.js';
