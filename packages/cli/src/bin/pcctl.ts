// Entry point of `pcctl`, the administrators' tool.
import { runMain } from '../common/main.js';
import { buildPcctl } from '../pcctl/program.js';

await runMain('pcctl', buildPcctl());
