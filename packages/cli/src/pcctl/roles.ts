import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { ApiRefusal } from '../common/auth-api.js';
import { CliError } from '../common/errors.js';
import { withExamples } from '../common/help.js';
import { printJson, printTable, writeOut } from '../common/output.js';
import { adminApi, enc, optsOf } from './admin.js';

/*
 * pcctl roles: roles made through the API live in Redis; those in auth's config file are
 * read-only here. The file is parsed locally only to find the role's name and to report a
 * YAML mistake with its line; auth validates the role itself and its message is passed on.
 */

/** The role file's text and name, or an ERR_CONFIG naming the file and what is wrong. */
export async function readRoleFile(path: string): Promise<{ text: string; name: string }> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new CliError('ERR_CONFIG', `${path}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  // Loaded here, not at start: only this command parses YAML.
  const { parseDocument } = await import('yaml');
  const doc = parseDocument(text, { uniqueKeys: true });
  const err = doc.errors[0];
  if (err !== undefined) {
    const at = err.linePos?.[0] === undefined ? '' : ` at line ${err.linePos[0].line}, column ${err.linePos[0].col}`;
    throw new CliError('ERR_CONFIG', `${path}: not valid YAML${at}: ${err.message.split('\n')[0]}`);
  }
  const value: unknown = doc.toJS();
  const name = typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>)['name'] : undefined;
  if (typeof name !== 'string' || name === '') throw new CliError('ERR_CONFIG', `${path}: a role needs a top-level "name:" (and "kind: role", "spec:")`);
  return { text, name };
}

async function putRole(cmd: Command, path: string, mode: 'create' | 'update'): Promise<void> {
  const { text, name } = await readRoleFile(path);
  const api = adminApi(cmd);
  const force = optsOf<{ force?: boolean }>(cmd).force === true;
  const existing = await api.request('GET', `/v1/admin/roles/${enc(name)}`);
  if (existing.status === 200 && mode === 'create' && !force) {
    throw new CliError('ERR_REFUSED', `role ${name} exists already; pcctl roles update ${path} replaces it`);
  }
  if (existing.status === 404 && mode === 'update') throw new CliError('ERR_NOT_FOUND', `no role ${name}; pcctl roles create ${path} makes it`);
  if (existing.status !== 200 && existing.status !== 404) throw api.refusal(existing);
  try {
    await api.call('PUT', `/v1/admin/roles/${enc(name)}`, { json: { yaml: text } });
  } catch (e) {
    // A role auth rejects is a mistake in the file: say which file.
    if (e instanceof ApiRefusal && e.apiCode === 'ERR_BAD_REQUEST') throw new CliError('ERR_CONFIG', `${path}: ${e.message}`);
    throw e;
  }
}

export function addRoleCommands(program: Command): void {
  const roles = withExamples(program.command('roles').description('what users may do: logins, host labels, certificate and session options'), 'pcctl roles ls', 'pcctl roles create dev.yaml');

  withExamples(
    roles
      .command('ls')
      .description('list roles')
      .option('--json', 'print JSON')
      .action(async (_o, cmd: Command) => {
        const { roles: list } = await adminApi(cmd).call<{ roles: { name: string; origin: string; description: string }[] }>('GET', '/v1/admin/roles');
        if (optsOf(cmd).json === true) return printJson(list);
        printTable(['Role', 'Origin', 'Description'], list.map((r) => [r.name, r.origin, r.description]));
      }),
    'pcctl roles ls',
  );

  withExamples(
    roles
      .command('get')
      .description('print a role as YAML (to edit and update)')
      .argument('<name>', 'role name')
      .option('--json', 'print JSON (name, origin, yaml)')
      .action(async (name: string, _o, cmd: Command) => {
        const r = await adminApi(cmd).call<{ name: string; origin: string; yaml: string }>('GET', `/v1/admin/roles/${enc(name)}`);
        if (optsOf(cmd).json === true) return printJson(r);
        writeOut(r.yaml);
      }),
    'pcctl roles get dev > dev.yaml',
  );

  withExamples(
    roles
      .command('create')
      .description('create a role from a YAML file (kind: role, name:, spec:)')
      .argument('<file>', 'role YAML')
      .option('--force', 'replace the role when it exists')
      .action(async (file: string, _o, cmd: Command) => putRole(cmd, file, 'create')),
    'pcctl roles create dev.yaml',
    '# dev.yaml:',
    '#   kind: role',
    '#   name: dev',
    '#   spec: { allow: { logins: [ubuntu], host_labels: { env: staging } }, options: { max_cert_ttl: 10m } }',
  );

  withExamples(
    roles
      .command('update')
      .description('replace an existing role from a YAML file')
      .argument('<file>', 'role YAML')
      .action(async (file: string, _o, cmd: Command) => putRole(cmd, file, 'update')),
    'pcctl roles get dev > dev.yaml && $EDITOR dev.yaml && pcctl roles update dev.yaml',
  );

  withExamples(
    roles
      .command('rm')
      .description('delete a role made through the API')
      .argument('<name>', 'role name')
      .action(async (name: string, _o, cmd: Command) => {
        await adminApi(cmd).call('DELETE', `/v1/admin/roles/${enc(name)}`);
      }),
    'pcctl roles rm contractors',
  );
}
