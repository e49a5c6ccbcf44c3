import { Command, CommanderError } from 'commander';
import { CliError, EXIT_CODES } from './errors.js';
import { closePrompts } from './prompt.js';

/*
 * How every command ends. Success is quiet; a failure is one line on stderr, `<tool>: <what>`,
 * with the CliError's exit code. A stack trace is a developer's tool, shown only with
 * PORTCULLIS_DEBUG=1: users report the line, and the line has to say enough on its own.
 */

/** Collapses a message to one line (server messages and commander's hints can hold newlines). */
export function oneLine(message: string): string {
  return message.replace(/\s*\n\s*/g, ' ').trim();
}

function debugEnabled(env: NodeJS.ProcessEnv): boolean {
  return env['PORTCULLIS_DEBUG'] === '1';
}

/**
 * The root command with the conventions every subcommand inherits: commander's own errors
 * (unknown option, missing argument) in the same one-line form, and thrown rather than exiting,
 * so runMain() decides the exit code. Call before adding subcommands: commander copies these
 * settings into each subcommand when it is created.
 */
export function createProgram(name: string, description: string): Command {
  const program = new Command(name);
  program
    .description(description)
    .exitOverride()
    .configureOutput({
      outputError: (str, write) => write(`${name}: ${oneLine(str.replace(/^error: /, ''))}\n`),
    })
    .helpCommand(false)
    .showSuggestionAfterError(true);
  return program;
}

/** The exit code for an error, after writing its one line (and, when debugging, its stack). */
export function reportError(tool: string, e: unknown, stderr: NodeJS.WritableStream = process.stderr, env = process.env): number {
  if (e instanceof CommanderError) {
    // commander has written its message (or the help) through configureOutput already.
    if (e.exitCode === 0) return 0;
    return EXIT_CODES.ERR_USAGE;
  }
  if (e instanceof CliError) {
    stderr.write(`${tool}: ${oneLine(e.message)}\n`);
    if (debugEnabled(env) && e.stack !== undefined) stderr.write(`${e.stack}\n`);
    return EXIT_CODES[e.code];
  }
  const message = e instanceof Error ? e.message : String(e);
  stderr.write(`${tool}: unexpected error: ${oneLine(message)}${debugEnabled(env) ? '' : ' (PORTCULLIS_DEBUG=1 shows more)'}\n`);
  if (debugEnabled(env) && e instanceof Error && e.stack !== undefined) stderr.write(`${e.stack}\n`);
  return 1;
}

/** Parses argv, runs the command, sets the exit code. Never throws. */
export async function runMain(tool: string, program: Command, argv: readonly string[] = process.argv): Promise<void> {
  // A failure outside the awaited chain (a socket error event, a stray rejection) still ends
  // as one line, not as Node's default dump.
  const fatal = (e: unknown): void => {
    process.exitCode = reportError(tool, e);
    process.exit();
  };
  process.on('uncaughtException', fatal);
  process.on('unhandledRejection', fatal);
  try {
    await program.parseAsync([...argv]);
  } catch (e) {
    process.exitCode = reportError(tool, e);
  } finally {
    closePrompts();
  }
}

/**
 * The subcommand argv names, when the program already defines it: the entry points then skip
 * loading the modules of every other command (ssh2, ioredis, the recording codec cost ~0.3 s
 * a start that `pcsh ls` should not pay). Undefined (load everything) for help, completion,
 * or a word it does not know yet.
 */
export function knownCommand(program: Command, argv: readonly string[]): string | undefined {
  const valued = new Set(program.options.filter((o) => o.required || o.optional).flatMap((o) => [o.long, o.short]).filter((n) => n !== undefined));
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') return undefined;
    if (a.startsWith('-')) {
      if (valued.has(a)) i++;
      continue;
    }
    const cmd = program.commands.find((c) => c.name() === a || c.aliases().includes(a));
    return cmd === undefined || cmd.name() === 'completion' ? undefined : cmd.name();
  }
  return undefined;
}
