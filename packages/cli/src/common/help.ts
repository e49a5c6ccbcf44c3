import type { Command } from 'commander';

/*
 * Every command's --help ends with examples: people copy a working line far more often than
 * they read a synopsis. Lines starting with `#` are comments shown as they are.
 */
export function withExamples(cmd: Command, ...lines: readonly string[]): Command {
  const body = lines.map((l) => (l.startsWith('#') ? `  ${l}` : `  $ ${l}`)).join('\n');
  return cmd.addHelpText('after', `\nExamples:\n${body}\n`);
}

/** Collects a repeatable option's values (`--label a=b --label c=d`). */
export function collect(value: string, previous: readonly string[] | undefined): string[] {
  return [...(previous ?? []), value];
}
