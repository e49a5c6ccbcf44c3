import { Terminal, type ITheme } from '@xterm/xterm';

/*
 * xterm.js for the player and the live view: read-only, exactly the recorded size (a replay must
 * wrap lines where the user's terminal did), colours following the page's light or dark scheme.
 * The interactive terminal (shell.ts) shares the themes and fits itself to the window instead.
 */

export const DARK: ITheme = { background: '#111418', foreground: '#d8dee9', cursor: '#d8dee9', selectionBackground: '#3b4252' };
export const LIGHT: ITheme = { background: '#fbfbfa', foreground: '#1f2328', cursor: '#1f2328', selectionBackground: '#c8d1dc', black: '#1f2328', brightBlack: '#57606a' };

export function createViewer(parent: HTMLElement, cols: number, rows: number): { term: Terminal; dispose(): void } {
  const dark = matchMedia('(prefers-color-scheme: dark)');
  const term = new Terminal({
    cols,
    rows,
    disableStdin: true,
    cursorBlink: false,
    scrollback: 1000,
    fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace',
    fontSize: 14,
    theme: dark.matches ? DARK : LIGHT,
    allowProposedApi: false,
  });
  const onScheme = (): void => {
    term.options.theme = dark.matches ? DARK : LIGHT;
  };
  dark.addEventListener('change', onScheme);
  term.open(parent);
  return {
    term,
    dispose() {
      dark.removeEventListener('change', onScheme);
      term.dispose();
    },
  };
}

export function fromBase64(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
