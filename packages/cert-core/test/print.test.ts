// printCertificate and its time formatting without running ssh-keygen: vectors recorded from
// Debian 12's ssh-keygen (OpenSSH 9.2p1, glibc 2.36, TZ=UTC unless noted). The live comparison
// is in cert-interop.test.ts.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ed25519 } from '@noble/curves/ed25519.js';
import { nodeCrypto } from '../src/crypto/node.js';
import {
  CertError,
  DEFAULT_USER_EXTENSIONS,
  flagOption,
  forceCommand,
  formatCertificate,
  keySigner,
  nobleCrypto,
  publicPart,
  signCertificate,
  sourceAddress,
  stringOption,
} from '../src/index.js';
import type { CertOption, Certificate, Ed25519PrivateKey, PublicKey } from '../src/index.js';
import { formatCertTime, formatValidity, printCertificate } from '../src/cert/print.js';

const U64_MAX = 0xffffffffffffffffn;

function seededEd25519(fill: number): Ed25519PrivateKey {
  const seed = new Uint8Array(32).fill(fill);
  return { type: 'ssh-ed25519', seed, publicKey: ed25519.getPublicKey(seed) };
}

const CA = seededEd25519(1);
const SUBJECT = seededEd25519(2);

/**
 * The certificate of the golden vector: what `ssh-keygen -s ca -I 'my id' -n a,b -z 42
 * -V 20240101000000Z:20350101000000Z -O source-address=10.0.0.0/8 -O force-command=/bin/true
 * -O extension:foo@example.com=bar -O critical:zzz@example.com` makes, with fixed keys (seeds
 * of 0x01 and 0x02 bytes) and a zero nonce so that it is reproducible.
 */
function goldenCert(): Certificate {
  return signCertificate(
    {
      key: publicPart(SUBJECT),
      kind: 'user',
      serial: 42n,
      keyId: 'my id',
      principals: ['a', 'b'],
      validAfter: 1704067200n,
      validBefore: 2051222400n,
      criticalOptions: [forceCommand('/bin/true'), sourceAddress(['10.0.0.0/8']), flagOption('zzz@example.com')],
      extensions: [stringOption('foo@example.com', 'bar'), ...DEFAULT_USER_EXTENSIONS.map(flagOption)],
    },
    keySigner(nobleCrypto, CA),
    { crypto: nobleCrypto, nonce: new Uint8Array(32) },
  );
}

const GOLDEN_LINE =
  'ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAIIE5dw6ofRdfVqNUZsNMfszLjYqRtO43ol32D1uPybOUAAAAAAAAACoAAAABAAAABW15IGlkAAAACgAAAAFhAAAAAWIAAAAAZZIAgAAAAAB6QyuAAAAAXQAAAA1mb3JjZS1jb21tYW5kAAAADQAAAAkvYmluL3RydWUAAAAOc291cmNlLWFkZHJlc3MAAAAOAAAACjEwLjAuMC4wLzgAAAAPenp6QGV4YW1wbGUuY29tAAAAAAAAAKAAAAAPZm9vQGV4YW1wbGUuY29tAAAABwAAAANiYXIAAAAVcGVybWl0LVgxMS1mb3J3YXJkaW5nAAAAAAAAABdwZXJtaXQtYWdlbnQtZm9yd2FyZGluZwAAAAAAAAAWcGVybWl0LXBvcnQtZm9yd2FyZGluZwAAAAAAAAAKcGVybWl0LXB0eQAAAAAAAAAOcGVybWl0LXVzZXItcmMAAAAAAAAAAAAAADMAAAALc3NoLWVkMjU1MTkAAAAgiojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1wAAABTAAAAC3NzaC1lZDI1NTE5AAAAQFoHu3ALpZ/HhAiAk7NCXnHEYbBGyFk+cOU273wcwMnbm0Ontj8weXdlYf851kzgW2OOImQzeLbmzDxfM4hjSgw=';

