import { CertError, malformed } from '../errors.js';
import { bigintFromBytes } from '../wire/reader.js';
import { equalBytes, fromBase64 } from '../wire/bytes.js';
import type { EcdsaCurve, EcdsaPrivateKey, SigningPrivateKey } from './types.js';
import { CURVE_SIZE } from './types.js';
import { checkKeyPair, curveOrder, ecdsaPublicPoint, ed25519PublicKey } from './generate.js';
import { NOBLE_CURVES } from '../crypto/noble.js';

/**
 * The private key files other tools write: PKCS#8 (`BEGIN PRIVATE KEY`, RFC 5208 / RFC 5958),
 * PKCS#1 (`BEGIN RSA PRIVATE KEY`, RFC 8017 A.1.2) and SEC1 (`BEGIN EC PRIVATE KEY`, RFC 5915),
 * unencrypted. Read only: cert-core writes OpenSSH's own format.
 */

// ---------------------------------------------------------------------------------------------
// PEM armour (RFC 7468, with the RFC 1421 headers of legacy encrypted OpenSSL files)

export interface PemBlock {
  /** The text between `BEGIN ` and the dashes, e.g. `PRIVATE KEY`. */
  readonly label: string;
  /** `Name: value` lines before the body (only legacy OpenSSL files have them). */
  readonly headers: ReadonlyMap<string, string>;
  readonly body: Uint8Array;
}

const BEGIN = /^-----BEGIN ([A-Z0-9]+(?: [A-Z0-9]+)*)-----$/;
const END = /^-----END ([A-Z0-9]+(?: [A-Z0-9]+)*)-----$/;

/**
 * Every armoured block in `text`, in order. Text outside blocks is ignored, as OpenSSL does
 * (files often carry a description first). Inside a block anything but headers and base64 is
 * an error, and so is a block that is never closed.
 */
export function readPemBlocks(text: string, context = 'pem'): PemBlock[] {
  if (typeof text !== 'string') throw new TypeError('"text" expected a string');
  const blocks: PemBlock[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const begin = BEGIN.exec(lines[i]!.trim());
    if (!begin) continue;
    const label = begin[1]!;
    const where = `${context}.${label.toLowerCase().replace(/ /g, '-')}`;
    const headers = new Map<string, string>();
    let b64 = '';
    let closed = false;
    let inHeaders = true;
    for (i++; i < lines.length; i++) {
      const line = lines[i]!.trim();
      const end = END.exec(line);
      if (end) {
        if (end[1] !== label) malformed(where, `"BEGIN ${label}" closed by "END ${end[1]!}"`);
        closed = true;
        break;
      }
      if (BEGIN.test(line)) malformed(where, `"BEGIN ${label}" not closed before the next BEGIN`);
      const header = inHeaders ? /^([A-Za-z0-9-]+):\s*(.*)$/.exec(line) : null;
      if (header) {
        headers.set(header[1]!, header[2]!);
        continue;
      }
      inHeaders = false;
      if (!/^[A-Za-z0-9+/=]*$/.test(line)) malformed(where, `unexpected text in the base64 body at line ${i + 1}`);
      b64 += line;
    }
    if (!closed) malformed(where, `no "END ${label}" line`);
    const body = fromBase64(b64);
    if (body === undefined || body.length === 0) malformed(`${where}.base64`, 'invalid or empty base64 body');
    blocks.push({ label, headers, body });
  }
  return blocks;
}

/** Base64 lines of `width` characters between BEGIN and END lines, each line ending in "\n". */
export function writePem(label: string, body: string, width: number): string {
  let out = `-----BEGIN ${label}-----\n`;
  for (let i = 0; i < body.length; i += width) out += body.slice(i, i + width) + '\n';
  return out + `-----END ${label}-----\n`;
}

// ---------------------------------------------------------------------------------------------
// DER: just the universal types these three structures use, strictly (X.690 section 10).

const TAG_INTEGER = 0x02;
const TAG_BIT_STRING = 0x03;
const TAG_OCTET_STRING = 0x04;
const TAG_NULL = 0x05;
const TAG_OID = 0x06;
const TAG_SEQUENCE = 0x30;

class DerReader {
  private pos = 0;

