const utf8 = new TextEncoder();

/** Writes the SSH wire format into a buffer that grows as needed. */
export class SshWriter {
  private buf: Uint8Array;
  private view: DataView;
  private pos = 0;

  constructor(initialSize = 256) {
    this.buf = new Uint8Array(initialSize);
    this.view = new DataView(this.buf.buffer);
  }

  private reserve(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  get length(): number {
    return this.pos;
  }

  byte(v: number): this {
    this.reserve(1);
    this.buf[this.pos++] = v & 0xff;
    return this;
  }

  boolean(v: boolean): this {
    return this.byte(v ? 1 : 0);
  }

  uint32(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new TypeError(`uint32 out of range: ${v}`);
    this.reserve(4);
    this.view.setUint32(this.pos, v);
    this.pos += 4;
    return this;
  }

  uint64(v: bigint): this {
    if (v < 0n || v > 0xffffffffffffffffn) throw new TypeError(`uint64 out of range: ${v}`);
    this.reserve(8);
    this.view.setBigUint64(this.pos, v);
    this.pos += 8;
    return this;
  }

  raw(b: Uint8Array): this {
    this.reserve(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
    return this;
  }

  string(b: Uint8Array | string): this {
    const bytes = typeof b === 'string' ? utf8.encode(b) : b;
    this.uint32(bytes.length);
    return this.raw(bytes);
  }

  mpint(v: bigint): this {
    return this.string(mpintBytes(v));
  }

  nameList(names: readonly string[]): this {
    return this.string(names.join(','));
  }

  /**
   * Writes a string whose content is produced by `fill` (nested structures), in place: the
   * length is patched in afterwards, so nesting allocates nothing.
   */
  nested(fill: (w: SshWriter) => void): this {
    this.uint32(0);
    const start = this.pos;
    fill(this);
    this.view.setUint32(start - 4, this.pos - start);
    return this;
  }

  /** The bytes written so far, without copying: valid until the next write. */
  peek(): Uint8Array {
    return this.buf.subarray(0, this.pos);
  }

  /** The bytes written so far (a copy trimmed to length). */
  finish(): Uint8Array {
    return this.buf.slice(0, this.pos);
  }
}

/** Minimal two's-complement encoding of a non-negative bigint (RFC 4251 mpint body). */
export function mpintBytes(v: bigint): Uint8Array {
  if (v < 0n) throw new TypeError('negative mpint');
  if (v === 0n) return new Uint8Array(0);
  let hex = v.toString(16);
  if (hex.length % 2) hex = '0' + hex;
  if (parseInt(hex.slice(0, 2), 16) & 0x80) hex = '00' + hex;
  return hexToBytes(hex);
}

/** Big-endian bytes of a non-negative bigint, left-padded to `size`. */
export function bigintToBytes(v: bigint, size: number): Uint8Array {
  let hex = v.toString(16);
  if (hex.length > size * 2) throw new TypeError(`integer does not fit in ${size} bytes`);
  hex = hex.padStart(size * 2, '0');
  return hexToBytes(hex);
}

export function hexToBytes(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
  return out;
}

export function bytesToHex(b: Uint8Array): string {
  let s = '';
  for (const x of b) s += x.toString(16).padStart(2, '0');
  return s;
}
