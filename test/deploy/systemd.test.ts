import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';

/*
 * The units are checked by systemd itself (`systemd-analyze verify`: unknown keys, bad values,
 * a missing executable all fail) and by its own exposure score, then for the hardening the
 * install promises, so a later edit cannot drop a line silently. verify needs ExecStart to
 * exist, so the copies point at this checkout's bin/portcullis instead of /opt/portcullis.
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const UNITS = join(ROOT, 'deploy/systemd');
const work = mkdtempSync(join(tmpdir(), 'portcullis-units-'));
after(() => rmSync(work, { recursive: true, force: true }));

function copy(name: string): string {
  const text = readFileSync(join(UNITS, name), 'utf8').replaceAll('/opt/portcullis/', ROOT);
  writeFileSync(join(work, name), text);
  return join(work, name);
}

/** Section -> key -> values (a key may repeat). */
function parseUnit(text: string): Map<string, Map<string, string[]>> {
  const out = new Map<string, Map<string, string[]>>();
  let section: Map<string, string[]> | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const s = /^\[(.+)\]$/.exec(line);
    if (s !== null) {
      section = new Map();
      out.set(s[1]!, section);
      continue;
    }
    const eq = line.indexOf('=');
    assert.ok(section !== undefined && eq > 0, `not a key=value line: ${line}`);
    const key = line.slice(0, eq);
    section.set(key, [...(section.get(key) ?? []), line.slice(eq + 1)]);
  }
  return out;
}

for (const unit of ['portcullis.service', 'portcullis@.service']) {
  test(`${unit}: systemd-analyze verify is silent`, () => {
    const path = copy(unit);
    // A template is verified through an instance of it.
    const target = unit.includes('@') ? join(work, 'portcullis@proxy.service') : path;
    const r = spawnSync('systemd-analyze', ['verify', '--man=no', target], { encoding: 'utf8', cwd: work });
    assert.equal(r.error, undefined, 'systemd-analyze missing: install Debian\'s systemd (scripts/ensure-deps.sh)');
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr.trim(), '', 'no warnings either');
  });

  test(`${unit}: the hardening and limits the install promises`, () => {
    const s = parseUnit(readFileSync(join(UNITS, unit), 'utf8')).get('Service')!;
    const one = (k: string): string | undefined => s.get(k)?.at(-1);
    assert.equal(one('User'), 'portcullis');
    assert.equal(one('Group'), 'portcullis');
    assert.equal(one('ProtectSystem'), 'strict');
    assert.equal(one('ProtectHome'), 'yes');
    assert.equal(one('PrivateTmp'), 'yes');
    assert.equal(one('NoNewPrivileges'), 'yes');
    assert.equal(one('ReadWritePaths'), '/var/lib/portcullis');
    assert.equal(one('StateDirectory'), 'portcullis');
    assert.equal(one('Restart'), 'on-failure');
    assert.ok(Number(one('LimitNOFILE')) >= 65536);
    // The proxy's drain (drain_grace, 30 s by default) must fit in the stop timeout.
    assert.ok(Number(one('TimeoutStopSec')) > 30);
    assert.equal(one('KillMode'), 'mixed', 'SIGTERM to portcullis only: it stops its embedded redis-server itself');
    assert.match(one('ExecStart')!, /portcullis start --config \/etc\/portcullis\/portcullis\.yaml/);
    if (unit.includes('@')) assert.match(one('ExecStart')!, /--roles %i$/);
  });
}

test('portcullis.service scores OK or better in systemd-analyze security', () => {
  const r = spawnSync('systemd-analyze', ['security', '--offline=yes', '--no-pager', copy('portcullis.service')], { encoding: 'utf8', cwd: work });
  const m = /Overall exposure level for \S+: ([\d.]+)/.exec(r.stdout + r.stderr);
  assert.ok(m !== null, r.stdout + r.stderr);
  assert.ok(Number(m[1]) <= 4, `exposure ${m[1]}`);
});

test('sysusers.d and tmpfiles.d snippets parse and match the units', () => {
  const users = readFileSync(join(UNITS, 'sysusers.d-portcullis.conf'), 'utf8');
  assert.match(users, /^u portcullis - ".+" \/var\/lib\/portcullis \/usr\/sbin\/nologin$/m);
  // Checked by shape only: this systemd (252) has no tmpfiles --dry-run, and --create would
  // need the portcullis user to exist.
  const tmp = readFileSync(join(UNITS, 'tmpfiles.d-portcullis.conf'), 'utf8');
  assert.match(tmp, /^d \/var\/lib\/portcullis\s+0700 portcullis portcullis -$/m);
  assert.match(tmp, /^d \/etc\/portcullis\s+0750 root\s+portcullis -$/m);
});
