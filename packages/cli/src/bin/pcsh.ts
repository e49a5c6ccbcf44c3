// Entry point of `pcsh`, the engineers' client.
import { knownCommand, runMain } from '../common/main.js';
import { buildPcsh } from '../pcsh/program.js';

const program = buildPcsh();
// The SSH, play and recording commands load their modules only when they may be the one asked
// for (or for help and completion, which list every command).
if (knownCommand(program, process.argv.slice(2)) === undefined) {
  const [{ addSshCommands }, { addPlayCommands }, { addRecordingCommands, addSessionCommands }] = await Promise.all([
    import('../pcsh/ssh-commands.js'),
    import('../pcsh/play.js'),
    import('../pcsh/recordings.js'),
  ]);
  addSshCommands(program);
  addPlayCommands(program);
  addRecordingCommands(program, 'pcsh');
  addSessionCommands(program);
}
await runMain('pcsh', program);
