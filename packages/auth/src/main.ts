import { parseArgs } from 'node:util';
import { AuthError } from './errors.js';
import { loadAuthConfig } from './config/load.js';
import { AuthService } from './service.js';

/*
 * Runs the auth service alone: node --import tsx packages/auth/src/main.ts --config auth.yaml
 * (`portcullis start` does the same through service.ts). Exit codes: 0 after a clean stop on
 * SIGINT/SIGTERM, 2 for a bad command line or config, 1 when the service could not start.
 */

const USAGE = 'usage: main.ts --config <auth.yaml>';

async function main(): Promise<number> {
  let configPath: string;
  try {
    const { values } = parseArgs({ options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } }, strict: true });
    if (values.help === true) {
      process.stdout.write(`${USAGE}\n`);
      return 0;
    }
    if (values.config === undefined) throw new Error('--config is required');
    configPath = values.config;
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n${USAGE}\n`);
    return 2;
  }

  let service: AuthService;
  try {
    service = new AuthService({ config: loadAuthConfig(configPath) });
  } catch (e) {
    process.stderr.write(`${e instanceof AuthError ? e.message : String(e)}\n`);
    return 2;
  }
  try {
    const info = await service.start();
    process.stderr.write(`auth: pin this certificate on first contact: ${info.fingerprint}\n`);
  } catch (e) {
    process.stderr.write(`auth: cannot start: ${e instanceof Error ? e.message : String(e)}\n`);
    return e instanceof AuthError && e.code === 'ERR_CONFIG' ? 2 : 1;
  }

  return new Promise<number>((resolve) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (stopping) return;
      stopping = true;
      process.stderr.write(`auth: ${signal}: stopping\n`);
      service.stop().then(
        () => resolve(0),
        (e: unknown) => {
          process.stderr.write(`auth: stop failed: ${String(e)}\n`);
          resolve(1);
        },
      );
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

process.exitCode = await main();
