export * from './errors.js';
export * from './ssh2-certs.js';
