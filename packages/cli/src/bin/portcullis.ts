// Entry point of `portcullis`: the services (start) and host enrollment (host join|renew|krl-refresh).
import { runMain } from '../common/main.js';
import { buildPortcullis } from '../portcullis/program.js';

await runMain('portcullis', buildPortcullis());
