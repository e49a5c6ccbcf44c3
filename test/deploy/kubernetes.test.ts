import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import * as appsV1 from 'kubernetes-models/apps/v1';
import * as coreV1 from 'kubernetes-models/v1';
import { parseAuthConfig } from '@portcullis/auth';
import { loadStartConfig } from '../../packages/cli/src/portcullis/config.js';

/*
 * Every object in deploy/kubernetes is validated against the Kubernetes OpenAPI schema that
 * kubernetes-models ships (types, required fields, enums). Those schemas accept unknown keys,
 * so the checks that matter to Portcullis follow explicitly: probes on the real endpoints,
 * Services that select their pods, every mounted ConfigMap and Secret defined, a grace period
 * longer than the drain, and the embedded config valid for the roles the pods run.
 */

const DIR = fileURLToPath(new URL('../../deploy/kubernetes/', import.meta.url));
const MODELS: Record<string, Record<string, unknown>> = { v1: coreV1, 'apps/v1': appsV1 };

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [k: string]: unknown;
}
interface Probe { httpGet?: { path: string; port: string | number; scheme?: string }; tcpSocket?: { port: string | number } }
interface Container { name: string; args?: string[]; ports?: { name?: string; containerPort: number }[]; readinessProbe?: Probe; livenessProbe?: Probe }
interface PodSpec { containers: Container[]; initContainers?: Container[]; terminationGracePeriodSeconds?: number; volumes?: { name: string; configMap?: { name: string }; secret?: { secretName: string } }[] }
interface Workload extends K8sObject { spec: { selector: { matchLabels: Record<string, string> }; template: { metadata: { labels: Record<string, string> }; spec: PodSpec } } }

const files = readdirSync(DIR).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml');
const objects: (K8sObject & { file: string })[] = files.flatMap((f) =>
  // YAML 1.1 as Kubernetes reads it (sigs.k8s.io/yaml): 0440 is octal there, decimal in 1.2.
  parseAllDocuments(readFileSync(join(DIR, f), 'utf8'), { version: '1.1' }).map((d) => {
    assert.deepEqual(d.errors, [], `${f}: YAML errors`);
    return { ...(d.toJS() as K8sObject), file: f };
  }),
);
const find = <T extends K8sObject>(kind: string, name: string): T => {
  const o = objects.find((x) => x.kind === kind && x.metadata.name === name);
  assert.ok(o !== undefined, `${kind}/${name} is defined`);
  return o as unknown as T;
};

test('every object is valid against the Kubernetes schema', () => {
  assert.ok(objects.length >= 10);
  for (const { file, ...o } of objects) {
    const model = MODELS[o.apiVersion]?.[o.kind] as (new (data: unknown) => { validate(): void }) | undefined;
    assert.ok(model !== undefined, `${file}: no model for ${o.apiVersion} ${o.kind}`);
    assert.doesNotThrow(() => new model(o).validate(), `${file}: ${o.kind}/${o.metadata.name}`);
    if (o.kind !== 'Namespace') assert.equal(o.metadata.namespace, 'portcullis', `${o.kind}/${o.metadata.name} namespace`);
  }
  // The validator does refuse a wrong manifest (not just anything).
  assert.throws(() => new appsV1.Deployment({ metadata: { name: 'x' }, spec: { replicas: 'two' as unknown as number, selector: {}, template: {} } }).validate());
});

test('kustomization lists the manifests (and not the example secrets)', () => {
  const k = parseAllDocuments(readFileSync(join(DIR, 'kustomization.yaml'), 'utf8'))[0]!.toJS() as { resources: string[] };
  assert.deepEqual([...k.resources].sort(), files.filter((f) => f !== 'secrets.example.yaml').sort());
});

test('auth: readiness on /v1/ready, liveness on /v1/health, over HTTPS on its port', () => {
  const auth = find<Workload>('Deployment', 'portcullis-auth').spec.template.spec.containers[0]!;
  assert.deepEqual(auth.args, ['start', '--config', '/etc/portcullis/portcullis.yaml', '--roles', 'auth']);
  assert.deepEqual(auth.readinessProbe?.httpGet, { path: '/v1/ready', port: 'https', scheme: 'HTTPS' });
  assert.deepEqual(auth.livenessProbe?.httpGet, { path: '/v1/health', port: 'https', scheme: 'HTTPS' });
  assert.equal(auth.ports?.find((p) => p.name === 'https')?.containerPort, 3025);
});

test('proxy: TCP probes on 3022, and a grace period longer than its drain', () => {
  const pod = find<Workload>('Deployment', 'portcullis-proxy').spec.template.spec;
  const proxy = pod.containers[0]!;
  assert.deepEqual(proxy.args, ['start', '--config', '/etc/portcullis/portcullis.yaml', '--roles', 'proxy']);
  assert.equal(proxy.ports?.find((p) => p.name === 'ssh')?.containerPort, 3022);
  assert.deepEqual(proxy.readinessProbe?.tcpSocket, { port: 'ssh' });
  assert.deepEqual(proxy.livenessProbe?.tcpSocket, { port: 'ssh' });
  const config = loadStartConfig(configFile(), { env: {}, roles: 'proxy' });
  const drain = Number.parseInt(String(config.proxy.drain_grace), 10);
  assert.ok(pod.terminationGracePeriodSeconds! > drain + 5, `${pod.terminationGracePeriodSeconds}s > ${drain}s drain + preStop`);
});

