// cert-core must run in a browser: no Node built-ins and no Buffer in the codec. Only the
// node:crypto backend may use them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

const SRC = new URL('../src/', import.meta.url).pathname;
const ALLOWED = new Set(['crypto/node.ts']);

function walk(dir: string, prefix = ''): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    const rel = prefix + name;
    return statSync(p).isDirectory() ? walk(p, rel + '/') : rel.endsWith('.ts') ? [rel] : [];
  });
}

test('no node: import or Buffer outside the node:crypto backend', () => {
  const offenders = walk(SRC)
    .filter((f) => !ALLOWED.has(f))
    .filter((f) => {
      const s = readFileSync(join(SRC, f), 'utf8');
      return /from ['"]node:|require\(|\bBuffer\b|\bprocess\./.test(s);
    });
  assert.deepEqual(offenders, []);
});
