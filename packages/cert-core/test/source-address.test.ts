// source-address: the OpenSSH addr_match_cidr_list rules (addrmatch.c, addr.c), checked
// against tables, against ssh-keygen (which validates the list when signing with -O
// source-address=...), and with property tests.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { spawnSync } from 'node:child_process';
import { hasTool, tempDir } from '@portcullis/harness';
import { CertError } from '../src/errors.js';
import {
  formatIpAddress,
  formatSourceAddress,
  parseIpAddress,
  parseSourceAddressList,
  sourceAddressAllows,
} from '../src/check/source-address.js';

const isMalformed = (e: unknown) => e instanceof CertError && e.code === 'ERR_MALFORMED';

/** [list, peers it admits, peers it refuses]. */
const MATCHES: [string, string[], string[]][] = [
  ['10.0.0.0/8', ['10.1.2.3', '10.0.0.0', '10.255.255.255', '::ffff:10.1.2.3', '::FFFF:10.0.0.1'], ['11.0.0.1', '9.255.255.255', '::a01:203', '::1']],
  ['10.0.0.1', ['10.0.0.1', '::ffff:10.0.0.1'], ['10.0.0.2', '10.0.0.0']],
  ['10.0.0.1/32', ['10.0.0.1'], ['10.0.0.3']],
  ['192.0.2.128/25', ['192.0.2.128', '192.0.2.255'], ['192.0.2.127', '192.0.3.128']],
  ['172.16.0.0/12', ['172.31.255.255', '172.16.0.1'], ['172.32.0.0', '172.15.255.255']],
  ['0.0.0.0/0', ['1.2.3.4', '255.255.255.255', '::ffff:8.8.8.8'], ['::1', '2001:db8::1']],
  ['::1/128', ['::1', '0:0:0:0:0:0:0:1', '0000::0001'], ['::2', '::', '127.0.0.1']],
  ['::1', ['::1'], ['::ffff:0.0.0.1', '0.0.0.1']],
  ['2001:db8::/32', ['2001:db8::1', '2001:DB8:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF', '2001:db8:0:0:0:0:1.2.3.4'], ['2001:db9::1', '2001:db7:ffff::', '10.0.0.1']],
  ['2001:db8::/33', ['2001:db8:7fff::1'], ['2001:db8:8000::']],
  ['fe80::/10', ['fe80::1', 'febf:ffff::1'], ['fec0::1', 'fe80::1%eth0']],
  ['::/0', ['::1', '2001:db8::1', 'ffff::'], ['10.0.0.1', '::ffff:10.0.0.1']],
  // sshd sees a v4-mapped peer as plain IPv4, so a v6 entry covering ::ffff:0:0/96 never matches it.
  ['::ffff:0:0/96', [], ['::ffff:10.0.0.1', '10.0.0.1']],
  ['::ffff:10.0.0.0/104', [], ['::ffff:10.0.0.1']],
  ['192.0.2.1,2001:db8::/32,10.0.0.0/8', ['192.0.2.1', '2001:db8::5', '10.9.9.9', '::ffff:192.0.2.1'], ['192.0.2.2', '2001:db9::', '11.0.0.0']],
  ['10.0.0.0/08', ['10.200.0.1'], ['11.0.0.1']],
  ['1:2:3:4:5:6:7::', ['1:2:3:4:5:6:7:0'], ['1:2:3:4:5:6:7:1']],
  ['::10.0.0.1', ['::a00:1'], ['10.0.0.1']],
];

/** Lists sshd (and ssh-keygen) call invalid. */
const INVALID = [
  '',
  ',',
  '10.0.0.0/8,',
  ',10.0.0.0/8',
  '10.0.0.0/8,,::1',
  '10.0.0.1/8',
  '10.0.0.0/33',
  '10.0.0.0/',
  '10.0.0.0/8/8',
  '10.0.0.0/-8',
  '10.0.0.0/+8',
  '/8',
  '1.0.0.0/0',
  '256.0.0.0/8',
  '10.0.0.0 /8',
  ' 10.0.0.0/8',
  '10.0.0.0/8, 192.0.2.0/24',
  'example.com',
  'localhost',
  '*',
  '10.0.0.*',
  '!10.0.0.0/8',
  '::/129',
  '::1/127',
  '2001:db8:8000::/32',
  '1:2:3:4:5:6:7:8:9',
  '1::2::3',
  ':1::',
  '1::2:',
  ':::',
  '12345::',
  'fe80::1%eth0',
  'fe80::1%1',
  '1:2:3:4:5:6:7:8::',
  '::1.2.3.4.5',
  '::1.2.3',
  '1.2.3.4::',
  'g::1',
  '10.0.0.0/999999999999999999999',
  'ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255/128,0000:0000:0000:0000:0000:0000:0000:0000:0000/128',
  '0000:0000:0000:0000:0000:0000:0000:0000:0/128',
];

