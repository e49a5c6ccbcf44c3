import type { Command } from 'commander';
import { addCompletionCommand } from '../common/completion.js';
import { withExamples } from '../common/help.js';
import { createProgram } from '../common/main.js';
import { addAuditCommand } from './audit.js';
import { addEnforcementCommands } from './enforcement.js';
import { addInventoryCommands } from './inventory.js';
import { addRoleCommands } from './roles.js';
import { addRotateCommands } from './rotate.js';
import { addStatusCommands } from './status.js';
import { addUserCommands } from './users.js';

/*
 * The pcctl command tree (administrators), over auth's admin API with the session of a pcsh
 * login whose user has the admin role. auth audits every call with that user's name.
 */
export function buildPcctl(): Command {
  const program = createProgram('pcctl', 'Portcullis administration: users, roles, join tokens, hosts, locks, revocation, audit.');
  program.option('--profile <name>', 'the pcsh profile whose (admin) session to use; default: the current one');
  addUserCommands(program);
  addRoleCommands(program);
  addInventoryCommands(program);
  addEnforcementCommands(program);
  addAuditCommand(program);
  addStatusCommands(program);
  addRotateCommands(program);
  addCompletionCommand(program);
  withExamples(
    program,
    '# sign in as an administrator first, with pcsh:',
    'PCSH_PASSWORD=… pcsh login --auth https://bastion.example.com:3025 --user admin',
    'pcctl users add alice --roles dev',
    'pcctl lock --user alice --message "offboarding"',
    'pcctl audit --follow',
  );
  return program;
}
