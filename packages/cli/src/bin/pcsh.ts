// Entry point of `pcsh`, the engineers' client.
import { runMain } from '../common/main.js';
import { buildPcsh } from '../pcsh/program.js';
import { addSshCommands } from '../pcsh/ssh-commands.js';

const program = buildPcsh();
addSshCommands(program);
await runMain('pcsh', program);
