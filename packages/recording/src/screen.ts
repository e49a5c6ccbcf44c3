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

  constructor(cols: number, rows: number, opts: { scrollback?: number } = {}) {
    this.term = new Terminal({
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

  write(data: Uint8Array | string): void {
    this.term.write(data);
  }

  resize(cols: number, rows: number): void {
    this.term.resize(Math.max(1, cols), Math.max(1, rows));
  }

  /** Resolves once everything written so far has been parsed (xterm parses asynchronously). */
  settled(): Promise<void> {
    return new Promise((resolve) => this.term.write('', resolve));
  }

  /** Escape sequences that redraw the current screen, cursor and modes in a fresh terminal. */
  async serialize(): Promise<string> {
    await this.settled();
    return this.serializer.serialize({ scrollback: 0 });
  }

  async text(): Promise<ScreenText> {
    await this.settled();
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
  }

  /** Every line of the normal buffer including scrollback, right-trimmed (for transcripts). */
  async allLines(): Promise<string[]> {
    await this.settled();
    const buf = this.term.buffer.normal;
    const lines: string[] = [];
    for (let y = 0; y < buf.length; y++) lines.push(buf.getLine(y)?.translateToString(true) ?? '');
    while (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
    return lines;
  }

  dispose(): void {
    this.term.dispose();
  }
}
