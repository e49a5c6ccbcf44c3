// Properties for every parser that reads bytes from outside and that cert-core's own property
// tests (certificates, keys, KRLs, wire) do not already cover. Each property feeds arbitrary
// and near-valid input and asserts the parser either returns or refuses in its documented way
// (CertError, a `{ ok: false }` or `undefined` result) — never another exception, never a hang.
// The CI test runs them with a small numRuns and a fixed seed; scripts/fuzz.sh runs the same
// list for minutes with random seeds, so a crash found there replays here by its seed.
import fc from 'fast-check';
import {
  CERT_SUFFIX,
  buildUserauthSignedData,
  encodePublicKey,
  encodeSignature,
  formatAuthorizedKeyLine,
  generateKey,
  isCertError,
  parseAuthorizedKeys,
  parseKnownHosts,
  parseKrlSpec,
  parseSignature,
  publicPart,
  signData,
  verifyUserauthSignature,
} from '@portcullis/cert-core';
import type { SigningPrivateKey } from '@portcullis/cert-core';
import { nodeCrypto } from '@portcullis/cert-core/node';
import { SftpStreamParser, SFTP_MAX_PACKET } from '@portcullis/recording';
import { parseTerminalClientMessage } from '../../packages/web/src/terminal.js';
import { parseTerminalServerMessage } from '../../packages/web/shared/terminal-protocol.js';

/**
 * Each input must finish within this; a parser that loops shows up as a failed property. Far
 * above the microseconds an input takes, so a loaded CI machine does not trip it.
 */
export const PER_INPUT_MS = 2_000;

export interface FuzzProperty {
  readonly name: string;
  /** Runs in CI; the long run multiplies it. */
  readonly numRuns: number;
  readonly property: fc.IProperty<unknown[]> | fc.IAsyncProperty<unknown[]>;
}

/** Only the parser's own refusal is acceptable; anything else (TypeError, RangeError) is a bug. */
function refusedProperly(e: unknown): boolean {
  return isCertError(e);
}

function timed<T>(f: () => T): T {
  const t0 = performance.now();
  const r = f();
  const ms = performance.now() - t0;
  if (ms > PER_INPUT_MS) throw new Error(`one input took ${ms.toFixed(0)} ms (limit ${PER_INPUT_MS} ms)`);
  return r;
}

function expectCertErrorOrValue(f: () => unknown): void {
  timed(() => {
    try {
      f();
    } catch (e) {
      if (!refusedProperly(e)) throw e;
    }
  });
}

// Keys made once: generating RSA per run would dominate the budget.
const keys: Record<string, SigningPrivateKey> = {
  ed25519: generateKey(nodeCrypto, 'ssh-ed25519'),
  p256: generateKey(nodeCrypto, 'ecdsa-sha2-nistp256'),
  p384: generateKey(nodeCrypto, 'ecdsa-sha2-nistp384'),
};
const keyNames = Object.keys(keys);
const ALGORITHMS = [
  'ssh-ed25519',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'rsa-sha2-256',
  'rsa-sha2-512',
  'ssh-rsa',
  `ssh-ed25519${CERT_SUFFIX}`,
  `ecdsa-sha2-nistp256${CERT_SUFFIX}`,
  'sk-ssh-ed25519@openssh.com',
  '',
  'none',
];

/** A byte array mutated at a few places: near-valid input reaches deeper than noise. */
const mutated = (base: Uint8Array): fc.Arbitrary<Uint8Array> =>
  fc
    .record({
      flips: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
      cut: fc.option(fc.nat(), { nil: undefined }),
    })
    .map(({ flips, cut }) => {
      const b = Uint8Array.from(base);
      for (const [at, v] of flips) b[at % b.length] = v;
      return cut === undefined ? b : b.subarray(0, cut % (b.length + 1));
    });

const signed = (key: SigningPrivateKey, algorithm: string): { keyBlob: Uint8Array; signature: Uint8Array; signedData: Uint8Array } => {
  const keyBlob = encodePublicKey(publicPart(key));
  const signedData = buildUserauthSignedData(new Uint8Array(32).fill(7), 'root', 'ssh-connection', algorithm, keyBlob);
  return { keyBlob, signature: encodeSignature(signData(nodeCrypto, key, signedData)), signedData };
};
const goodEd = signed(keys['ed25519']!, 'ssh-ed25519');

