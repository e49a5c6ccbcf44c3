export * from './login-session.js';
