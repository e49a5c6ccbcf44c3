// authorized_keys lines: tables of valid and invalid lines (rules from sshd's auth-options.c),
// round trips, ssh-keygen reading what we write, and property tests. The real sshd judges the
// same option tables in text-authorized-keys-sshd.test.ts.
import { after, before, describe, it, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import fc from 'fast-check';
import { SSHD_PATH, hasTool, startSshd, tempDir } from '@portcullis/harness';
import type { SshdHandle, TempDir } from '@portcullis/harness';
import { nodeCrypto } from '../src/crypto/node.js';
import { CertError } from '../src/errors.js';
import { toBase64 } from '../src/wire/bytes.js';
import { encodePublicKey, fingerprintSha256 } from '../src/keys/public-key.js';
import { keySigner, publicPart } from '../src/keys/signature.js';
import { formatCertificate, formatPublicKey } from '../src/keys/line.js';
import { signCertificate } from '../src/cert/certificate.js';
import type { PublicKey } from '../src/keys/types.js';
import {
  formatAuthorizedKeyLine,
  interpretAuthorizedKeyOptions,
  parseAuthorizedKeyLine,
  parseAuthorizedKeys,
} from '../src/text/authorized-keys.js';
import type { AuthorizedKeyLine, AuthorizedKeyOption } from '../src/text/authorized-keys.js';

/** Option fields sshd accepts; each still lets the key log in (checked against sshd below). */
const VALID_OPTIONS = [
  'restrict',
  'restrict,pty',
  'NO-PTY,No-Agent-Forwarding',
  'no-port-forwarding,no-X11-forwarding,no-user-rc',
  'port-forwarding,agent-forwarding,x11-forwarding,pty,user-rc',
  'command="true"',
  'Restrict,COMMAND="echo \\"hi\\" >/dev/null"',
  'command="x  y\tz"',
  'from="127.0.0.1"',
  'from="127.0.0.0/8,!10.0.0.1,*.example.com"',
  'environment="FOO=bar baz"',
  'environment="A=1",environment="A=2",environment="B_2="',
  'expiry-time="20991231"',
  'expiry-time="209912312359Z"',
  'expiry-time="20991231235959UTC"',
  'permitopen="localhost:80",permitopen="[::1]:22",permitopen="*:*",permitopen="h/443",permitopen=":22"',
  'permitlisten="8080",permitlisten="localhost:9000",permitlisten="*"',
  'tunnel="0"',
  'tunnel="any"',
  'no-touch-required',
  'verify-required',
  'no-verify-required,touch-required',
  ',restrict,,no-pty,',
];

/** Option fields sshd refuses ("bad key options"), so the key cannot log in. */
const INVALID_OPTIONS = [
  'foo',
  'no-restrict',
  'no-cert-authority',
  'pty="x"',
  'restrict=""',
  'command=true',
  'command="true',
  'command=""x',
  'command="a",command="b"',
  'principals="root"',
  'from="127.0.0.1",from="127.0.0.1"',
  'no-command="true"',
  'restrict;no-pty',
  'environment="NOEQUALS"',
  'environment="=x"',
  'environment="A-B=x"',
  'environment=""',
  'expiry-time="2099"',
  'expiry-time="20991301"',
  'expiry-time="20990132"',
  'expiry-time="2099123124"',
  'expiry-time="20990101X"',
  'expiry-time="19700101Z"',
  'expiry-time="209912312460Z"',
  'expiry-time=""',
  'permitopen="localhost"',
  'permitopen="localhost:0"',
  'permitopen="localhost:65536"',
  'permitopen="localhost:"',
  'permitopen="[::1"',
  'permitopen="[::1]x22"',
  'permitopen="[::1]"',
  'permitlisten="0"',
  'tunnel="-1"',
  'tunnel="x"',
  'tunnel="2147483646"',
  'tunnel=""',
];

/**
 * Fields sshd accepts through C library leniency (service names from /etc/services, strtonum
 * taking a sign or leading blank) that we refuse rather than imitate.
 */
const STRICTER_OPTIONS = ['permitopen="localhost:ssh"', 'tunnel="+1"', 'permitopen="h: 22"'];

const ED = publicPart(nodeCrypto.generate('ssh-ed25519'));
const EC = publicPart(nodeCrypto.generate('ecdsa-sha2-nistp384'));
const RSA = publicPart(nodeCrypto.generate('ssh-rsa', { bits: 2048 }));
const SK: PublicKey = { type: 'sk-ssh-ed25519@openssh.com', publicKey: (ED as { publicKey: Uint8Array }).publicKey, application: 'ssh:' };
const KEY = formatPublicKey(ED);
const CERT = signCertificate(
  { key: ED, kind: 'user', serial: 1n, keyId: 'k', principals: ['alice'], validAfter: 0n, validBefore: 0xffffffffffffffffn, extensions: [] },
  keySigner(nodeCrypto, nodeCrypto.generate('ssh-ed25519')),
  { crypto: nodeCrypto },
);

const isMalformed = (e: unknown) => e instanceof CertError && e.code === 'ERR_MALFORMED';
const isRefused = (e: unknown) => e instanceof CertError && e.code === 'ERR_REFUSED';
const parse = (opts: string) => parseAuthorizedKeyLine(`${opts} ${KEY} the comment`);

test('authorized_keys: a plain key line', () => {
  for (const key of [ED, EC, RSA, SK]) {
    const l = parseAuthorizedKeyLine(`${formatPublicKey(key)} alice@laptop  two  spaces`);
    assert.deepEqual(encodePublicKey(l.key), encodePublicKey(key));
    assert.equal(l.comment, 'alice@laptop  two  spaces');
    assert.deepEqual(l.rawOptions, []);
    assert.equal(l.options.pty, true);
    assert.equal(l.options.certAuthority, false);
  }
  const tabs = parseAuthorizedKeyLine(` \t${ED.type}\t${toBase64(encodePublicKey(ED))}\t\tc \r`);
  assert.equal(tabs.comment, 'c');
  assert.equal(parseAuthorizedKeyLine(KEY).comment, '');
});

test('authorized_keys: options mean what sshd makes of them', () => {
  let l = parse('restrict,pty');
  assert.deepEqual([l.options.restrict, l.options.pty, l.options.portForwarding, l.options.agentForwarding, l.options.x11Forwarding, l.options.userRc], [true, true, false, false, false, false]);
  l = parse('pty,restrict');
  assert.equal(l.options.pty, false, 'restrict after pty takes it away again');
  l = parse('NO-PTY,No-Agent-Forwarding,no-port-forwarding,no-X11-forwarding,no-user-rc');
  assert.deepEqual(l.rawOptions.map((o) => o.name), ['no-pty', 'no-agent-forwarding', 'no-port-forwarding', 'no-x11-forwarding', 'no-user-rc']);
  assert.deepEqual([l.options.pty, l.options.agentForwarding, l.options.portForwarding, l.options.x11Forwarding, l.options.userRc, l.options.restrict], [false, false, false, false, false, false]);
  l = parse('command="echo \\"hi\\" there",no-pty');
  assert.equal(l.options.command, 'echo "hi" there');
  assert.deepEqual(l.rawOptions, [{ name: 'command', value: 'echo "hi" there' }, { name: 'no-pty' }]);
  // Only a backslash before a quote escapes; others stay, as opt_dequote keeps them.
  assert.equal(parse('command="a\\b\\\\x"').options.command, 'a\\b\\\\x');
  assert.equal(parse('command="a\\\\"",no-pty').options.command, 'a\\"', 'the escape pairs from the left');
  l = parse('cert-authority,principals="alice,bob"');
  assert.deepEqual([l.options.certAuthority, l.options.principals], [true, ['alice', 'bob']]);
  assert.deepEqual(parse('from="*.example.com,!bad.example.com,10.0.0.0/8"').options.from, ['*.example.com', '!bad.example.com', '10.0.0.0/8']);
  l = parse('environment="FOO=bar baz",environment="FOO=other",environment="X_1=",environment="Y=a=b"');
  assert.deepEqual(l.options.environment, [{ name: 'FOO', value: 'bar baz' }, { name: 'X_1', value: '' }, { name: 'Y', value: 'a=b' }]);
  assert.equal(l.rawOptions.length, 4, 'the raw list keeps the shadowed setting');
  l = parse('expiry-time="20300101"');
  assert.deepEqual(l.options.expiryTime, { text: '20300101', utc: false, seconds: BigInt(Date.UTC(2030, 0, 1) / 1000) });
  l = parse('expiry-time="203001011200Z",expiry-time="20290101120030utc",expiry-time="20310101"');
  assert.deepEqual(l.options.expiryTime, { text: '20290101120030utc', utc: true, seconds: BigInt(Date.UTC(2029, 0, 1, 12, 0, 30) / 1000) });
  assert.equal(parse('expiry-time="20300231Z"').options.expiryTime?.seconds, BigInt(Date.UTC(2030, 2, 3) / 1000), 'Feb 31 rolls over as timegm does');
  l = parse('permitopen="host:80",permitopen="[::1]:22",permitopen="*:*",permitopen="h/443",permitlisten="8080",permitlisten="localhost:9000"');
  assert.deepEqual(l.options.permitOpen, ['host:80', '[::1]:22', '*:*', 'h/443']);
  assert.deepEqual(l.options.permitListen, ['*:8080', 'localhost:9000']);
  assert.equal(parse('tunnel="0"').options.tunnel, 0);
  assert.equal(parse('tunnel="ANY"').options.tunnel, 'any');
  assert.equal(parse('tunnel="2147483645"').options.tunnel, 2147483645);
  l = parse('no-touch-required,verify-required');
  assert.deepEqual([l.options.noTouchRequired, l.options.verifyRequired], [true, true]);
  assert.equal(parse('no-touch-required,touch-required').options.noTouchRequired, false);
  assert.equal(parse('verify-required,no-verify-required').options.verifyRequired, false);
  // sshd skips empty entries between commas and a comma before the key.
  assert.deepEqual(parse(',restrict,,no-pty,').rawOptions, [{ name: 'restrict' }, { name: 'no-pty' }]);
  assert.equal(parse('command="x  y\tz"').options.command, 'x  y\tz', 'blanks inside quotes belong to the value');
});

test('authorized_keys: the option tables', () => {
  for (const opts of VALID_OPTIONS) assert.doesNotThrow(() => parse(opts), opts);
  for (const opts of [...INVALID_OPTIONS, ...STRICTER_OPTIONS]) assert.throws(() => parse(opts), isMalformed, opts);
});

test('authorized_keys: bad key parts and certificates are refused', () => {
  const certLine = formatCertificate(CERT);
  const b64 = toBase64(encodePublicKey(ED));
  const bad = [
    '',
    '   ',
    '# comment',
    'restrict',
    'restrict   ',
    ED.type,
    `${ED.type} !!!!`,
    `${ED.type} ${b64.slice(0, -4)}`,
    `ssh-rsa ${b64}`,
    `ecdsa-sha2-nistp256 ${toBase64(encodePublicKey(EC))}`,
    certLine,
    `cert-authority ${certLine}`,
    `${ED.type} ${toBase64(CERT.raw)}`,
    `restrict ${ED.type} ${toBase64(CERT.raw)}`,
    '1024 35 1234567 old-rsa1',
    `restrict"x y" ${KEY}`,
    `${KEY}\0`,
    `${KEY}\nrestrict ${KEY}`,
  ];
  for (const line of bad) assert.throws(() => parseAuthorizedKeyLine(line), isMalformed, JSON.stringify(line.slice(0, 80)));
  assert.throws(
    () => parseAuthorizedKeyLine(certLine),
    (e: unknown) => isMalformed(e) && /certificate/.test((e as Error).message),
  );
  // A key type OpenSSH knows and we do not: no options are read, and the type is unsupported.
  assert.throws(() => parseAuthorizedKeyLine(`ssh-dss ${b64}`), (e: unknown) => e instanceof CertError && e.code !== 'ERR_REFUSED');
});

test('authorized_keys: a whole file, comments and blank lines skipped, errors name the line', () => {
  const text = ['# keys for deploy', '', `   ${KEY} first`, '\t# indented comment', `restrict,command="uptime" ${formatPublicKey(EC)} second\r`, '   ', `cert-authority,principals="alice" ${formatPublicKey(RSA)}`, ''].join('\n');
  const lines = parseAuthorizedKeys(text);
  assert.deepEqual(lines.map((l) => l.lineNumber), [3, 5, 7]);
  assert.deepEqual(lines.map((l) => l.comment), ['first', 'second', '']);
  assert.equal(lines[1]!.options.command, 'uptime');
  assert.equal(lines[2]!.options.certAuthority, true);
  assert.deepEqual(parseAuthorizedKeys(''), []);

  const broken = `${KEY}\n\nno-such-option ${KEY}\n`;
  assert.throws(
    () => parseAuthorizedKeys(broken),
    (e: unknown) => isMalformed(e) && /authorized_keys:3/.test((e as Error).message) && (e as CertError).where?.startsWith('authorized_keys:3') === true,
  );
  const dss = `${KEY}\nssh-dss ${toBase64(encodePublicKey(ED))}\n`;
  assert.throws(() => parseAuthorizedKeys(dss), (e: unknown) => e instanceof CertError && /authorized_keys:2/.test(e.message));
  assert.throws(() => parseAuthorizedKeys(7 as unknown as string), TypeError);
});

function roundTrip(l: AuthorizedKeyLine): void {
  const text = formatAuthorizedKeyLine({ rawOptions: l.rawOptions, key: l.key, comment: l.comment });
  const back = parseAuthorizedKeyLine(text);
  assert.deepEqual(back.rawOptions, l.rawOptions);
  assert.deepEqual(back.options, l.options);
  assert.deepEqual(encodePublicKey(back.key), encodePublicKey(l.key));
  assert.equal(back.comment, l.comment);
  assert.equal(formatAuthorizedKeyLine(back), text, 'formatting is stable');
}

test('authorized_keys: parse then format round trips', () => {
  for (const opts of VALID_OPTIONS) roundTrip(parse(opts));
  assert.equal(
    formatAuthorizedKeyLine({ rawOptions: [{ name: 'Cert-Authority' }, { name: 'principals', value: 'alice,bob' }], key: ED, comment: 'portcullis user CA' }),
    `cert-authority,principals="alice,bob" ${KEY} portcullis user CA`,
  );
  assert.equal(formatAuthorizedKeyLine({ rawOptions: [{ name: 'command', value: 'say "hi"' }], key: ED }), `command="say \\"hi\\"" ${KEY}`);
  assert.equal(formatAuthorizedKeyLine({ key: ED }), KEY);
});

test('authorized_keys: formatting refuses what would not read back', () => {
  const refusals: { rawOptions?: AuthorizedKeyOption[]; comment?: string }[] = [
    { rawOptions: [{ name: 'command', value: 'ends with \\' }] },
    { rawOptions: [{ name: 'no-such-thing' }] },
    { rawOptions: [{ name: 'pty', value: 'x' }] },
    { rawOptions: [{ name: 'command' }] },
    { rawOptions: [{ name: '' }] },
    { rawOptions: [{ name: 'no pty' }] },
    { rawOptions: [{ name: 'principals', value: 'a' }] },
    { rawOptions: [{ name: 'command', value: 'a\nb' }] },
    { rawOptions: [{ name: 'expiry-time', value: 'tomorrow' }] },
    { comment: 'two\nlines' },
    { comment: ' leading' },
    { comment: 'trailing ' },
  ];
  for (const r of refusals) assert.throws(() => formatAuthorizedKeyLine({ ...r, key: ED }), isRefused, JSON.stringify(r));
  assert.throws(() => formatAuthorizedKeyLine(undefined as never), TypeError);
  assert.throws(() => formatAuthorizedKeyLine({ key: ED, rawOptions: [{ name: 5 as unknown as string }] }), TypeError);
});

test('authorized_keys: interpretAuthorizedKeyOptions refuses lists the parser would not give', () => {
  for (const raw of [[{ name: 'no-restrict' }], [{ name: 'restrict', value: '' }], [{ name: 'command' }], [{ name: 'bogus', value: 'x' }]]) {
    assert.throws(() => interpretAuthorizedKeyOptions(raw), isMalformed, JSON.stringify(raw));
  }
});

test('authorized_keys: ssh-keygen -l reads the lines we write', { skip: !hasTool('ssh-keygen') && 'ssh-keygen missing' }, () => {
  const dir = tempDir();
  try {
    const keys = [ED, EC, RSA];
    const lines = [
      formatAuthorizedKeyLine({ key: ED, comment: 'plain' }),
      formatAuthorizedKeyLine({ rawOptions: [{ name: 'command', value: 'echo "a b" \\x' }, { name: 'restrict' }, { name: 'pty' }], key: EC, comment: 'with options' }),
      formatAuthorizedKeyLine({ rawOptions: [{ name: 'cert-authority' }, { name: 'principals', value: 'alice,bob' }, { name: 'from', value: '10.0.0.0/8,!10.1.0.0/16' }], key: RSA }),
    ];
    writeFileSync(dir.file('authorized_keys'), lines.join('\n') + '\n');
    // ssh-keygen -l -f authorized_keys: one fingerprint per key line, options skipped as sshd skips them.
    const r = spawnSync('ssh-keygen', ['-l', '-f', dir.file('authorized_keys')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 });
    assert.equal(r.status, 0, r.stderr);
    const out = r.stdout.trim().split('\n');
    assert.equal(out.length, 3);
    out.forEach((o, i) => assert.equal(o.split(' ')[1], fingerprintSha256(nodeCrypto, keys[i]!)));
    assert.deepEqual(parseAuthorizedKeys(lines.join('\n')).map((l) => l.comment), ['plain', 'with options', '']);
  } finally {
    dir.remove();
  }
});

const flagName = fc.constantFrom('restrict', 'cert-authority', 'pty', 'no-pty', 'user-rc', 'no-user-rc', 'port-forwarding', 'no-port-forwarding', 'agent-forwarding', 'no-agent-forwarding', 'x11-forwarding', 'no-x11-forwarding', 'touch-required', 'no-touch-required', 'verify-required', 'no-verify-required');
const freeText = fc.string({ maxLength: 30 }).filter((s) => !/[\n\0]/.test(s) && !s.endsWith('\\'));
const option: fc.Arbitrary<AuthorizedKeyOption> = fc.oneof(
  flagName.map((name) => ({ name })),
  freeText.map((value) => ({ name: 'command', value })),
  fc.tuple(fc.stringMatching(/^[A-Za-z0-9_]{1,8}$/), freeText).map(([n, v]) => ({ name: 'environment', value: `${n}=${v}` })),
  fc.tuple(fc.stringMatching(/^[a-z0-9.*-]{0,12}$/), fc.integer({ min: 1, max: 65535 })).map(([h, p]) => ({ name: 'permitopen', value: `${h}:${p}` })),
  fc.integer({ min: 1, max: 65535 }).map((p) => ({ name: 'permitlisten', value: String(p) })),
  fc.oneof(fc.constant('any'), fc.integer({ min: 0, max: 0x7ffffffd }).map(String)).map((value) => ({ name: 'tunnel', value })),
  fc.date({ min: new Date('1971-01-01'), max: new Date('9999-01-01'), noInvalidDate: true }).map((d) => ({ name: 'expiry-time', value: `${d.toISOString().slice(0, 19).replace(/[-T:]/g, '')}Z` })),
);
const uniqueSingles = (opts: AuthorizedKeyOption[]) => opts.filter((o) => o.name !== 'command').concat(opts.filter((o) => o.name === 'command').slice(0, 1));

test('property: formatted options read back the same', () => {
  const comment = fc.string({ maxLength: 20 }).map((s) => s.replace(/[\s\0]/g, '_'));
  fc.assert(
    fc.property(fc.array(option, { maxLength: 8 }), comment, fc.constantFrom(ED, EC, SK), (opts, c, key) => {
      const options = uniqueSingles(opts);
      const text = formatAuthorizedKeyLine({ rawOptions: options, key, comment: c });
      const back = parseAuthorizedKeyLine(text);
      assert.deepEqual(back.rawOptions, options.map((o) => ({ ...o })));
      assert.equal(back.comment, c);
      assert.equal(formatAuthorizedKeyLine(back), text);
    }),
    { numRuns: 1000 },
  );
});

test('property: random input never throws anything but CertError', () => {
  const pieces = fc.constantFrom('restrict', ',', '"', '\\"', '=', ' ', '\t', 'command', 'no-', 'pty', 'cert-authority', 'principals="a"', KEY, ED.type, '#', 'AAAA', 'expiry-time="', '2030010112', 'Z');
  const text = fc.oneof(fc.string({ maxLength: 80 }), fc.array(pieces, { maxLength: 12 }).map((a) => a.join('')));
  fc.assert(
    fc.property(text, (s) => {
      for (const f of [() => parseAuthorizedKeyLine(s), () => parseAuthorizedKeys(s), () => parseAuthorizedKeyLine(`${s} ${KEY}`)]) {
        try {
          f();
        } catch (e) {
          assert.ok(e instanceof CertError, String(e));
        }
      }
    }),
    { numRuns: 3000 },
  );
});

/**
 * Exit code of the stock ssh client against 127.0.0.1 (255 when it could not authenticate or
 * verify the host). Spawned with stdin ignored: the harness's run() writes to stdin and an
 * early-exiting child then raises an uncaught EPIPE.
 */
function sshExit(port: number, identity: string, o: { certificate?: string; knownHosts?: string; options?: readonly string[] } = {}): Promise<number> {
  const opt = (s: string) => ['-o', s];
  const args = [
    '-F', '/dev/null',
    ...(o.options ?? []).flatMap(opt),
    ...opt('IdentitiesOnly=yes'), ...opt('IdentityAgent=none'), ...opt(`IdentityFile=${identity}`),
    ...(o.certificate ? opt(`CertificateFile=${o.certificate}`) : []),
    ...opt('BatchMode=yes'),
    ...opt(`StrictHostKeyChecking=${o.knownHosts ? 'yes' : 'no'}`),
    ...opt(`UserKnownHostsFile=${o.knownHosts ?? '/dev/null'}`),
    ...opt('GlobalKnownHostsFile=/dev/null'), ...opt('UpdateHostKeys=no'), ...opt('ConnectTimeout=10'),
    '-p', String(port), 'root@127.0.0.1', '--', 'true',
  ];
  return new Promise((resolve, reject) => {
    const child = spawn('ssh', args, { stdio: ['ignore', 'ignore', 'ignore'], timeout: 20_000 });
    child.once('error', reject);
    child.once('close', (code) => resolve(code ?? 255));
  });
}

/** ssh-keygen -q -t ed25519 -N '' -f <file>, synchronously (no stdin, see sshExit). */
function keygen(file: string, comment = ''): void {
  const r = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', file], { stdio: 'ignore', timeout: 10_000 });
  if (r.status !== 0) throw new Error(`ssh-keygen -f ${file} failed`);
}

describe('authorized_keys: the real sshd judges the same lines', { skip: !(existsSync(SSHD_PATH) && hasTool('ssh') && hasTool('ssh-keygen')) && 'needs sshd, ssh, ssh-keygen' }, () => {
  let dir: TempDir;
  let sshd: SshdHandle;
  const ak = () => dir.file('authorized_keys');

  /**
   * One authorized_keys file, one ssh-keygen key per case: sshd only looks at the line holding
   * the key offered, so the cases run side by side against one file.
   */
  function userKeys(names: readonly string[]): string[] {
    return names.map((name) => {
      keygen(dir.file(name), name);
      return readFileSync(dir.file(`${name}.pub`), 'utf8').trim();
    });
  }

  /** Whether sshd lets each key in (ssh exits 255 when it does not); a few at a time, under MaxStartups. */
  async function logsIn(names: readonly string[], certificate?: string): Promise<boolean[]> {
    const out: boolean[] = new Array<boolean>(names.length);
    let next = 0;
    const worker = async () => {
      for (let k = next++; k < names.length; k = next++) {
        out[k] = (await sshExit(sshd.port, dir.file(names[k]!), certificate ? { certificate } : {})) !== 255;
      }
    };
    await Promise.all(Array.from({ length: 6 }, worker));
    return out;
  }

  before(async () => {
    dir = tempDir('portcullis-ak-');
    writeFileSync(ak(), '');
    // AuthorizedKeysCommand, because the harness config already says AuthorizedKeysFile none and
    // sshd keeps the first value; sshd runs the command and reads its output on every attempt.
    sshd = await startSshd({ dir: dir.path, extraConfig: [`AuthorizedKeysCommand /usr/bin/cat ${ak()}`, 'AuthorizedKeysCommandUser root'] });
  });
  after(async () => {
    await sshd?.stop();
    dir?.remove();
  });

  it('accepts every line we accept, refuses every line we refuse', async () => {
    const cases: [string, boolean, string][] = [
      ['', true, 'the plain key line'],
      ...VALID_OPTIONS.map((o): [string, boolean, string] => [o, true, `sshd refused ${o}`]),
      ...INVALID_OPTIONS.map((o): [string, boolean, string] => [o, false, `sshd accepted ${o}`]),
      ...STRICTER_OPTIONS.map((o): [string, boolean, string] => [o, true, `sshd now refuses ${o}: move it to INVALID_OPTIONS`]),
      // Parse, but their meaning refuses the login: an expired line, a CA line for a plain key.
      ['expiry-time="20000101"', false, 'expired'],
      ['cert-authority', false, 'plain key on a CA line'],
    ];
    const names = cases.map((_, i) => `id_case${i}`);
    const keys = userKeys(names);
    writeFileSync(ak(), cases.map(([opts], i) => (opts ? `${opts} ${keys[i]}` : keys[i])).join('\n') + '\n');
    const got = await logsIn(names);
    cases.forEach(([opts, want, why], i) => {
      assert.equal(got[i], want, why);
      if (opts !== '' && want && !STRICTER_OPTIONS.includes(opts)) assert.doesNotThrow(() => parseAuthorizedKeyLine(`${opts} ${keys[i]}`));
    });
  });

  it('a cert-authority line we format admits certificates for its principals only', async () => {
    const ca = nodeCrypto.generate('ecdsa-sha2-nistp256');
    const [userText] = userKeys(['id_alice']);
    const now = BigInt(Math.floor(Date.now() / 1000));
    const cert = signCertificate(
      { key: parseAuthorizedKeyLine(userText!).key, kind: 'user', serial: 9n, keyId: 'alice@portcullis', principals: ['alice'], validAfter: now - 60n, validBefore: now + 600n, extensions: [] },
      keySigner(nodeCrypto, ca),
      { crypto: nodeCrypto },
    );
    writeFileSync(dir.file('id_alice-cert.pub'), formatCertificate(cert) + '\n');
    const line = (principals: string) =>
      formatAuthorizedKeyLine({ rawOptions: [{ name: 'cert-authority' }, { name: 'principals', value: principals }, { name: 'from', value: '127.0.0.1' }], key: publicPart(ca), comment: 'portcullis user CA' });
    writeFileSync(ak(), line('bob,alice') + '\n');
    assert.deepEqual(await logsIn(['id_alice'], dir.file('id_alice-cert.pub')), [true]);
    writeFileSync(ak(), line('bob') + '\n');
    assert.deepEqual(await logsIn(['id_alice'], dir.file('id_alice-cert.pub')), [false]);
  });
});