/** SFTP framing around arbitrary payloads: length-prefixed packets with random types. */
const sftpPacket = fc
  .tuple(fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 96 }), fc.boolean())
  .map(([type, body, lie]) => {
    const len = lie ? (body.length * 7919) % (SFTP_MAX_PACKET * 2) : body.length + 1;
    const b = new Uint8Array(5 + body.length);
    new DataView(b.buffer).setUint32(0, len);
    b[4] = type;
    b.set(body, 5);
    return b;
  });

/** Random JSON shaped like the terminal messages, with the right and wrong field types. */
const terminalJson = fc.oneof(
  fc.json(),
  fc
    .record({
      type: fc.constantFrom('open', 'mfa-answer', 'resize', 'ping', 'close', 'session', 'mfa', 'pong', 'x', ''),
      host: fc.oneof(fc.string(), fc.integer(), fc.constant(null)),
      login: fc.oneof(fc.string(), fc.constant('a'.repeat(5000))),
      cols: fc.oneof(fc.integer(), fc.double(), fc.string()),
      rows: fc.oneof(fc.integer({ min: -5, max: 100_000 }), fc.constant(Number.MAX_SAFE_INTEGER)),
      t: fc.oneof(fc.double(), fc.bigInt().map(String)),
      methods: fc.oneof(fc.array(fc.string()), fc.string()),
      reason: fc.string(),
      totp: fc.string(),
    }, { requiredKeys: ['type'] })
    .map((o) => JSON.stringify(o)),
  fc.string(),
);

/** Text lines built from authorized_keys / known_hosts vocabulary, plus a real key. */
const realKeyLine = formatAuthorizedKeyLine({ key: publicPart(keys['ed25519']!), comment: 'c' });
const keyTextLine = fc.oneof(
  fc.string(),
  fc.constant(realKeyLine),
  fc
    .tuple(
      fc.constantFrom('', 'command="x"', 'from="10.0.0.0/8,!*"', 'restrict,pty', 'expiry-time="20300101"', 'permitopen="h:1"', '@cert-authority', '@revoked', '|1|', '[h]:22', 'cert-authority,principals="a,b"', '"', '\\'),
      fc.constantFrom('', realKeyLine, 'ssh-ed25519', 'ssh-rsa AAAA', 'host,*.ex ssh-ed25519', 'ecdsa-sha2-nistp256 AAAAE2VjZHNh'),
      fc.string({ maxLength: 40 }),
    )
    .map((parts) => parts.join(' ')),
);
const keyText = fc.array(keyTextLine, { maxLength: 8 }).map((l) => l.join('\n'));

/** KRL spec vocabulary: serial ranges in every base strtoull accepts, ids, keys, hashes. */
const krlSpecLine = fc.oneof(
  fc.string(),
  fc.tuple(fc.constantFrom('serial:', 'SERIAL:', 'id:', 'key:', 'sha1:', 'sha256:', 'hash:', '#', ''), fc.constantFrom(' ', '\t', ''), fc.oneof(
    fc.bigInt({ min: -1n, max: 1n << 70n }).map(String),
    fc.tuple(fc.bigInt({ min: 0n, max: 1n << 65n }), fc.bigInt({ min: 0n, max: 1n << 65n })).map(([a, b]) => `${a}-${b}`),
    fc.constantFrom('0x10', '010', '0x', '-', '1-', '-1', 'SHA256:', 'SHA256:AAAA', realKeyLine),
    fc.string({ maxLength: 30 }),
  )).map(([k, s, v]) => `${k}${s}${v}`),
);
const krlSpec = fc.array(krlSpecLine, { maxLength: 6 }).map((l) => l.join('\n'));