// TZ=UTC ssh-keygen -L -f g-cert.pub, with GOLDEN_LINE in g-cert.pub. Note the trailing space
// after "Principals:", "Critical Options:" and "Extensions:".
const GOLDEN_LISTING = `g-cert.pub:
        Type: ssh-ed25519-cert-v01@openssh.com user certificate
        Public key: ED25519-CERT SHA256:4A9jyZBOhnKZvcGQ6TRFbf5Gymb41AfYvYaVmWHD+G4
        Signing CA: ED25519 SHA256:fe85JkIjo8VPe+XqXJGH5Mau1EMFdK1OdKvJUFicyA8 (using ssh-ed25519)
        Key ID: "my id"
        Serial: 42
        Valid: from 2024-01-01T00:00:00 to 2035-01-01T00:00:00
        Principals: 
                a
                b
        Critical Options: 
                force-command /bin/true
                source-address 10.0.0.0/8
                zzz@example.com UNKNOWN FLAG OPTION
        Extensions: 
                foo@example.com UNKNOWN OPTION: 00000003626172 (len 7)
                permit-X11-forwarding
                permit-agent-forwarding
                permit-port-forwarding
                permit-pty
                permit-user-rc
`;

function lines(text: string): string[] {
  return text.split('\n');
}

function withOptions(critical: readonly CertOption[], extensions: readonly CertOption[]): Certificate {
  return { ...goldenCert(), criticalOptions: critical, extensions };
}

