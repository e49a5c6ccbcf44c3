/**
 * Blowfish (Schneier 1993) as bcrypt_pbkdf needs it: the initial state, the key expansion with
 * and without salt data, and ECB encryption of 64-bit blocks. Nothing else: OpenSSH uses
 * Blowfish only inside its key derivation.
 */

/** 18 P-array words then the four S-boxes of 256 words each. */
const P_WORDS = 18;
const STATE_WORDS = P_WORDS + 4 * 256;

let piWords: Uint32Array | undefined;

/**
 * The first `count` 32-bit words of the fractional part of pi, in hexadecimal (0x243f6a88,
 * 0x85a308d3, ...). Blowfish's initial state is exactly these digits; computing them keeps a
 * 4 KiB table of magic numbers out of the source, where a typo would go unnoticed.
 *
 * Machin's formula pi = 16 atan(1/5) - 4 atan(1/239) in fixed point. Each series term is
 * truncated, so the sum can be off by a few units in the last place per term (about 2^14 in
 * all); 64 guard bits keep that far below the digits returned.
 */
export function piFractionWords(count: number): Uint32Array {
  if (!Number.isInteger(count) || count < 0) throw new TypeError(`"count" expected a non-negative integer, got ${count}`);
  const bits = BigInt(32 * count + 64);
  const one = 1n << bits;
  const atanInverse = (x: bigint): bigint => {
    const x2 = x * x;
    let power = one / x;
    let sum = power;
    for (let k = 1n; power !== 0n; k++) {
      power /= x2;
      const term = power / (2n * k + 1n);
      sum = k & 1n ? sum - term : sum + term;
    }
    return sum;
  };
  const pi = 16n * atanInverse(5n) - 4n * atanInverse(239n);
  const fraction = (pi - 3n * one) >> 64n;
  const hex = fraction.toString(16).padStart(8 * count, '0');
  const out = new Uint32Array(count);
  for (let i = 0; i < count; i++) out[i] = parseInt(hex.slice(8 * i, 8 * i + 8), 16);
  return out;
}

/** The initial P-array and S-boxes, computed once on first use (a few tens of milliseconds). */
export function blowfishInitialState(): Uint32Array {
  piWords ??= piFractionWords(STATE_WORDS);
  return piWords;
}

/**
 * The big-endian 32-bit words of `bytes` read as an endless cycle (OpenSSH's
 * Blowfish_stream2word), `count` of them.
 */
function cycleWords(bytes: Uint8Array, count: number): Uint32Array {
  const out = new Uint32Array(count);
  let j = 0;
  for (let i = 0; i < count; i++) {
    let w = 0;
    for (let k = 0; k < 4; k++) {
      w = (w << 8) | bytes[j]!;
      j = j + 1 === bytes.length ? 0 : j + 1;
    }
    out[i] = w;
  }
  return out;
}

/** A Blowfish key schedule that can be expanded again and again (bcrypt's "EksBlowfish"). */
export class BlowfishState {
  /** P-array in words 0..17, S-box i in words 18 + 256 i ... */
  private readonly s = new Uint32Array(STATE_WORDS);
  /** Output of the last encipherment: [left, right]. */
  private readonly lr = new Int32Array(2);

  constructor() {
    this.s.set(blowfishInitialState());
  }

  /** Encrypts one block in place in `lr`. */
  private encipher(l: number, r: number): void {
    const s = this.s;
    l ^= s[0]!;
    for (let i = 1; i < 17; i += 2) {
      r ^=
        (((s[18 + (l >>> 24)]! + s[274 + ((l >>> 16) & 255)]!) ^ s[530 + ((l >>> 8) & 255)]!) +
          s[786 + (l & 255)]!) ^
        s[i]!;
      l ^=
        (((s[18 + (r >>> 24)]! + s[274 + ((r >>> 16) & 255)]!) ^ s[530 + ((r >>> 8) & 255)]!) +
          s[786 + (r & 255)]!) ^
        s[i + 1]!;
    }
    this.lr[0] = r ^ s[17]!;
    this.lr[1] = l;
  }

  /**
   * XORs the key into the P-array, then refills the whole state with successive encryptions,
   * each block first XORed with the next words of `data` when given (Blowfish_expandstate), or
   * of zeros (Blowfish_expand0state, which is also the classic Blowfish key schedule).
   */
  expand(key: Uint8Array, data?: Uint8Array): void {
    if (key.length === 0) throw new TypeError('"key" expected a non-empty Uint8Array');
    if (data !== undefined && data.length === 0) throw new TypeError('"data" expected a non-empty Uint8Array');
    this.expandWords(cycleWords(key, P_WORDS), data === undefined ? undefined : cycleWords(data, STATE_WORDS));
  }

  /** `expand` with the key and data already cut into words (bcrypt reuses them 128 times). */
  expandWords(keyWords: Uint32Array, dataWords?: Uint32Array): void {
    const s = this.s;
    const lr = this.lr;
    for (let i = 0; i < P_WORDS; i++) s[i] = s[i]! ^ keyWords[i]!;
    let l = 0;
    let r = 0;
    for (let i = 0; i < STATE_WORDS; i += 2) {
      if (dataWords !== undefined) {
        l ^= dataWords[i]!;
        r ^= dataWords[i + 1]!;
      }
      this.encipher(l, r);
      l = lr[0]!;
      r = lr[1]!;
      s[i] = l;
      s[i + 1] = r;
    }
  }

  /** Encrypts big-endian word pairs in place (ECB over 64-bit blocks). */
  encryptWords(words: Uint32Array): void {
    if (words.length % 2 !== 0) throw new TypeError(`"words" expected an even length, got ${words.length}`);
    for (let i = 0; i < words.length; i += 2) {
      this.encipher(words[i]! | 0, words[i + 1]! | 0);
      words[i] = this.lr[0]!;
      words[i + 1] = this.lr[1]!;
    }
  }
}

/** `count` words of `bytes` cycled, for callers that precompute expansion input. */
export function streamWords(bytes: Uint8Array, count: number): Uint32Array {
  if (bytes.length === 0) throw new TypeError('"bytes" expected a non-empty Uint8Array');
  return cycleWords(bytes, count);
}

export const BLOWFISH_STATE_WORDS = STATE_WORDS;
export const BLOWFISH_P_WORDS = P_WORDS;