  constructor(
    private readonly bytes: Uint8Array,
    private readonly context: string,
  ) {}

  fail(field: string, what: string): never {
    malformed(`${this.context}.${field}`, what);
  }

  peekTag(): number | undefined {
    return this.bytes[this.pos];
  }

  /** The contents of the next element, which must carry `tag`. */
  element(tag: number, field: string): Uint8Array {
    const b = this.bytes;
    if (this.pos >= b.length) this.fail(field, 'missing');
    const got = b[this.pos]!;
    if (got !== tag) this.fail(field, `expected tag 0x${tag.toString(16)}, got 0x${got.toString(16)}`);
    let p = this.pos + 1;
    if (p >= b.length) this.fail(field, 'truncated length');
    let len = b[p++]!;
    if (len === 0x80) this.fail(field, 'indefinite length is not DER');
    if (len > 0x80) {
      const n = len - 0x80;
      if (n > 4) this.fail(field, `length of ${n} bytes`);
      if (p + n > b.length) this.fail(field, 'truncated length');
      if (b[p] === 0) this.fail(field, 'length with a leading zero is not DER');
      len = 0;
      for (let k = 0; k < n; k++) len = len * 256 + b[p++]!;
      if (len < 0x80) this.fail(field, 'long-form length below 128 is not DER');
    }
    if (len > b.length - p) this.fail(field, `length ${len} exceeds ${b.length - p} remaining bytes`);
    this.pos = p + len;
    return b.subarray(p, p + len);
  }

  sequence(field: string): DerReader {
    return new DerReader(this.element(TAG_SEQUENCE, field), `${this.context}.${field}`);
  }

  /** A context-specific explicit tag [n] wrapping one element. */
  explicit(n: number, field: string): DerReader {
    return new DerReader(this.element(0xa0 | n, field), `${this.context}.${field}`);
  }

  /** A non-negative INTEGER in minimal two's complement. */
  integer(field: string, maxBytes = 2050): bigint {
    const v = this.element(TAG_INTEGER, field);
    if (v.length === 0) this.fail(field, 'empty INTEGER');
    if (v.length > maxBytes) this.fail(field, `INTEGER of ${v.length} bytes exceeds ${maxBytes}`);
    if ((v[0]! & 0x80) !== 0) this.fail(field, 'negative INTEGER');
    if (v.length > 1 && v[0] === 0 && (v[1]! & 0x80) === 0) this.fail(field, 'INTEGER with a superfluous leading zero');
    return bigintFromBytes(v);
  }

  smallInteger(field: string): number {
    return Number(this.integer(field, 4));
  }

  octetString(field: string): Uint8Array {
    return this.element(TAG_OCTET_STRING, field);
  }

  /** A BIT STRING of whole bytes (every key encoding uses whole bytes). */
  bitString(field: string, tag = TAG_BIT_STRING): Uint8Array {
    const v = this.element(tag, field);
    if (v.length === 0 || v[0] !== 0) this.fail(field, 'BIT STRING with unused bits');
    return v.subarray(1);
  }

  null(field: string): void {
    if (this.element(TAG_NULL, field).length !== 0) this.fail(field, 'NULL with contents');
  }

  /** An OBJECT IDENTIFIER in dotted form. */
  oid(field: string): string {
    const v = this.element(TAG_OID, field);
    if (v.length === 0) this.fail(field, 'empty OBJECT IDENTIFIER');
    const arcs: number[] = [];
    let acc = 0;
    let fresh = true;
    for (const byte of v) {
      if (fresh && byte === 0x80) this.fail(field, 'OBJECT IDENTIFIER arc with a leading 0x80 is not DER');
      acc = acc * 128 + (byte & 0x7f);
      if (acc > 0xffffffff) this.fail(field, 'OBJECT IDENTIFIER arc too large');
      fresh = (byte & 0x80) === 0;
      if (fresh) {
        arcs.push(acc);
        acc = 0;
      }
    }
    if (!fresh) this.fail(field, 'truncated OBJECT IDENTIFIER');
    const first = arcs[0]!;
    const head = first < 40 ? [0, first] : first < 80 ? [1, first - 40] : [2, first - 80];
    return [...head, ...arcs.slice(1)].join('.');
  }

