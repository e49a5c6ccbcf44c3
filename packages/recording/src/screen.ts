import serializeAddon from '@xterm/addon-serialize';
import headless from '@xterm/headless';

// Both packages are CommonJS; Node's ESM loader exposes them as a default export only.
const { Terminal } = headless;
const { SerializeAddon } = serializeAddon;

export interface ScreenText {
  readonly cols: number;
  readonly rows: number;
  /** The visible rows, right-trimmed. */
  readonly lines: readonly string[];
  readonly cursorX: number;
  readonly cursorY: number;
  readonly altScreen: boolean;
}

/**
 * A terminal emulator (xterm.js, headless) fed with a session's output: it makes the snapshots
 * that let a viewer start mid-session, and lets tests compare screens. No scrollback by default:
 * a snapshot is the screen, and scrollback would make every snapshot grow with the session.
 */
export class TerminalScreen {
  private readonly term: InstanceType<typeof Terminal>;
  private readonly serializer = new SerializeAddon();

  /** convertEol: treat LF as CRLF, for output that never went through a pty's line discipline. */
  constructor(cols: number, rows: number, opts: { scrollback?: number; convertEol?: boolean } = {}) {
    this.term = new Terminal({
      convertEol: opts.convertEol ?? false,
      cols: Math.max(1, cols),
      rows: Math.max(1, rows),
      scrollback: opts.scrollback ?? 0,
      allowProposedApi: true,
    });
    this.term.loadAddon(this.serializer);
  }

  get cols(): number {
    return this.term.cols;
  }

  get rows(): number {
    return this.term.rows;
  }

  private queued = 0;

  /** Bytes written and not yet parsed. */
  get backlog(): number {
    return this.queued;
  }

  write(data: Uint8Array | string): void {
    const n = data.length;
    this.queued += n;
    this.term.write(data, () => (this.queued -= n));
  }

  /**
   * Resizes after everything written so far is parsed: xterm parses writes asynchronously but
   * resizes at once, so a plain resize() would apply to output that preceded it.
   */
  resize(cols: number, rows: number): void {
    this.term.write('', () => this.term.resize(Math.max(1, cols), Math.max(1, rows)));
  }

  /**
   * Runs `read` right after everything written so far is parsed and before anything written
   * later: inside the write callback, because by the time a promise continuation runs xterm may
   * have parsed more.
   */
  private at<T>(read: () => T): Promise<T> {
    return new Promise((resolve, reject) =>
      this.term.write('', () => {
        try {
          resolve(read());
        } catch (e) {
          reject(e instanceof Error ? e : new Error(String(e)));
        }
      }),
    );
  }

  settled(): Promise<void> {
    return this.at(() => undefined);
  }

  /** Escape sequences that redraw the screen, cursor and modes in a fresh terminal of the same size. */
  snapshot(): Promise<{ screen: string; cols: number; rows: number }> {
    return this.at(() => ({ screen: this.serializer.serialize({ scrollback: 0 }), cols: this.term.cols, rows: this.term.rows }));
  }

  text(): Promise<ScreenText> {
    return this.at(() => {
      const buf = this.term.buffer.active;
      const lines: string[] = [];
      for (let y = 0; y < this.term.rows; y++) lines.push(buf.getLine(buf.baseY + y)?.translateToString(true) ?? '');
      return {
        cols: this.term.cols,
        rows: this.term.rows,
        lines,
        cursorX: buf.cursorX,
        cursorY: buf.cursorY,
        altScreen: buf.type === 'alternate',
      };
    });
  }

  /** Every line of the normal buffer including scrollback, right-trimmed (for transcripts). */
  allLines(): Promise<string[]> {
    return this.at(() => {
      const buf = this.term.buffer.normal;
      const lines: string[] = [];
      for (let y = 0; y < buf.length; y++) lines.push(buf.getLine(y)?.translateToString(true) ?? '');
      while (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
      return lines;
    });
  }

  dispose(): void {
    this.term.dispose();
  }
}