/**
 * Lists glibc's getaddrinfo (and so sshd) accepts through inet_aton's shorthands, which we
 * refuse on purpose: `010` is octal to glibc, so guessing would admit the wrong network.
 */
const STRICTER = ['10.1', '1.2.3', '010.0.0.1', '10.0.0.0/8,10.1.2'];

test('source-address: peers admitted and refused', () => {
  for (const [list, yes, no] of MATCHES) {
    const parsed = parseSourceAddressList(list);
    for (const p of yes) {
      assert.equal(sourceAddressAllows(list, p), true, `${list} should admit ${p}`);
      assert.equal(sourceAddressAllows(parsed, p), true, `${list} (parsed) should admit ${p}`);
    }
    for (const p of no) assert.equal(sourceAddressAllows(list, p), false, `${list} should refuse ${p}`);
  }
});

test('source-address: invalid lists throw ERR_MALFORMED, whatever the peer', () => {
  for (const list of [...INVALID, ...STRICTER]) {
    assert.throws(() => parseSourceAddressList(list), isMalformed, JSON.stringify(list));
    // A bad entry after a matching one still invalidates the list, as in sshd.
    assert.throws(() => sourceAddressAllows(`10.0.0.0/8,${list}`, '10.0.0.1'), isMalformed, JSON.stringify(list));
  }
});

test('source-address: the error names the entry', () => {
  assert.throws(
    () => parseSourceAddressList('192.0.2.0/24,10.0.0.1/8'),
    (e: unknown) => isMalformed(e) && (e as CertError).where === 'source-address[1]' && /10\.0\.0\.1\/8/.test((e as CertError).message),
  );
});

test('source-address: a peer that is not an address is refused, not an error', () => {
  for (const peer of ['', 'localhost', '10.0.0.1:22', '[::1]', 'fe80::1%eth0', '10.0.0.01', '10.0.0.1/32', ' 10.0.0.1']) {
    assert.equal(sourceAddressAllows('0.0.0.0/0,::/0', peer), false, peer);
  }
});

test('source-address: misuse is a TypeError', () => {
  assert.throws(() => sourceAddressAllows('10.0.0.0/8', 42 as unknown as string), TypeError);
  assert.throws(() => parseSourceAddressList(undefined as unknown as string), TypeError);
  assert.throws(() => sourceAddressAllows({} as unknown as string, '10.0.0.1'), TypeError);
  assert.throws(() => formatSourceAddress([1 as unknown as string]), TypeError);
});

test('formatSourceAddress: canonical text, validated for issuance', () => {
  assert.equal(formatSourceAddress(['10.0.0.0/8']), '10.0.0.0/8');
  assert.equal(formatSourceAddress(['2001:DB8:0::/32', '192.0.2.7']), '2001:db8::/32,192.0.2.7');
  assert.equal(formatSourceAddress('0:0:0:0:0:0:0:1,10.0.0.0/08'), '::1,10.0.0.0/8');
  assert.equal(formatSourceAddress(['::ffff:10.0.0.0/104']), '::ffff:10.0.0.0/104');
  for (const bad of [[], [''], ['10.0.0.1/8'], ['example.com'], ['10.0.0.0/8,11.0.0.0/8'], ['10.1']]) {
    assert.throws(() => formatSourceAddress(bad), isMalformed, JSON.stringify(bad));
  }
});

test('formatIpAddress: RFC 5952 forms', () => {
  const cases: [string, string][] = [
    ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
    ['0:0:0:0:0:0:0:0', '::'],
    ['1:0:0:0:0:0:0:0', '1::'],
    ['::ffff:192.0.2.1', '::ffff:192.0.2.1'],
    ['FE80::ABCD', 'fe80::abcd'],
  ];
  for (const [input, want] of cases) assert.equal(formatIpAddress(parseIpAddress(input)!), want, input);
});

