// Entry point of `pcsh`, the engineers' client.
import { runMain } from '../common/main.js';
import { buildPcsh } from '../pcsh/program.js';

await runMain('pcsh', buildPcsh());