  end(field = 'end'): void {
    if (this.pos !== this.bytes.length) this.fail(field, `${this.bytes.length - this.pos} trailing bytes`);
  }
}

// ---------------------------------------------------------------------------------------------
// The key structures

const OID_ED25519 = '1.3.101.112';
const OID_EC_PUBLIC_KEY = '1.2.840.10045.2.1';
const OID_RSA_ENCRYPTION = '1.2.840.113549.1.1.1';
const CURVE_OIDS: Readonly<Record<string, EcdsaCurve>> = {
  '1.2.840.10045.3.1.7': 'nistp256',
  '1.3.132.0.34': 'nistp384',
  '1.3.132.0.35': 'nistp521',
};
const ECDSA_TYPE = {
  nistp256: 'ecdsa-sha2-nistp256',
  nistp384: 'ecdsa-sha2-nistp384',
  nistp521: 'ecdsa-sha2-nistp521',
} as const;

function unsupported(where: string, what: string): never {
  throw new CertError('ERR_UNSUPPORTED', `cert-core: unsupported ${where}: ${what}`, { where, what });
}

/** The factors and exponents of an RSA key must agree before anyone signs with them. */
function checked<K extends SigningPrivateKey>(key: K): K {
  checkKeyPair(key);
  return key;
}

function curveOf(oid: string, where: string): EcdsaCurve {
  const curve = CURVE_OIDS[oid];
  if (curve === undefined) unsupported(where, `elliptic curve ${oid}`);
  return curve;
}

/** RSAPrivateKey (PKCS#1). */
export function decodePkcs1PrivateKey(der: Uint8Array, context = 'pkcs1'): SigningPrivateKey {
  const top = new DerReader(der, context);
  const s = top.sequence('rsaPrivateKey');
  top.end();
  const version = s.smallInteger('version');
  if (version === 1) unsupported(`${context}.version`, 'multi-prime RSA');
  if (version !== 0) s.fail('version', `expected 0, got ${version}`);
  const n = s.integer('modulus');
  const e = s.integer('publicExponent');
  const d = s.integer('privateExponent');
  const p = s.integer('prime1');
  const q = s.integer('prime2');
  s.integer('exponent1');
  s.integer('exponent2');
  const iqmp = s.integer('coefficient');
  s.end();
  // PKCS#1's coefficient is q^-1 mod p, the same value OpenSSH stores as iqmp.
  return checked({ type: 'ssh-rsa', n, e, d, p, q, iqmp });
}

/**
 * ECPrivateKey (SEC1 / RFC 5915). `curve` comes from the PKCS#8 algorithm identifier when there
 * is one; a bare SEC1 key must name its curve itself.
 */
export function decodeSec1PrivateKey(der: Uint8Array, context = 'sec1', curve?: EcdsaCurve): EcdsaPrivateKey {
  const top = new DerReader(der, context);
  const s = top.sequence('ecPrivateKey');
  top.end();
  const version = s.smallInteger('version');
  if (version !== 1) s.fail('version', `expected 1, got ${version}`);
  const scalar = s.octetString('privateKey');
  let named = curve;
  if (s.peekTag() === 0xa0) {
    const params = s.explicit(0, 'parameters');
    if (params.peekTag() !== TAG_OID) unsupported(`${context}.parameters`, 'explicit curve parameters');
    const c = curveOf(params.oid('namedCurve'), `${context}.parameters`);
    params.end();
    if (named !== undefined && c !== named) s.fail('parameters', `curve ${c} contradicts ${named}`);
    named = c;
  }
  let stated: Uint8Array | undefined;
  if (s.peekTag() === 0xa1) {
    const pk = s.explicit(1, 'publicKey');
    stated = pk.bitString('publicKey');
    pk.end();
  }
  s.end();
  if (named === undefined) return s.fail('parameters', 'no curve named');
  const size = CURVE_SIZE[named];
  if (scalar.length === 0 || scalar.length > size) s.fail('privateKey', `scalar of ${scalar.length} bytes for ${named}`);
  const d = bigintFromBytes(scalar);
  if (d < 1n || d >= curveOrder(named)) s.fail('privateKey', 'scalar outside 1..order-1');
  const point = ecdsaPublicPoint(named, d);
  if (stated !== undefined) {
    let given: Uint8Array;
    try {
      given = NOBLE_CURVES[named].Point.fromBytes(stated).toBytes(false);
    } catch {
      return s.fail('publicKey', `not a point on ${named}`);
    }
    if (!equalBytes(given, point)) s.fail('publicKey', 'does not match the private scalar');
  }
  return { type: ECDSA_TYPE[named], curve: named, point, d };
}