test('Services select pods that exist, on ports the pods name', () => {
  const workloads = objects.filter((o) => o.kind === 'Deployment' || o.kind === 'StatefulSet') as unknown as Workload[];
  for (const svc of objects.filter((o) => o.kind === 'Service') as unknown as { metadata: { name: string }; spec: { selector: Record<string, string>; ports: { targetPort: string }[] } }[]) {
    const w = workloads.find((x) => Object.entries(svc.spec.selector).every(([k, v]) => x.spec.template.metadata.labels[k] === v));
    assert.ok(w !== undefined, `Service ${svc.metadata.name} selects a workload`);
    const names = w.spec.template.spec.containers.flatMap((c) => c.ports ?? []).map((p) => p.name);
    for (const p of svc.spec.ports) assert.ok(names.includes(p.targetPort), `Service ${svc.metadata.name}: port ${p.targetPort}`);
  }
  for (const w of workloads) assert.deepEqual({ ...w.spec.template.metadata.labels, ...w.spec.selector.matchLabels }, w.spec.template.metadata.labels, `${w.metadata.name}: selector matches its pods`);
});

test('every mounted ConfigMap and Secret is defined', () => {
  for (const w of objects.filter((o) => o.kind === 'Deployment' || o.kind === 'StatefulSet') as unknown as Workload[]) {
    for (const v of w.spec.template.spec.volumes ?? []) {
      if (v.configMap !== undefined) find('ConfigMap', v.configMap.name);
      if (v.secret !== undefined) find('Secret', v.secret.secretName);
    }
  }
  // Owner and the pod's fsGroup only; the init containers copy them to 0600 files.
  for (const name of ['portcullis-auth', 'portcullis-proxy']) {
    for (const v of find<Workload>('Deployment', name).spec.template.spec.volumes ?? []) {
      if (v.secret !== undefined) assert.equal((v.secret as { defaultMode?: number }).defaultMode, 0o440, `${name}: ${v.secret.secretName}`);
    }
  }
  const tls = find<K8sObject & { type: string }>('Secret', 'portcullis-auth-tls');
  assert.equal(tls.type, 'kubernetes.io/tls');
});

test('Redis is a Sentinel group in a StatefulSet, and the config points auth at its sentinels', () => {
  const redis = find<Workload & { spec: { replicas: number } }>('StatefulSet', 'redis');
  assert.equal(redis.spec.replicas, 3);
  assert.deepEqual(redis.spec.template.spec.containers.map((c) => c.name).sort(), ['redis', 'sentinel']);
  const auth = parseAuthConfig({ ...loadStartConfig(configFile(), { env: {}, roles: 'auth' }).auth, state_dir: '/var/lib/portcullis/auth' }, { env: {} });
  const sentinel = (auth.redis as { sentinel?: { name: string; sentinels: { host: string; port: number }[] } }).sentinel;
  assert.ok(sentinel !== undefined);
  assert.deepEqual(sentinel.sentinels.map((s) => `${s.host}:${s.port}`), [0, 1, 2].map((i) => `redis-${i}.redis:26379`));
  const script = find<K8sObject & { data: Record<string, string> }>('ConfigMap', 'redis-scripts').data['init.sh']!;
  assert.match(script, new RegExp(`sentinel monitor ${sentinel.name} `));
  // The proxy takes a URL only: it goes through the role-checking HAProxy service.
  const proxy = loadStartConfig(configFile(), { env: {}, roles: 'proxy' });
  assert.equal(proxy.proxy.redis?.url, 'redis://redis-master:6379');
  find('Service', 'redis-master');
});

test('the Redis init script passes shellcheck (POSIX sh: the image runs it with /bin/sh)', () => {
  const script = find<K8sObject & { data: Record<string, string> }>('ConfigMap', 'redis-scripts').data['init.sh']!;
  const r = spawnSync('shellcheck', ['--shell=sh', '-'], { input: script, encoding: 'utf8' });
  assert.equal(r.error, undefined, 'shellcheck missing (scripts/ensure-deps.sh installs it)');
  assert.equal(r.status, 0, r.stdout + r.stderr);
});

let configPath: string | undefined;
/** The ConfigMap's portcullis.yaml as a file, for the same loader `portcullis start` uses. */
function configFile(): string {
  if (configPath !== undefined) return configPath;
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-k8s-'));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  configPath = join(dir, 'portcullis.yaml');
  writeFileSync(configPath, find<K8sObject & { data: Record<string, string> }>('ConfigMap', 'portcullis-config').data['portcullis.yaml']!);
  return configPath;
}
