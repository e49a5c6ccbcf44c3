// Entry point of `pcsh`, the engineers' client.
import { runMain } from '../common/main.js';
import { addPlayCommands } from '../pcsh/play.js';
import { buildPcsh } from '../pcsh/program.js';
import { addRecordingCommands, addSessionCommands } from '../pcsh/recordings.js';
import { addSshCommands } from '../pcsh/ssh-commands.js';

const program = buildPcsh();
addSshCommands(program);
addPlayCommands(program);
addRecordingCommands(program, 'pcsh');
addSessionCommands(program);
await runMain('pcsh', program);