test('source-address: ssh-keygen agrees on which lists are valid', { skip: !hasTool('ssh-keygen') && 'ssh-keygen missing' }, () => {
  const dir = tempDir();
  try {
    // spawnSync with no stdin: the harness's run() writes stdin and can hit EPIPE when ssh-keygen exits at once.
    const ok = (args: string[]) => spawnSync('ssh-keygen', args, { stdio: 'ignore', timeout: 10_000 }).status === 0;
    assert.ok(ok(['-q', '-t', 'ed25519', '-N', '', '-f', dir.file('ca')]));
    assert.ok(ok(['-q', '-t', 'ed25519', '-N', '', '-f', dir.file('user')]));
    // ssh-keygen -s ca -I x -O source-address=<list> user.pub: exits 255 "Invalid source-address list" when invalid.
    const sshKeygenAccepts = (list: string) => ok(['-q', '-s', dir.file('ca'), '-I', 'x', '-O', `source-address=${list}`, dir.file('user.pub')]);
    for (const [list] of MATCHES) assert.equal(sshKeygenAccepts(list), true, `ssh-keygen refused ${list}`);
    for (const list of INVALID) assert.equal(sshKeygenAccepts(list), false, `ssh-keygen accepted ${JSON.stringify(list)}`);
    // The ones we refuse on purpose: glibc reads them, and we say so rather than guess.
    for (const list of STRICTER) assert.equal(sshKeygenAccepts(list), true, `ssh-keygen now refuses ${list}: move it to INVALID`);
  } finally {
    dir.remove();
  }
});

const v4 = fc.uint8Array({ minLength: 4, maxLength: 4 });
const v6 = fc.uint8Array({ minLength: 16, maxLength: 16 });

function toBig(b: Uint8Array): bigint {
  return b.reduce((acc, x) => (acc << 8n) | BigInt(x), 0n);
}

function masked(bytes: Uint8Array, prefix: number): Uint8Array {
  const bits = BigInt(bytes.length * 8);
  const mask = prefix === 0 ? 0n : ((1n << BigInt(prefix)) - 1n) << (bits - BigInt(prefix));
  const v = toBig(bytes) & mask;
  return Uint8Array.from({ length: bytes.length }, (_, i) => Number((v >> (8n * BigInt(bytes.length - 1 - i))) & 0xffn));
}

test('property: a masked network admits exactly the peers sharing its prefix (bigint oracle)', () => {
  fc.assert(
    fc.property(fc.oneof(fc.tuple(v4, v4, fc.integer({ min: 0, max: 32 })), fc.tuple(v6, v6, fc.integer({ min: 0, max: 128 }))), ([net, peer, prefix]) => {
      const family = net.length === 4 ? 4 : 6;
      const netBytes = masked(net, prefix);
      const list = `${formatIpAddress({ family, bytes: netBytes })}/${prefix}`;
      const peerText = formatIpAddress({ family, bytes: peer });
      const expected = toBig(masked(peer, prefix)) === toBig(netBytes);
      // A v4-mapped v6 peer is IPv4 to sshd: it can never match a v6 network.
      const mapped = family === 6 && toBig(peer) >> 32n === 0xffffn;
      assert.equal(sourceAddressAllows(list, peerText), expected && !mapped);
      if (toBig(net) !== toBig(netBytes)) assert.throws(() => parseSourceAddressList(`${formatIpAddress({ family, bytes: net })}/${prefix}`), isMalformed);
    }),
    { numRuns: 2000 },
  );
});

test('property: formatted addresses parse back to the same bytes', () => {
  fc.assert(
    fc.property(fc.oneof(v4, v6, v6.map((b) => b.map((x, i) => (i % 3 === 0 ? 0 : x)))), (bytes) => {
      const family = bytes.length === 4 ? 4 : 6;
      const back = parseIpAddress(formatIpAddress({ family, bytes }));
      assert.ok(back);
      assert.deepEqual(back.bytes, bytes);
    }),
    { numRuns: 2000 },
  );
});

test('property: random input never throws anything but CertError', () => {
  const chars = fc.constantFrom(...'0123456789abcdefABCDEF.:/,%! x'.split(''));
  const text = fc.oneof(fc.string({ maxLength: 60 }), fc.array(chars, { maxLength: 60 }).map((a) => a.join('')));
  fc.assert(
    fc.property(text, text, (list, peer) => {
      try {
        const r = sourceAddressAllows(list, peer);
        assert.equal(typeof r, 'boolean');
      } catch (e) {
        assert.ok(e instanceof CertError && e.code === 'ERR_MALFORMED', String(e));
      }
      try {
        formatSourceAddress(list);
      } catch (e) {
        assert.ok(e instanceof CertError, String(e));
      }
    }),
    { numRuns: 5000 },
  );
});
