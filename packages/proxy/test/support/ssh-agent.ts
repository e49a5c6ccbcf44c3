// A real OpenSSH ssh-agent for agent forwarding tests, on a socket of its own (never the
// developer's agent), and a fake X display that answers an X11 connection set-up.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import type { Server } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { runOk } from '@portcullis/harness';

export interface SshAgent {
  readonly socket: string;
  /** Generates an Ed25519 key, adds it, returns its `ssh-keygen -l` fingerprint (SHA256:...). */
  addNewKey(path: string): Promise<string>;
  stop(): Promise<void>;
}

export async function startSshAgent(socket: string): Promise<SshAgent> {
  const child = spawn('ssh-agent', ['-D', '-a', socket], { stdio: ['ignore', 'ignore', 'pipe'] });
  const gone = new Promise<void>((resolve) => child.once('close', () => resolve()));
  const deadline = Date.now() + 5_000;
  while (!existsSync(socket)) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`ssh-agent -a ${socket} did not start`);
    }
    await sleep(20);
  }
  const env = { ...process.env, SSH_AUTH_SOCK: socket };
  return {
    socket,
    async addNewKey(path) {
      await runOk('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'forwarded-key', '-f', path]);
      await runOk('ssh-add', ['-q', path], { env });
      const fp = (await runOk('ssh-keygen', ['-l', '-f', `${path}.pub`])).stdout.split(' ')[1];
      if (fp === undefined) throw new Error('ssh-keygen -l printed no fingerprint');
      return fp;
    },
    async stop() {
      child.kill('SIGTERM');
      await gone;
    },
  };
}

export interface FakeDisplay {
  /** For DISPLAY: `127.0.0.1:N` (ssh connects to TCP port 6000+N). */
  readonly display: string;
  /** The authorization protocol names the display was offered. */
  readonly seen: string[];
  close(): void;
}

/**
 * Answers an X11 connection set-up with `X11-OK\n` after reading it (byte order, version,
 * authorization name and data) and remembers the authorization name. Enough to prove that a
 * channel the target opened reached the client's display, cookie check by ssh included.
 */
export async function startFakeDisplay(): Promise<FakeDisplay> {
  const seen: string[] = [];
  for (let n = 40 + (process.pid % 200); n < 400; n++) {
    const server: Server = createServer((s) => {
      let buf = Buffer.alloc(0);
      s.on('data', (b: Buffer) => {
        buf = Buffer.concat([buf, b]);
        if (buf.length < 12) return;
        const le = buf[0] === 0x6c;
        const u16 = (o: number): number => (le ? buf.readUInt16LE(o) : buf.readUInt16BE(o));
        const nameLen = u16(6);
        const dataLen = u16(8);
        const pad = (x: number): number => (x + 3) & ~3;
        if (buf.length < 12 + pad(nameLen) + pad(dataLen)) return;
        seen.push(buf.subarray(12, 12 + nameLen).toString('latin1'));
        s.end('X11-OK\n');
      });
      s.on('error', () => {});
    });
    const ok = await new Promise<boolean>((resolve) => {
      server.once('error', () => resolve(false));
      server.listen(6000 + n, '127.0.0.1', () => resolve(true));
    });
    if (ok) return { display: `127.0.0.1:${n}`, seen, close: () => server.close() };
  }
  throw new Error('no free X display port between 6040 and 6400');
}

/**
 * A command for the target that acts as an X client: it reads the cookie sshd stored for its
 * $DISPLAY with xauth, sends the connection set-up and prints the display's answer.
 */
export function x11ClientCommand(): string {
  const script = `
const { execSync } = require('node:child_process');
const net = require('node:net');
const d = process.env.DISPLAY || '';
const m = /^(.*):(\\d+)(?:\\.\\d+)?$/.exec(d);
if (!m) { console.log('NO-DISPLAY'); process.exit(3); }
const line = execSync('xauth list ' + JSON.stringify(d)).toString().trim().split('\\n')[0] || '';
const [, proto, hex] = line.split(/\\s+/);
const name = Buffer.from(proto, 'latin1'), data = Buffer.from(hex, 'hex');
const pad = (b) => Buffer.concat([b, Buffer.alloc((4 - (b.length % 4)) % 4)]);
const head = Buffer.alloc(12); head[0] = 0x6c; head.writeUInt16LE(11, 2); head.writeUInt16LE(name.length, 6); head.writeUInt16LE(data.length, 8);
const s = net.connect(6000 + Number(m[2]), m[1] === '' || m[1] === 'unix' ? '127.0.0.1' : m[1]);
s.on('data', (b) => process.stdout.write(b));
s.on('error', (e) => { console.log('X-ERROR ' + e.message); process.exit(4); });
s.write(Buffer.concat([head, pad(name), pad(data)]));`;
  return `${process.execPath} -e '${script.replace(/'/g, `'\\''`)}'`;
}
