// The proxy's service entry (config file schema, start and drain) lives in its main.ts, which
// the package does not export; `portcullis start` runs the same code rather than a copy.
export { loadProxyServiceConfig, parseProxyServiceConfig, startProxyService } from '../../../proxy/src/main.js';
export type { ProxyServiceConfig, RunningProxyService } from '../../../proxy/src/main.js';
