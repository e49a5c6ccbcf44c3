import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import type { Command } from 'commander';
import { hasTool, run, runOk, tempDir, type TempDir } from '@portcullis/harness';
import { bashCompletion, zshCompletion } from '../src/common/completion.js';
import { buildPcctl } from '../src/pcctl/program.js';
import { buildPcsh } from '../src/pcsh/program.js';

/*
 * Completion scripts generated from the commander trees, exercised by the shells themselves:
 * bash registers the function and, given COMP_WORDS/COMP_CWORD as readline would set them,
 * answers with the right words; zsh parses its script and, with the completion builtins
 * stubbed, offers the same. And every command's --help ends with an example.
 */

const BIN = (tool: string): string => fileURLToPath(new URL(`../bin/${tool}`, import.meta.url));

function allCommands(root: Command): Command[] {
  const out: Command[] = [];
  const walk = (c: Command): void => {
    out.push(c);
    for (const s of c.commands) if (s.name() !== 'help') walk(s);
  };
  walk(root);
  return out;
}

function helpOf(cmd: Command): string {
  let text = '';
  cmd.configureOutput({ writeOut: (s) => (text += s), writeErr: (s) => (text += s) });
  cmd.outputHelp();
  return text;
}

describe('completion and help', () => {
  let dir: TempDir;
  const scripts: Record<string, string> = {};

  before(() => {
    dir = tempDir('pcsh-completion-');
    for (const [tool, build] of [['pcsh', buildPcsh], ['pcctl', buildPcctl]] as const) {
      scripts[`${tool}.bash`] = dir.file(`${tool}.bash`);
      writeFileSync(scripts[`${tool}.bash`]!, bashCompletion(build()));
      scripts[`${tool}.zsh`] = dir.file(`${tool}.zsh`);
      writeFileSync(scripts[`${tool}.zsh`]!, zshCompletion(build()));
    }
  });

  after(() => dir?.remove());

  test('every command has an example in its --help', () => {
    for (const root of [buildPcsh(), buildPcctl()]) {
      for (const cmd of allCommands(root)) {
        assert.match(helpOf(cmd), /\nExamples:\n {2}(\$|#) \S/, `${root.name()} ${cmd.name()} --help has no example`);
      }
    }
  });

  test('the real binaries print scripts bash registers', async () => {
    for (const tool of ['pcsh', 'pcctl']) {
      const r = await runOk('bash', ['-c', `source <(${BIN(tool)} completion bash) && complete -p ${tool}`]);
      assert.equal(r.stdout.trim(), `complete -o default -F _${tool}_complete ${tool}`);
    }
    const bad = await run(BIN('pcsh'), ['completion', 'fish']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^pcsh: command-argument value 'fish' is invalid for argument 'shell'\. Allowed choices are bash, zsh\.\n$/);
  });

  async function bashComplete(tool: string, words: readonly string[]): Promise<string[]> {
    const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
    const script = `source ${q(scripts[`${tool}.bash`]!)}; COMP_WORDS=(${[tool, ...words].map(q).join(' ')}); COMP_CWORD=${words.length}; _${tool}_complete; printf '%s\\n' "\${COMPREPLY[@]}"`;
    const r = await runOk('bash', ['-c', script]);
    return r.stdout.split('\n').filter((l) => l !== '').sort();
  }

  test('bash: subcommands, options, option values and argument choices at each depth', async () => {
    const top = await bashComplete('pcsh', ['']);
    for (const c of ['login', 'logout', 'status', 'ls', 'config', 'certificate', 'mfa', 'completion', '--profile']) assert.ok(top.includes(c), `${c} in ${top.join(' ')}`);
    assert.deepEqual(await bashComplete('pcsh', ['lo']), ['login', 'logout']);
    assert.deepEqual(await bashComplete('pcsh', ['login', '--h']), ['--headless', '--help']);
    assert.deepEqual(await bashComplete('pcsh', ['certificate', '']), ['--help', '--profile', 'ensure']);
    assert.deepEqual(await bashComplete('pcsh', ['completion', '']), ['--help', '--profile', 'bash', 'zsh']);
    assert.deepEqual(await bashComplete('pcctl', ['users', '']), ['--help', '--profile', 'add', 'ls', 'reset', 'rm', 'update']);
    // The value of --profile is skipped while finding the command; a flag value is not offered words.
    assert.deepEqual(await bashComplete('pcctl', ['--profile', 'users', 'users', 'r']), ['reset', 'rm']);
    assert.deepEqual(await bashComplete('pcctl', ['--profile', '']), []);
    assert.deepEqual(await bashComplete('pcctl', ['revoke', '--ca', '']), ['host', 'upstream', 'user']);
    assert.deepEqual(await bashComplete('pcctl', ['auth', 'export', '--type', 'h']), ['host']);
    assert.deepEqual(await bashComplete('pcctl', ['tokens', 'add', 'p']), ['proxy']);
    // A file argument: no words, so bash's -o default completes file names.
    assert.deepEqual(await bashComplete('pcctl', ['roles', 'create', 'de']), []);
    assert.ok((await bashComplete('pcctl', ['lock', '--'])).includes('--message'));
  });

  test('zsh: the script parses and offers the same words', { skip: !hasTool('zsh') && 'zsh is not installed' }, async () => {
    for (const tool of ['pcsh', 'pcctl']) await runOk('zsh', ['-n', scripts[`${tool}.zsh`]!]);
    const complete = async (tool: string, words: readonly string[]): Promise<string[]> => {
      const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
      const script = [
        'compdef() { :; }',
        `source ${q(scripts[`${tool}.zsh`]!)}`,
        // The completion system's builtins, reduced to printing what they were given.
        '_describe() { local a=${@[-1]}; print -l -- ${(P)a} }',
        'compadd() { [[ $1 == -- ]] && shift; print -l -- "$@" }',
        '_files() { print -- "<files>" }',
        '_message() { print -- "<message>" }',
        `words=(${[tool, ...words].map(q).join(' ')}); CURRENT=${words.length + 1}; PREFIX=${q(words.at(-1) ?? '')}`,
        `_${tool}`,
      ].join('\n');
      // The function's status says whether anything matched; what it offered is the point here.
      const r = await run('zsh', ['-f', '-c', script]);
      assert.equal(r.stderr, '');
      return r.stdout.split('\n').filter((l) => l !== '').map((l) => l.split(/(?<!\\):/)[0]!).sort();
    };
    assert.deepEqual(await complete('pcctl', ['users', '']), ['add', 'ls', 'reset', 'rm', 'update']);
    assert.ok((await complete('pcctl', ['users', 'add', '--'])).includes('--roles'));
    assert.deepEqual(await complete('pcctl', ['--profile', 'x', 'revoke', '--ca', '']), ['host', 'upstream', 'user']);
    assert.deepEqual(await complete('pcctl', ['roles', 'create', '']), ['<files>']);
    assert.deepEqual(await complete('pcctl', ['roles', 'rm', '']), []);
    assert.deepEqual(await complete('pcctl', ['revoke', '--public-key', '']), ['<files>']);
    assert.deepEqual(await complete('pcsh', ['completion', '']), ['bash', 'zsh']);
  });
});
