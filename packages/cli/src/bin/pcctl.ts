// Entry point of `pcctl`, the administrators' tool.
import { runMain } from '../common/main.js';
import { buildPcctl } from '../pcctl/program.js';
import { addRecordingCommands } from '../pcsh/recordings.js';

const program = buildPcctl();
addRecordingCommands(program, 'pcctl');
await runMain('pcctl', program);
