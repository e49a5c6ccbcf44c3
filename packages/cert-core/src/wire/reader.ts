import { malformed } from '../errors.js';

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Reads the SSH wire format (RFC 4251 section 5). Every read names the field it reads so an
 * error says where it happened. Lengths are checked against what remains before anything is
 * sliced, so a hostile length never causes an allocation. Strings are returned as views into
 * the input, not copies.
 */
export class SshReader {
  private readonly view: DataView;
  private pos = 0;

  constructor(
    private readonly bytes: Uint8Array,
    /** Prefix for error locations, e.g. `certificate`. */
    private readonly context = 'input',
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get offset(): number {
    return this.pos;
  }

  get remaining(): number {
    return this.bytes.length - this.pos;
  }

  private need(n: number, field: string): void {
    if (n > this.remaining) {
      malformed(`${this.context}.${field}`, `needs ${n} bytes at offset ${this.pos}, ${this.remaining} remain`);
    }
  }

  fail(field: string, what: string): never {
    malformed(`${this.context}.${field}`, what);
  }

  byte(field: string): number {
    this.need(1, field);
    return this.bytes[this.pos++]!;
  }

  boolean(field: string): boolean {
    return this.byte(field) !== 0;
  }

  uint32(field: string): number {
    this.need(4, field);
    const v = this.view.getUint32(this.pos);
    this.pos += 4;
    return v;
  }

  uint64(field: string): bigint {
    this.need(8, field);
    const v = this.view.getBigUint64(this.pos);
    this.pos += 8;
    return v;
  }

  /** Fixed number of raw bytes (no length prefix). */
  raw(n: number, field: string): Uint8Array {
    this.need(n, field);
    const v = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }

  string(field: string): Uint8Array {
    const len = this.uint32(field);
    if (len > this.remaining) {
      malformed(`${this.context}.${field}`, `length ${len} exceeds ${this.remaining} remaining bytes`);
    }
    return this.raw(len, field);
  }

  /** A string that must be valid UTF-8 without NUL bytes (names, key ids, principals). */
  text(field: string): string {
    const b = this.string(field);
    let s: string;
    try {
      s = utf8.decode(b);
    } catch {
      return malformed(`${this.context}.${field}`, 'not valid UTF-8');
    }
    if (s.includes('\0')) malformed(`${this.context}.${field}`, 'contains a NUL byte');
    return s;
  }

  /**
   * A non-negative mpint (RFC 4251). As OpenSSH's sshbuf_get_bignum2, a negative value is
   * refused and superfluous leading zero bytes are accepted: callers that re-encode must
   * therefore keep the raw bytes when a signature covers them.
   */
  mpint(field: string, maxBytes = 16385): bigint {
    const b = this.string(field);
    const where = `${this.context}.${field}`;
    if (b.length > maxBytes) malformed(where, `integer of ${b.length} bytes exceeds ${maxBytes}`);
    if (b.length > 0 && (b[0]! & 0x80) !== 0) malformed(where, 'negative integer');
    return bigintFromBytes(b);
  }

  nameList(field: string): string[] {
    const s = this.text(field);
    if (s === '') return [];
    const names = s.split(',');
    if (names.some((n) => n === '')) malformed(`${this.context}.${field}`, 'empty name in name-list');
    return names;
  }

  /** Asserts that everything was consumed. */
  end(field = 'end'): void {
    if (this.remaining !== 0) {
      malformed(`${this.context}.${field}`, `${this.remaining} trailing bytes`);
    }
  }
}

/** Big-endian unsigned bytes to bigint. */
export function bigintFromBytes(b: Uint8Array): bigint {
  if (b.length <= 6) {
    let v = 0;
    for (const x of b) v = v * 256 + x;
    return BigInt(v);
  }
  // One BigInt parse of a hex string is linear; shifting in byte by byte is quadratic.
  let hex = '0x';
  for (const x of b) hex += HEX[x]!;
  return BigInt(hex);
}

const HEX: readonly string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));
