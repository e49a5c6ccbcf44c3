// The proxy as a service (startProxyService, what `portcullis start` and main.ts run) beside a
// startSystem(): the same enrollment, host keys written to files as the service reads them,
// and auth reached through the system's HTTP authority; only the redis section is the test's.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { formatCertificate, formatPrivateKey } from '@portcullis/cert-core';
import { nodeCrypto } from '@portcullis/cert-core/node';
import { parseProxyServiceConfig, startProxyService } from '@portcullis/proxy/main';
import type { RunningProxyService } from '@portcullis/proxy/main';
import type { ProxyAuditEvent } from '@portcullis/proxy';
import type { System } from './portcullis.js';

export interface ProxyServiceHandle {
  readonly service: RunningProxyService;
  readonly port: number;
  readonly stateDir: string;
  readonly audit: ProxyAuditEvent[];
  readonly logs: string[];
  stop(): Promise<void>;
}

export async function startProxyServiceFor(
  sys: System,
  o: { readonly name: string; readonly redis: unknown; readonly uploadInterval?: string },
): Promise<ProxyServiceHandle> {
  const stateDir = sys.dir.file(`proxy-${o.name}`);
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const key = sys.enrollment.hostKeys[0];
  if (key === undefined) throw new Error('the proxy enrollment has no host key');
  writeFileSync(join(stateDir, 'host_key'), formatPrivateKey(key.privateKey, { crypto: nodeCrypto }), { mode: 0o600 });
  writeFileSync(join(stateDir, 'host_key-cert.pub'), `${formatCertificate(key.certificate)}\n`);
  const config = parseProxyServiceConfig({
    state_dir: stateDir,
    name: 'bastion.example.test',
    listen: '127.0.0.1:0',
    redis: o.redis,
    recording: { upload_interval: o.uploadInterval ?? '1s' },
    drain_grace: '1s',
  });
  const audit: ProxyAuditEvent[] = [];
  const logs: string[] = [];
  const service = await startProxyService(config, {
    authority: sys.authority,
    audit: (e) => audit.push(e),
    log: (level, m) => logs.push(`${new Date().toISOString()} ${level}: ${m}`),
  });
  return { service, port: service.proxy.port, stateDir, audit, logs, stop: () => service.stop() };
}