describe('printCertificate', () => {
  it('prints the golden vector exactly as ssh-keygen -L did, with either backend', () => {
    const cert = goldenCert();
    assert.equal(formatCertificate(cert), GOLDEN_LINE);
    assert.equal(printCertificate(cert, { crypto: nobleCrypto, path: 'g-cert.pub' }), GOLDEN_LISTING);
    assert.equal(printCertificate(cert, { crypto: nodeCrypto, path: 'g-cert.pub' }), GOLDEN_LISTING);
  });

  it('heads the text as ssh-keygen does for file, later line and stdin, and not at all without a path', () => {
    const cert = goldenCert();
    const first = (o: { path?: string; lineNumber?: number }): string => lines(printCertificate(cert, { crypto: nodeCrypto, ...o }))[0]!;
    assert.equal(first({ path: 'dir/x-cert.pub' }), 'dir/x-cert.pub:');
    assert.equal(first({ path: 'dir/x-cert.pub', lineNumber: 3 }), 'dir/x-cert.pub:3:');
    assert.equal(first({ path: '-' }), '(stdin):1:');
    assert.equal(first({ path: '-', lineNumber: 2 }), '(stdin):2:');
    assert.equal(first({}), '        Type: ssh-ed25519-cert-v01@openssh.com user certificate');
    assert.equal(printCertificate(cert, { crypto: nodeCrypto }), GOLDEN_LISTING.slice('g-cert.pub:\n'.length));
  });

  it('prints "(none)" for empty principals and option lists, and the host kind', () => {
    const cert: Certificate = { ...goldenCert(), kind: 'host', principals: [], criticalOptions: [], extensions: [] };
    const out = lines(printCertificate(cert, { crypto: nodeCrypto }));
    assert.equal(out[0], '        Type: ssh-ed25519-cert-v01@openssh.com host certificate');
    assert.deepEqual(out.slice(6), ['        Principals: (none)', '        Critical Options: (none)', '        Extensions: (none)', '']);
  });

  it('prints principals verbatim, even empty ones, and the key id between plain quotes', () => {
    const cert: Certificate = { ...goldenCert(), keyId: 'say "hi"\\', principals: ['', 'a b'] };
    const out = lines(printCertificate(cert, { crypto: nodeCrypto }));
    assert.equal(out[3], '        Key ID: "say "hi"\\"');
    assert.deepEqual(out.slice(6, 9), ['        Principals: ', '                ', '                a b']);
  });

  it('names options only where ssh-keygen knows them, in the order they come', () => {
    const data = (s: string): CertOption => ({ name: 'data@x', data: new TextEncoder().encode(s) });
    const cert = withOptions(
      [flagOption('verify-required'), flagOption('permit-pty'), { name: 'no-touch-required', data: Uint8Array.of(1, 0xab) }, sourceAddress(['::1/128']), flagOption('')],
      [forceCommand('/bin/sh'), flagOption('no-touch-required'), flagOption('verify-required'), data('\n'), flagOption('permit-pty'), flagOption('permit-pty')],
    );
    const out = lines(printCertificate(cert, { crypto: nodeCrypto })).slice(9);
    assert.deepEqual(out, [
      '        Critical Options: ',
      '                verify-required',
      '                permit-pty UNKNOWN FLAG OPTION',
      '                no-touch-required UNKNOWN OPTION: 01ab (len 2)',
      '                source-address ::1/128',
      '                 UNKNOWN FLAG OPTION',
      '        Extensions: ',
      '                force-command UNKNOWN OPTION: 000000072f62696e2f7368 (len 11)',
      '                no-touch-required',
      '                verify-required UNKNOWN FLAG OPTION',
      '                data@x UNKNOWN OPTION: 0a (len 1)',
      '                permit-pty',
      '                permit-pty',
      '',
    ]);
  });

  it('throws CertError where ssh-keygen stops on a corrupt option', () => {
    const bad: [CertOption[], CertOption[]][] = [
      [[], [{ name: 'permit-pty', data: Uint8Array.of(0) }]],
      [[{ name: 'verify-required', data: Uint8Array.of(0, 0, 0, 0) }], []],
      [[{ name: 'force-command', data: Uint8Array.of(0, 0, 0, 9, 0x61) }], []],
      [[{ name: 'source-address', data: Uint8Array.of(0, 0, 0, 1, 0x61, 0x62) }], []],
      [[stringOption('force-command', 'a\0b')], []],
    ];
    for (const [critical, extensions] of bad) {
      assert.throws(
        () => printCertificate(withOptions(critical, extensions), { crypto: nodeCrypto }),
        (e: unknown) => e instanceof CertError && e.code === 'ERR_MALFORMED' && e.message.startsWith('cert-core: '),
      );
    }
  });

  it('labels security-key subjects and shows the RSA CA signature algorithm', () => {
    const rsa = nodeCrypto.generate('ssh-rsa', { bits: 2048 });
    const ec = nodeCrypto.generate('ecdsa-sha2-nistp256');
    const subjects: [PublicKey, string][] = [
      [{ type: 'sk-ssh-ed25519@openssh.com', publicKey: SUBJECT.publicKey, application: 'ssh:' }, 'ED25519-SK-CERT'],
      [{ type: 'sk-ecdsa-sha2-nistp256@openssh.com', curve: 'nistp256', point: (ec as { point: Uint8Array }).point, application: 'ssh:' }, 'ECDSA-SK-CERT'],
      [publicPart(ec), 'ECDSA-CERT'],
      [publicPart(rsa), 'RSA-CERT'],
    ];
    for (const [key, label] of subjects) {
      const cert = signCertificate(
        { key, kind: 'user', serial: U64_MAX, keyId: '', principals: ['u'], validAfter: 0n, validBefore: U64_MAX },
        keySigner(nodeCrypto, rsa),
        { crypto: nodeCrypto, algorithm: 'rsa-sha2-256' },
      );
      const out = lines(printCertificate(cert, { crypto: nodeCrypto }));
      assert.equal(out[0], `        Type: ${cert.certType} user certificate`);
      assert.match(out[1]!, new RegExp(`^ {8}Public key: ${label} SHA256:[A-Za-z0-9+/]{43}$`));
      assert.match(out[2]!, /^ {8}Signing CA: RSA SHA256:[A-Za-z0-9+/]{43} \(using rsa-sha2-256\)$/);
      assert.deepEqual(out.slice(3, 6), ['        Key ID: ""', '        Serial: 18446744073709551615', '        Valid: forever']);
    }
  });

  it('refuses misuse with TypeError', () => {
    const cert = goldenCert();
    assert.throws(() => printCertificate(cert, {} as never), TypeError);
    assert.throws(() => printCertificate(cert, { crypto: nodeCrypto, lineNumber: 0 }), TypeError);
    assert.throws(() => printCertificate(cert, { crypto: nodeCrypto, timeZoneOffsetMinutes: 1.5 }), TypeError);
    assert.throws(() => formatValidity(-1n, 5n), TypeError);
    assert.throws(() => formatCertTime(U64_MAX + 1n), TypeError);
    assert.throws(() => formatCertTime(1n, 24 * 60 + 1), TypeError);
  });
});

