// Entry point of `pcctl`, the administrators' tool.
import { knownCommand, runMain } from '../common/main.js';
import { buildPcctl } from '../pcctl/program.js';

const program = buildPcctl();
// The recordings commands (ioredis, the recording codec) load only when they may be asked for.
if (knownCommand(program, process.argv.slice(2)) === undefined) {
  const { addRecordingCommands } = await import('../pcsh/recordings.js');
  addRecordingCommands(program, 'pcctl');
}
await runMain('pcctl', program);
