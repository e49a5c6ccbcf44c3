// A proxy worker process for the worker-pool test: the same proxy the system runs in-process
// (same enrollment, same auth), started by runProxyWorker; its audit events go to the primary.
import { readFileSync } from 'node:fs';
import { parseCertificateText, parsePrivateKey } from '@portcullis/cert-core';
import { HttpAuthority, runProxyWorker, startProxy } from '@portcullis/proxy';
import type { SigningPrivateKey } from '@portcullis/cert-core';

export interface WorkerConfig {
  readonly url: string;
  readonly fingerprint: string;
  readonly credential: string;
  readonly hostKeys: readonly { readonly privateKey: string; readonly certificate: string }[];
  readonly ports: Readonly<Record<string, number>>;
  readonly listenPort: number;
}

const config = JSON.parse(readFileSync(process.env['PORTCULLIS_E2E_WORKER_CONFIG']!, 'utf8')) as WorkerConfig;
let authority: HttpAuthority | undefined;
await runProxyWorker(
  () => {
    authority = new HttpAuthority({
      url: config.url,
      fingerprint: config.fingerprint,
      credential: config.credential,
      dialAddress: (h) => ({ address: '127.0.0.1', port: config.ports[h.name] ?? 1 }),
    });
    return startProxy({
      authority,
      hostKeys: config.hostKeys.map((k) => ({
        privateKey: parsePrivateKey(k.privateKey).key as SigningPrivateKey,
        certificate: parseCertificateText(k.certificate).cert,
      })),
      listen: { host: '127.0.0.1', port: config.listenPort },
      audit: (event) => process.send?.({ type: 'e2e:audit', event }),
      log: () => {},
      name: 'bastion.example.test',
    });
  },
  { afterStop: () => authority?.close(), graceMs: 5_000 },
);