export const PROPERTIES: readonly FuzzProperty[] = [
  {
    name: 'SSH signature blobs: arbitrary bytes parse or refuse with CertError',
    numRuns: 400,
    property: fc.property(fc.oneof(fc.uint8Array({ maxLength: 200 }), mutated(goodEd.signature)), (b) => {
      expectCertErrorOrValue(() => parseSignature(b));
    }),
  },
  {
    name: 'userauth: a mutated key blob, signature or algorithm never verifies and never throws anything but CertError',
    numRuns: 300,
    property: fc.property(
      fc.constantFrom(...keyNames),
      fc.constantFrom(...ALGORITHMS),
      fc.constantFrom('key', 'sig', 'data', 'none'),
      fc.uint8Array({ minLength: 1, maxLength: 64 }),
      fc.nat(),
      (keyName, algorithm, part, noise, at) => {
        const key = keys[keyName]!;
        const real = signed(key, algorithm);
        const bend = (b: Uint8Array): Uint8Array => {
          const c = Uint8Array.from(b);
          const i = at % c.length;
          c[i] = c[i]! ^ (noise[0]! | 1);
          return c;
        };
        const input = {
          algorithm,
          keyBlob: part === 'key' ? bend(real.keyBlob) : real.keyBlob,
          signature: part === 'sig' ? bend(real.signature) : real.signature,
          signedData: part === 'data' ? bend(real.signedData) : real.signedData,
          crypto: nodeCrypto,
        };
        let verified = false;
        timed(() => {
          try {
            verifyUserauthSignature(input);
            verified = true;
          } catch (e) {
            if (!refusedProperly(e)) throw e;
          }
        });
        // Untouched inputs may verify, but only under the key's own algorithm (no curve or
        // type confusion); a bent input never does.
        if (verified) {
          if (part !== 'none') throw new Error(`a ${part} bent at ${at} still verified`);
          const own = publicPart(key).type;
          if (algorithm !== own) throw new Error(`a ${own} key verified under ${algorithm}`);
        }
      },
    ),
  },
  {
    name: 'userauth: arbitrary blobs refuse with CertError',
    numRuns: 300,
    property: fc.property(fc.constantFrom(...ALGORITHMS), fc.uint8Array({ maxLength: 160 }), fc.uint8Array({ maxLength: 160 }), (algorithm, keyBlob, signature) => {
      expectCertErrorOrValue(() => {
        verifyUserauthSignature({ algorithm, keyBlob, signature, signedData: new Uint8Array(8), crypto: nodeCrypto });
        throw new Error('random bytes verified');
      });
    }),
  },
  {
    name: 'SFTP stream parser: arbitrary packets in arbitrary chunks never throw and memory stays bounded',
    numRuns: 300,
    property: fc.property(
      fc.array(fc.tuple(fc.boolean(), fc.oneof(sftpPacket, fc.uint8Array({ maxLength: 64 }))), { maxLength: 40 }),
      fc.integer({ min: 1, max: 17 }),
      (packets, chunk) => {
        const p = new SftpStreamParser();
        timed(() => {
          for (const [fromClient, bytes] of packets) {
            for (let i = 0; i < bytes.length; i += chunk) {
              const part = bytes.subarray(i, i + chunk);
              if (fromClient) p.clientData(part);
              else p.serverData(part);
            }
          }
          p.end();
        });
      },
    ),
  },
  {
    name: 'web terminal protocol: client frames (gateway side) and server frames (app side) never throw',
    numRuns: 500,
    property: fc.property(terminalJson, (text) => {
      timed(() => {
        const c = parseTerminalClientMessage(text);
        if (typeof c !== 'object' || c === null || typeof c.ok !== 'boolean') throw new Error('no verdict');
        const s = parseTerminalServerMessage(text);
        if (s !== undefined && typeof s.type !== 'string') throw new Error('a server message without a type');
      });
    }),
  },
  {
    name: 'authorized_keys and known_hosts text: parse or CertError',
    numRuns: 400,
    property: fc.property(keyText, (text) => {
      expectCertErrorOrValue(() => parseAuthorizedKeys(text));
      expectCertErrorOrValue(() => parseKnownHosts(text));
    }),
  },
  {
    name: 'KRL spec text: parse or CertError',
    numRuns: 400,
    property: fc.property(krlSpec, fc.boolean(), (text, scoped) => {
      expectCertErrorOrValue(() => parseKrlSpec(text, { crypto: nodeCrypto, caKey: scoped ? publicPart(keys['ed25519']!) : 'none' }));
    }),
  },
];
