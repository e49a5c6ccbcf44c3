// Both ends of portcullis.terminal.v1: the gateway's zod parser for the page's text frames and
// the app's hand-written parser for the gateway's. Each accepts its messages and nothing else.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseTerminalServerMessage } from '../shared/terminal-protocol.js';
import { parseTerminalClientMessage } from '../src/terminal.js';

test('the gateway accepts the page\'s v1 messages', () => {
  for (const m of [
    { type: 'open', host: 'web01', login: 'root', cols: 80, rows: 24 },
    { type: 'mfa-answer', totp: '123456' },
    { type: 'resize', cols: 1000, rows: 1 },
    { type: 'ping', t: 0 },
    { type: 'close', reason: '' },
  ]) {
    const r = parseTerminalClientMessage(JSON.stringify(m));
    assert.ok(r.ok, JSON.stringify(m));
    assert.deepEqual(r.message, m);
  }
});

test('the gateway refuses anything else, saying why', () => {
  for (const text of [
    'hello',
    '[]',
    'null',
    JSON.stringify({ type: 'data', data: 'ls\r' }),
    JSON.stringify({ type: 'open', host: 'web01', login: 'root', cols: 0, rows: 24 }),
    JSON.stringify({ type: 'open', host: 'web01', login: 'root', cols: 80, rows: 24, extra: 1 }),
    JSON.stringify({ type: 'resize', cols: 1001, rows: 24 }),
    JSON.stringify({ type: 'resize', cols: 80.5, rows: 24 }),
    JSON.stringify({ type: 'mfa-answer', totp: '12345' }),
    JSON.stringify({ type: 'mfa-answer', totp: 123456 }),
    JSON.stringify({ type: 'ping', t: -1 }),
    JSON.stringify({ type: 'open', host: '', login: 'root', cols: 80, rows: 24 }),
  ]) {
    const r = parseTerminalClientMessage(text);
    assert.equal(r.ok, false, text);
    if (!r.ok) assert.match(r.reason, /JSON|portcullis\.terminal\.v1/);
  }
});

test('the app accepts the gateway\'s v1 messages and nothing else', () => {
  for (const m of [
    { type: 'session', id: '0b6a2f4e-3c1d-4a7b-9e8f-1a2b3c4d5e6f', host: 'web01', login: 'root' },
    { type: 'mfa', methods: ['totp'] },
    { type: 'mfa', methods: ['totp'], error: 'wrong code' },
    { type: 'pong', t: 12345 },
    { type: 'close', reason: 'exit status 0', status: 0 },
    { type: 'close', reason: 'signal KILL', signal: 'KILL' },
  ]) {
    assert.deepEqual(parseTerminalServerMessage(JSON.stringify(m)), m);
  }
  for (const text of [
    'x',
    '[]',
    JSON.stringify({ type: 'output', data: 'aGVsbG8=' }),
    JSON.stringify({ type: 'session', id: 7, host: 'web01', login: 'root' }),
    JSON.stringify({ type: 'mfa', methods: 'totp' }),
    JSON.stringify({ type: 'pong', t: 'now' }),
    JSON.stringify({ type: 'close', reason: 'x', status: 256 }),
    JSON.stringify({ type: 'close' }),
  ]) {
    assert.equal(parseTerminalServerMessage(text), undefined, text);
  }
});
