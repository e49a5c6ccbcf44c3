// The long form (npm run fuzz -- --minutes N): the same properties as the CI test, 50x their
// runs, a fresh random seed per round until the time is up. Each failure is printed with its
// seed and counterexample path, which replay it: fc.check(property, { seed, path }).
import { randomInt } from 'node:crypto';
import { parseArgs } from 'node:util';
import { runProperties } from './run.js';

const { values } = parseArgs({ options: { minutes: { type: 'string', default: '5' }, scale: { type: 'string', default: '50' }, seed: { type: 'string' } } });
const minutes = Number(values.minutes);
const scale = Number(values.scale);
if (!(minutes > 0) || !(scale > 0)) throw new Error('--minutes and --scale take positive numbers');

const deadline = Date.now() + minutes * 60_000;
let rounds = 0;
let runs = 0;
let failed = 0;
do {
  const seed = values.seed !== undefined ? Number(values.seed) : randomInt(2 ** 31);
  const r = await runProperties({ seed, scale });
  rounds++;
  runs += r.runs;
  for (const f of r.failures) {
    failed++;
    console.log(`CRASH ${f.name}\n  seed=${f.seed} path=${f.path ?? '-'}\n  ${f.message.split('\n').join('\n  ')}`);
  }
  console.error(`round ${rounds}: seed ${seed}, ${r.runs} inputs, rss +${(r.rssGrowth / 2 ** 20).toFixed(1)} MiB, ${failed} failures so far`);
  if (values.seed !== undefined) break;
} while (Date.now() < deadline);
console.log(`${rounds} rounds, ${runs} inputs, ${failed} failures`);
process.exitCode = failed > 0 ? 1 : 0;