describe('formatValidity', () => {
  it('uses the forever, before, after and from/to forms', () => {
    assert.equal(formatValidity(0n, U64_MAX), 'forever');
    assert.equal(formatValidity(0n, 1893456000n), 'before 2030-01-01T00:00:00');
    assert.equal(formatValidity(1893456000n, U64_MAX), 'after 2030-01-01T00:00:00');
    assert.equal(formatValidity(1n, U64_MAX - 1n), 'from 1970-01-01T00:00:01 to 219250468-01-00T15:30:07');
    assert.equal(formatValidity(1704067200n, 2051222400n), 'from 2024-01-01T00:00:00 to 2035-01-01T00:00:00');
    // 0 and 2^64-1 mean "forever" only in display; other values are printed as times.
    assert.equal(formatValidity(0n, 0n), 'before 1970-01-01T00:00:00');
  });
});

describe('formatCertTime', () => {
  // ssh-keygen -s ca -I x -n a -V 0x0:0x<t> u.pub; TZ=UTC ssh-keygen -L -f u-cert.pub
  const UTC_VECTORS: [bigint, string][] = [
    [2n, '1970-01-01T00:00:02'],
    [86399n, '1970-01-01T23:59:59'],
    [951782400n, '2000-02-29T00:00:00'],
    [4102444800n, '2100-01-01T00:00:00'],
    [253402300799n, '9999-12-31T23:59:59'],
    [253402300800n, '10000-01-01T00:00:00'],
    // Past the year glibc can hold: truncated year, month/day "01-00", unpadded %Y.
    [67768036191676799n, '-2147481749-12-31T23:59:59'],
    [67768036191676800n, '-2147481748-01-00T00:00:00'],
    [135536014792054923n, '5-01-00T01:02:03'],
    [135536014476518459n, '-5-01-00T00:00:59'],
    [135536046159657600n, '999-01-00T00:00:00'],
    [135536074750281600n, '1905-01-00T00:00:00'],
    [203304112993180799n, '-2147481749-01-00T23:59:59'],
    [1084202172485504433n, '-2737266-01-00T06:20:33'],
    // Clamped to 2^63-1 first.
    [0x7fffffffffffffffn, '219250468-01-00T15:30:07'],
    [0x8000000000000000n, '219250468-01-00T15:30:07'],
    [U64_MAX, '219250468-01-00T15:30:07'],
  ];
  for (const [t, want] of UTC_VECTORS) {
    it(`${t} -> ${want}`, () => assert.equal(formatCertTime(t), want));
  }

  it('shifts by a fixed offset as ssh-keygen under TZ=<+0530>-05:30, <-01>1, <+05>-5, <-05>5', () => {
    assert.equal(formatCertTime(2n, 330), '1970-01-01T05:30:02');
    assert.equal(formatCertTime(1700000000n, 330), '2023-11-15T03:43:20');
    assert.equal(formatCertTime(2n, -60), '1969-12-31T23:00:02');
    assert.equal(formatCertTime(1700000000n, -60), '2023-11-14T21:13:20');
    // The UTC year overflows: glibc never applies the offset.
    assert.equal(formatCertTime(0x7fffffffffffffffn, 330), '219250468-01-00T15:30:07');
    assert.equal(formatCertTime(0xf0c2ab7c54b790n, 300), '-2147481748-01-00T01:00:00');
    // Only the local year overflows: local year and clock, month and day of the UTC pass.
    assert.equal(formatCertTime(0xf0c2ab7c549b70n, 300), '-2147481748-12-31T04:00:00');
    // Neither overflows (year 2147485547 wraps only in strftime's tm_year + 1900).
    assert.equal(formatCertTime(0xf0c2ab7c549b70n, -300), '-2147481749-12-31T18:00:00');
  });
});
