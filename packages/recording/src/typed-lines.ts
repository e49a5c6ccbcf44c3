/**
 * Reconstructs the command lines a user typed from the raw input of a shell channel, roughly:
 * printable text is appended, backspace/DEL, ^U, ^W and ^C edit the line, Enter ends it, and
 * escape sequences (arrow keys, function keys, bracketed-paste markers) are dropped. Cursor
 * movement, history recall and tab completion happen in the remote shell and are invisible here,
 * so the result is what was typed, not necessarily what ran: good enough to find a session by
 * command, which is what it is for.
 */
const MAX_LINE = 4096;

const enum Esc {
  None,
  /** After ESC. */
  Start,
  /** Inside a CSI sequence (ESC [ ... final byte 0x40-0x7e). */
  Csi,
  /** After ESC O (SS3): one more byte. */
  Ss3,
}

export class TypedLineReader {
  private line: string[] = [];
  private esc = Esc.None;
  private readonly decoder = new TextDecoder('utf-8', { fatal: false });

  /** Feeds input bytes; returns the lines completed by them (empty lines are skipped). */
  push(data: Uint8Array): string[] {
    const done: string[] = [];
    let text = '';
    const flushText = (): void => {
      for (const ch of text) if (this.line.length < MAX_LINE) this.line.push(ch);
      text = '';
    };
    for (const b of data) {
      if (this.esc !== Esc.None) {
        this.escape(b);
        continue;
      }
      if (b >= 0x20 && b !== 0x7f) {
        text += this.decoder.decode(Uint8Array.of(b), { stream: true });
        continue;
      }
      flushText();
      switch (b) {
        case 0x1b:
          this.esc = Esc.Start;
          break;
        case 0x0d:
        case 0x0a: {
          const line = this.line.join('').trim();
          this.line = [];
          if (line !== '') done.push(line);
          break;
        }
        case 0x7f:
        case 0x08:
          this.line.pop();
          break;
        case 0x15: // ^U: kill the line
        case 0x03: // ^C: the shell discards it
          this.line = [];
          break;
        case 0x17: // ^W: erase the word before the cursor
          while (this.line.length > 0 && this.line[this.line.length - 1] === ' ') this.line.pop();
          while (this.line.length > 0 && this.line[this.line.length - 1] !== ' ') this.line.pop();
          break;
        default:
          // Tab, ^A, ^E...: their effect is decided by the remote shell.
          break;
      }
    }
    flushText();
    return done;
  }

  private escape(b: number): void {
    switch (this.esc) {
      case Esc.Start:
        this.esc = b === 0x5b ? Esc.Csi : b === 0x4f ? Esc.Ss3 : Esc.None;
        return;
      case Esc.Csi:
        if (b >= 0x40 && b <= 0x7e) this.esc = Esc.None;
        return;
      default:
        this.esc = Esc.None;
    }
  }
}