/** PrivateKeyInfo / OneAsymmetricKey (PKCS#8, RFC 5208 and RFC 5958). */
export function decodePkcs8PrivateKey(der: Uint8Array, context = 'pkcs8'): SigningPrivateKey {
  const top = new DerReader(der, context);
  const s = top.sequence('privateKeyInfo');
  top.end();
  const version = s.smallInteger('version');
  if (version !== 0 && version !== 1) s.fail('version', `expected 0 or 1, got ${version}`);
  const alg = s.sequence('privateKeyAlgorithm');
  const oid = alg.oid('algorithm');
  const inner = s.octetString('privateKey');
  if (s.peekTag() === 0xa0) s.element(0xa0, 'attributes');
  let publicKey: Uint8Array | undefined;
  if (version === 1 && s.peekTag() === 0x81) publicKey = s.bitString('publicKey', 0x81);
  s.end();
  switch (oid) {
    case OID_ED25519: {
      alg.end('parameters');
      const seedReader = new DerReader(inner, `${context}.privateKey`);
      const seed = seedReader.octetString('curvePrivateKey');
      seedReader.end();
      if (seed.length !== 32) malformed(`${context}.privateKey`, `Ed25519 seed of ${seed.length} bytes, expected 32`);
      const pk = ed25519PublicKey(seed);
      if (publicKey !== undefined && !equalBytes(publicKey, pk)) s.fail('publicKey', 'does not match the seed');
      return { type: 'ssh-ed25519', publicKey: pk, seed: seed.slice() };
    }
    case OID_EC_PUBLIC_KEY: {
      if (alg.peekTag() !== TAG_OID) unsupported(`${context}.privateKeyAlgorithm.parameters`, 'explicit curve parameters');
      const curve = curveOf(alg.oid('namedCurve'), `${context}.privateKeyAlgorithm`);
      alg.end();
      const key = decodeSec1PrivateKey(inner, `${context}.privateKey`, curve);
      if (publicKey !== undefined && !equalBytes(publicKey, key.point)) {
        s.fail('publicKey', 'does not match the private scalar');
      }
      return key;
    }
    case OID_RSA_ENCRYPTION:
      alg.null('parameters');
      alg.end();
      if (publicKey !== undefined) s.fail('publicKey', 'unexpected for RSA');
      return decodePkcs1PrivateKey(inner, `${context}.privateKey`);
    default:
      return unsupported(`${context}.privateKeyAlgorithm`, `key algorithm ${oid}`);
  }
}

/**
 * Decodes one PEM block holding a PKCS#8, PKCS#1 or SEC1 key. Encrypted forms (`ENCRYPTED
 * PRIVATE KEY`, legacy `Proc-Type: 4,ENCRYPTED`) and other key kinds are ERR_UNSUPPORTED.
 */
export function decodePemPrivateKey(block: PemBlock): SigningPrivateKey {
  const where = `pem ${block.label}`;
  if (block.label === 'ENCRYPTED PRIVATE KEY' || /ENCRYPTED/i.test(block.headers.get('Proc-Type') ?? '')) {
    unsupported(where, 'encrypted PKCS#8/PEM key; convert it with `ssh-keygen -p` or `openssl pkey`');
  }
  if (block.headers.size > 0) malformed(where, `unexpected header "${[...block.headers.keys()][0]!}"`);
  switch (block.label) {
    case 'PRIVATE KEY':
      return decodePkcs8PrivateKey(block.body);
    case 'RSA PRIVATE KEY':
      return decodePkcs1PrivateKey(block.body);
    case 'EC PRIVATE KEY':
      return decodeSec1PrivateKey(block.body);
    default:
      return unsupported(where, `PEM block "${block.label}"`);
  }
}
