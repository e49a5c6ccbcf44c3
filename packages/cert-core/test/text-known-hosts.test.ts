// known_hosts lines: tables of valid and invalid lines (hostfile.c), matching checked against
// `ssh-keygen -H` (hashing) and `ssh-keygen -F` (lookup) on the same files, the lines we write
// used by the real ssh client against sshd, and property tests.
import { after, before, describe, it, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import fc from 'fast-check';
import { SSHD_PATH, hasTool, startSshd, tempDir } from '@portcullis/harness';
import type { SshdHandle, TempDir } from '@portcullis/harness';
import { nodeCrypto } from '../src/crypto/node.js';
import { nobleCrypto } from '../src/crypto/noble.js';
import { CertError } from '../src/errors.js';
import { toBase64 } from '../src/wire/bytes.js';
import { encodePublicKey } from '../src/keys/public-key.js';
import { formatCertificate, formatPublicKey, parsePublicKeyText } from '../src/keys/line.js';
import { keySigner, publicPart } from '../src/keys/signature.js';
import { signCertificate } from '../src/cert/certificate.js';
import type { PublicKey } from '../src/keys/types.js';
import {
  formatCertAuthorityLine,
  formatKnownHostsLine,
  hashKnownHostsEntry,
  hashKnownHostsName,
  knownHostsMatch,
  knownHostsName,
  parseKnownHosts,
  parseKnownHostsLine,
} from '../src/text/known-hosts.js';
import type { KnownHostsEntry } from '../src/text/known-hosts.js';

const ED = publicPart(nodeCrypto.generate('ssh-ed25519'));
const EC = publicPart(nodeCrypto.generate('ecdsa-sha2-nistp256'));
const CA = publicPart(nodeCrypto.generate('ssh-ed25519'));
const KEY = formatPublicKey(ED);
const isMalformed = (e: unknown) => e instanceof CertError && e.code === 'ERR_MALFORMED';
const isRefused = (e: unknown) => e instanceof CertError && e.code === 'ERR_REFUSED';

// `|1|salt|hash` for "web01" with a fixed salt, computed independently with node:crypto.
const SALT = Uint8Array.from({ length: 20 }, (_, i) => i + 1);
const hashed = (name: string, salt = SALT) => `|1|${toBase64(salt)}|${createHmac('sha1', salt).update(name).digest('base64')}`;

test('known_hosts: lines that parse', () => {
  let e = parseKnownHostsLine(`web01,web01.example.com,10.0.0.5 ${KEY} my comment`);
  assert.deepEqual(e.names, { kind: 'patterns', patterns: ['web01', 'web01.example.com', '10.0.0.5'] });
  assert.equal(e.marker, undefined);
  assert.equal(e.comment, 'my comment');
  assert.deepEqual(encodePublicKey(e.key), encodePublicKey(ED));
  e = parseKnownHostsLine(`@cert-authority\t*.example.com,!bad.example.com\t${formatPublicKey(CA)}`);
  assert.equal(e.marker, 'cert-authority');
  assert.deepEqual(e.names, { kind: 'patterns', patterns: ['*.example.com', '!bad.example.com'] });
  e = parseKnownHostsLine(`  @revoked * ${formatPublicKey(EC)}  `);
  assert.equal(e.marker, 'revoked');
  assert.equal(e.comment, '');
  e = parseKnownHostsLine(`${hashed('web01')} ${KEY}`);
  assert.equal(e.names.kind, 'hashed');
  e = parseKnownHostsLine(`@cert-authority ${hashed('[bastion]:3022')} ${KEY} c`);
  assert.equal(e.marker, 'cert-authority');
  assert.equal(parseKnownHostsLine(`[bastion.example.com]:3022,[10.0.0.1]:3022 ${KEY}`).names.kind, 'patterns');
});

test('known_hosts: lines that do not', () => {
  const salt19 = `|1|${toBase64(SALT.slice(1))}|${createHmac('sha1', SALT).update('x').digest('base64')}`;
  const unpadded = hashed('web01').replace(/=/g, '');
  const certLine = formatCertificate(
    signCertificate({ key: ED, kind: 'host', serial: 1n, keyId: 'h', principals: ['h'], validAfter: 0n, validBefore: 1n << 40n, extensions: [] }, keySigner(nodeCrypto, nodeCrypto.generate('ssh-ed25519')), { crypto: nodeCrypto }),
  );
  const bad = [
    '',
    '# just a comment',
    'web01',
    'web01 ',
    `web01 #${KEY}`,
    `@foo web01 ${KEY}`,
    `@revoked`,
    `@revoked ${KEY}`,
    `@revoked @cert-authority web01 ${KEY}`,
    `@CERT-AUTHORITY web01 ${KEY}`,
    `${salt19} ${KEY}`,
    `${unpadded} ${KEY}`,
    `|2|${toBase64(SALT)}|${toBase64(SALT)} ${KEY}`,
    `|1|${toBase64(SALT)} ${KEY}`,
    `|1|${toBase64(SALT)}|${toBase64(SALT)}|x ${KEY}`,
    `${hashed('a')},web01 ${KEY}`,
    `a,,b ${KEY}`,
    `a, ${KEY}`,
    `! ${KEY}`,
    `${'x'.repeat(1100)} ${KEY}`,
    `web01 ${certLine}`,
    `@cert-authority * ${certLine}`,
    `web01 ${ED.type} ${toBase64(encodePublicKey(EC))}`,
    `web01 ${ED.type} not-base64!`,
    'web01 1024 35 123456789',
    `web01 ${KEY}\0`,
  ];
  for (const line of bad) assert.throws(() => parseKnownHostsLine(line), isMalformed, JSON.stringify(line.slice(0, 90)));
  assert.throws(() => parseKnownHostsLine(`web01 ssh-dss ${toBase64(encodePublicKey(ED))}`), (e: unknown) => e instanceof CertError);
  assert.throws(() => parseKnownHostsLine(3 as unknown as string), TypeError);
});

test('known_hosts: a whole file; errors name the line', () => {
  const text = `# hosts\n\n  web01 ${KEY} a\r\n\t#x\n@cert-authority *.corp ${formatPublicKey(CA)}\n`;
  const entries = parseKnownHosts(text);
  assert.deepEqual(entries.map((e) => e.lineNumber), [3, 5]);
  assert.equal(entries[0]!.comment, 'a');
  assert.throws(
    () => parseKnownHosts(`web01 ${KEY}\n@bogus x ${KEY}\n`),
    (e: unknown) => isMalformed(e) && /known_hosts:2/.test((e as Error).message) && /^known_hosts:2/.test((e as CertError).where ?? ''),
  );
});

function entriesOf(lines: string[]): KnownHostsEntry[] {
  return parseKnownHosts(lines.join('\n'));
}

const names = (m: readonly KnownHostsEntry[]) => m.map((e) => e.lineNumber);

test('knownHostsMatch: OpenSSH semantics', () => {
  const entries = entriesOf([
    `web01,Web02.Example.COM ${KEY}`, // 1
    `[bastion]:3022 ${KEY}`, // 2
    `bastion ${formatPublicKey(EC)}`, // 3
    `*.example.com,!bad.example.com ${KEY}`, // 4
    `bad.example.com ${KEY}`, // 5: a negation elsewhere does not exclude this line
    `@cert-authority *.corp,[*.corp]:* ${formatPublicKey(CA)}`, // 6
    `@revoked * ${formatPublicKey(EC)}`, // 7
    `${hashed('web03')} ${KEY}`, // 8
    `${hashed('[web03]:2222')} ${KEY}`, // 9
    `db?.internal ${KEY}`, // 10
  ]);
  const m = (host: string, port?: number) => knownHostsMatch(entries, host, port);
  assert.deepEqual(names(m('web01').hostKeys), [1]);
  assert.deepEqual(names(m('WEB02.example.com').hostKeys), [1, 4], 'names compare case-insensitively');
  assert.deepEqual(names(m('web01', 22).hostKeys), [1], 'port 22 is the bare name');
  assert.deepEqual(names(m('web01', 2222).hostKeys), [], 'another port needs [host]:port');
  assert.deepEqual(names(m('bastion', 3022).hostKeys), [2]);
  assert.deepEqual(names(m('bastion').hostKeys), [3]);
  assert.deepEqual(names(m('bad.example.com').hostKeys), [5], 'the negated line is out, the other line stays');
  assert.deepEqual(names(m('good.example.com').hostKeys), [4]);
  assert.deepEqual(names(m('db1.internal').hostKeys), [10]);
  assert.deepEqual(names(m('db10.internal').hostKeys), []);
  assert.deepEqual(names(m('web03').hostKeys), [8]);
  assert.deepEqual(names(m('WEB03').hostKeys), [8], 'a hashed name is looked up lowercased');
  assert.deepEqual(names(m('web03', 2222).hostKeys), [9]);
  const corp = m('build.corp', 2200);
  assert.deepEqual([names(corp.hostKeys), names(corp.certAuthorities), names(corp.revoked)], [[], [6], [7]]);
  assert.deepEqual(names(m('build.corp').certAuthorities), [6]);
  assert.deepEqual(names(m('nowhere').revoked), [7], '@revoked * applies everywhere');
  assert.throws(() => knownHostsMatch(entries, ''), TypeError);
  assert.throws(() => knownHostsMatch(entries, 'h', 0), TypeError);
  assert.throws(() => knownHostsMatch(entries, 'h', 70000), TypeError);
  assert.throws(() => knownHostsMatch(entries, 'h', 22.5), TypeError);
  assert.equal(knownHostsName('::1'), '::1');
  assert.equal(knownHostsName('::1', 2222), '[::1]:2222');
});

test('hashKnownHostsName matches an independent HMAC-SHA1 and reads back', () => {
  const h = hashKnownHostsName('Web01', SALT);
  assert.equal(formatKnownHostsLine({ names: h, key: ED }), `${hashed('web01')} ${KEY}`);
  assert.throws(() => hashKnownHostsName('web01', SALT.slice(1)), TypeError);
  const [a, b] = hashKnownHostsEntry(parseKnownHostsLine(`web01,[web01]:2222 ${KEY} c`), nobleCrypto);
  assert.equal(a!.comment, 'c');
  assert.deepEqual(names(knownHostsMatch([{ ...a!, lineNumber: 1 }, { ...b!, lineNumber: 2 }], 'web01', 2222).hostKeys), [2]);
  const wild = parseKnownHostsLine(`*.corp ${KEY}`);
  assert.deepEqual(hashKnownHostsEntry(wild, nobleCrypto), [wild], 'wildcards stay as they are, as ssh-keygen -H leaves them');
});

test('formatKnownHostsLine and formatCertAuthorityLine', () => {
  assert.equal(formatCertAuthorityLine(['*.example.com', '[bastion.example.com]:3022'], CA, 'portcullis host CA'), `@cert-authority *.example.com,[bastion.example.com]:3022 ${formatPublicKey(CA)} portcullis host CA`);
  assert.equal(formatCertAuthorityLine(['*'], CA), `@cert-authority * ${formatPublicKey(CA)}`);
  assert.equal(formatKnownHostsLine({ marker: 'revoked', names: ['*'], key: EC }), `@revoked * ${formatPublicKey(EC)}`);
  for (const line of [`web01,!bad ${KEY} c`, `@cert-authority ${hashed('h')} ${KEY}`, `[h]:2222 ${KEY}`]) {
    const e = parseKnownHostsLine(line);
    assert.equal(formatKnownHostsLine(e), line);
  }
  const refusals: [readonly string[], string][] = [
    [[], ''],
    [[''], ''],
    [['a', ''], ''],
    [['a b'], ''],
    [['a,b'], ''],
    [['!'], ''],
    [['@x'], ''],
    [['#x'], ''],
    [['|1|x'], ''],
    [['a\nb'], ''],
    [['ok'], 'two\nlines'],
    [['ok'], ' padded'],
  ];
  for (const [patterns, comment] of refusals) {
    assert.throws(() => formatCertAuthorityLine(patterns, CA, comment), isRefused, JSON.stringify([patterns, comment]));
  }
  assert.throws(() => formatKnownHostsLine({ names: { kind: 'hashed', salt: SALT.slice(2), hash: SALT }, key: ED }), isRefused);
  assert.throws(() => formatCertAuthorityLine('*' as unknown as string[], CA), TypeError);
  assert.throws(() => formatKnownHostsLine({ names: ['a'], key: { type: 'ssh-ed25519-cert-v01@openssh.com' } as unknown as PublicKey }), TypeError);
});

/** Line numbers `ssh-keygen -F name -f file` reports ("# Host name found: line N"). */
function sshKeygenFind(file: string, name: string): number[] {
  const r = spawnSync('ssh-keygen', ['-F', name, '-f', file], { encoding: 'utf8', timeout: 10_000 });
  return [...r.stdout.matchAll(/^# Host .* found: line (\d+)/gm)].map((x) => Number(x[1]));
}

test('known_hosts: ssh-keygen -H hashes and ssh-keygen -F finds what we find', { skip: !hasTool('ssh-keygen') && 'ssh-keygen missing' }, () => {
  const dir = tempDir();
  try {
    const plain = [
      `web01,Web02.Example.COM,10.0.0.5 ${KEY} c1`,
      `[bastion]:3022,[10.0.0.9]:3022 ${formatPublicKey(EC)}`,
      `*.example.com,!bad.example.com ${KEY} wild`,
      `bad.example.com,::1 ${KEY}`,
      `@cert-authority *.corp,[*.corp]:* ${formatPublicKey(CA)} ca`,
      `@revoked db?.internal ${formatPublicKey(EC)}`,
      `# comment`,
      `[::1]:2222,fe80::1 ${KEY}`,
    ].join('\n') + '\n';
    writeFileSync(dir.file('plain'), plain);
    writeFileSync(dir.file('hashed'), plain);
    // ssh-keygen -H -f hashed: each plain name on its own |1|salt|hash line; markers and wildcards kept.
    assert.equal(spawnSync('ssh-keygen', ['-H', '-f', dir.file('hashed')], { stdio: 'ignore', timeout: 10_000 }).status, 0);
    const hashedText = readFileSync(dir.file('hashed'), 'utf8');
    assert.match(hashedText, /^\|1\|/m);
    const queries: [string, number][] = [
      ['web01', 22], ['web02.example.com', 22], ['10.0.0.5', 22], ['bastion', 3022], ['10.0.0.9', 3022], ['bastion', 22],
      ['x.example.com', 22], ['bad.example.com', 22], ['build.corp', 22], ['build.corp', 2200], ['db1.internal', 22],
      ['db12.internal', 22], ['::1', 22], ['::1', 2222], ['fe80::1', 22], ['web01', 2222], ['nothing', 22],
    ];
    for (const file of ['plain', 'hashed']) {
      const entries = parseKnownHosts(readFileSync(dir.file(file), 'utf8'));
      for (const [host, port] of queries) {
        const m = knownHostsMatch(entries, host, port);
        const ours = [...m.hostKeys, ...m.certAuthorities, ...m.revoked].map((e) => e.lineNumber!).sort((a, b) => a - b);
        assert.deepEqual(ours, sshKeygenFind(dir.file(file), knownHostsName(host, port)), `${file}: ${host}:${port}`);
      }
    }
    // And the other way: a file hashed by us, searched by ssh-keygen.
    const ours = parseKnownHosts(plain).flatMap((e) => hashKnownHostsEntry(e, nodeCrypto)).map((e) => formatKnownHostsLine(e));
    writeFileSync(dir.file('ours'), ours.join('\n') + '\n');
    for (const [host, port] of queries) {
      const want = knownHostsMatch(parseKnownHosts(ours.join('\n')), host, port);
      const count = want.hostKeys.length + want.certAuthorities.length + want.revoked.length;
      assert.equal(sshKeygenFind(dir.file('ours'), knownHostsName(host, port)).length, count, `ours: ${host}:${port}`);
    }
  } finally {
    dir.remove();
  }
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

describe('known_hosts: the ssh client trusts the lines we write', { skip: !(existsSync(SSHD_PATH) && hasTool('ssh') && hasTool('ssh-keygen')) && 'needs sshd, ssh, ssh-keygen' }, () => {
  let dir: TempDir;
  let sshd: SshdHandle;
  let hostKey: PublicKey;
  const hostCa = nodeCrypto.generate('ecdsa-sha2-nistp256');

  before(async () => {
    dir = tempDir('portcullis-kh-');
    keygen(dir.file('id_user'));
    keygen(dir.file('host'));
    hostKey = parsePublicKeyText(readFileSync(dir.file('host.pub'), 'utf8')).key;
    const cert = signCertificate(
      { key: hostKey, kind: 'host', serial: 1n, keyId: 'test host', principals: ['127.0.0.1'], validAfter: 0n, validBefore: 0xffffffffffffffffn, extensions: [] },
      keySigner(nodeCrypto, hostCa),
      { crypto: nodeCrypto },
    );
    writeFileSync(dir.file('host-cert.pub'), formatCertificate(cert) + '\n');
    writeFileSync(dir.file('authorized_keys'), readFileSync(dir.file('id_user.pub')));
    sshd = await startSshd({
      dir: dir.path,
      hostKey: { privateKeyPath: dir.file('host'), certificatePath: dir.file('host-cert.pub') },
      extraConfig: [`AuthorizedKeysCommand /usr/bin/cat ${dir.file('authorized_keys')}`, 'AuthorizedKeysCommandUser root'],
    });
  });
  after(async () => {
    await sshd?.stop();
    dir?.remove();
  });

  async function connects(knownHosts: string[], options: string[] = []): Promise<boolean> {
    writeFileSync(dir.file('known_hosts'), knownHosts.join('\n') + '\n');
    return (await sshExit(sshd.port, dir.file('id_user'), { knownHosts: dir.file('known_hosts'), options })) === 0;
  }

  it('trusts a host certificate through our @cert-authority line, and a hashed host key line', async () => {
    const name = knownHostsName('127.0.0.1', sshd.port);
    const other = publicPart(nodeCrypto.generate('ecdsa-sha2-nistp256'));
    assert.equal(await connects([formatCertAuthorityLine([name], publicPart(hostCa), 'portcullis host CA')]), true);
    assert.equal(await connects([formatCertAuthorityLine(['[127.0.0.*]:*'], publicPart(hostCa))]), true);
    assert.equal(await connects([formatCertAuthorityLine(['[127.0.0.*]:*', `![127.0.0.1]:${sshd.port}`], publicPart(hostCa))]), false, 'negated');
    assert.equal(await connects([formatCertAuthorityLine([name], other)]), false, 'wrong CA');
    // Plain host key, hashed by us; the client must not be offered the certificate for this one.
    const plainOnly = ['HostKeyAlgorithms=ssh-ed25519'];
    assert.equal(await connects([formatKnownHostsLine({ names: hashKnownHostsName(name, nodeCrypto.randomBytes(20)), key: hostKey })], plainOnly), true);
    // With nothing under [host]:port, ssh looks again under the bare name (see knownHostsMatch)...
    const bare = formatKnownHostsLine({ names: hashKnownHostsName('127.0.0.1', nodeCrypto.randomBytes(20)), key: hostKey });
    assert.equal(await connects([bare], plainOnly), true, 'bare-name fallback');
    // ...but not when [host]:port holds any other plain key, of any type: that is a changed host key.
    const otherEd = publicPart(nodeCrypto.generate('ssh-ed25519'));
    assert.equal(await connects([formatKnownHostsLine({ names: [name], key: otherEd }), bare], plainOnly), false, 'changed key, no fallback');
    assert.equal(await connects([formatKnownHostsLine({ names: [name], key: other }), bare], plainOnly), false, 'a key of another type is a change too');
    // The same second look happens for a certificate whose CA is not listed under [host]:port.
    assert.equal(await connects([formatCertAuthorityLine(['127.0.0.1'], publicPart(hostCa))]), true, 'CA under the bare name');
    assert.equal(
      await connects([formatCertAuthorityLine([name], publicPart(hostCa)), formatKnownHostsLine({ marker: 'revoked', names: ['*'], key: publicPart(hostCa) })]),
      false,
      'revoked CA',
    );
  });
});

test('property: hashed names match exactly their own host, in any case', () => {
  const host = fc.stringMatching(/^[a-z0-9.-]{1,30}$/);
  fc.assert(
    fc.property(host, host, fc.integer({ min: 1, max: 65535 }), fc.uint8Array({ minLength: 20, maxLength: 20 }), (h, other, port, salt) => {
      const e: KnownHostsEntry = { names: hashKnownHostsName(knownHostsName(h, port), salt), key: ED, comment: '' };
      const back = parseKnownHostsLine(formatKnownHostsLine(e));
      assert.equal(knownHostsMatch([back], h.toUpperCase(), port).hostKeys.length, 1);
      assert.equal(knownHostsMatch([back], other, port).hostKeys.length, other === h ? 1 : 0);
    }),
    { numRuns: 300 },
  );
});

test('property: random input never throws anything but CertError', () => {
  const pieces = fc.constantFrom('@cert-authority', '@revoked', '@', ' ', '\t', '|1|', '|', ',', '!', '*', '?', '[h]:22', 'web01', '#', KEY, ED.type, toBase64(SALT), '=', 'AAAA');
  const text = fc.oneof(fc.string({ maxLength: 80 }), fc.array(pieces, { maxLength: 12 }).map((a) => a.join('')));
  fc.assert(
    fc.property(text, (s) => {
      for (const f of [() => parseKnownHostsLine(s), () => parseKnownHosts(s), () => parseKnownHostsLine(`${s} ${KEY}`)]) {
        try {
          const r = f();
          if (Array.isArray(r)) knownHostsMatch(r, 'web01', 22);
        } catch (e) {
          assert.ok(e instanceof CertError, String(e));
        }
      }
    }),
    { numRuns: 3000 },
  );
});
