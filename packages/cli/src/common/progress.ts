/*
 * A spinner for work that may take more than a second (a browser sign-in, device approval,
 * polling). Only on a terminal, and only on stderr: stdout stays clean for pipes, and a log
 * captured from a script does not fill with carriage returns.
 */

const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

export interface ProgressOptions {
  readonly stream?: NodeJS.WriteStream;
  /** Nothing is drawn for work that ends sooner (default 500 ms). */
  readonly delayMs?: number;
}

export interface Progress {
  /** Replaces the label while spinning. */
  update(label: string): void;
  /** Erases the spinner line (idempotent). */
  stop(): void;
}

export function startProgress(label: string, opts: ProgressOptions = {}): Progress {
  const stream = opts.stream ?? process.stderr;
  if (stream.isTTY !== true) return { update() {}, stop() {} };
  let text = label;
  let frame = 0;
  let drawn = false;
  let interval: NodeJS.Timeout | undefined;
  const draw = (): void => {
    stream.write(`\r\x1b[K${FRAMES[frame++ % FRAMES.length]} ${text}`);
    drawn = true;
  };
  const delay = setTimeout(() => {
    draw();
    interval = setInterval(draw, 80);
    interval.unref();
  }, opts.delayMs ?? 500);
  delay.unref();
  return {
    update(l) {
      text = l;
    },
    stop() {
      clearTimeout(delay);
      if (interval !== undefined) clearInterval(interval);
      if (drawn) stream.write('\r\x1b[K');
      drawn = false;
    },
  };
}

/** Runs `work` with a spinner showing `label` while it lasts. */
export async function withProgress<T>(label: string, work: () => Promise<T>, opts: ProgressOptions = {}): Promise<T> {
  const p = startProgress(label, opts);
  try {
    return await work();
  } finally {
    p.stop();
  }
}
