import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { AuthErrorCode } from './errors.js';

/*
 * Every label here takes values from a closed set or from the host inventory, never from
 * request data: a principal, user name or key id as a label would make one time series per
 * user and let any caller grow the registry without bound.
 */

export const CERTIFICATE_KINDS = ['user', 'upstream', 'host'] as const;
export type CertificateKind = (typeof CERTIFICATE_KINDS)[number];

/** Why a certificate was not issued; `ssh_ca_issuance_failures_total{reason}` takes only these. */
export const ISSUANCE_FAILURE_REASONS = [
  'bad_request',
  'unauthenticated',
  'forbidden',
  'locked',
  'mfa_required',
  'mfa_invalid',
  'expired',
  'not_found',
  'conflict',
  'rate_limited',
  'unavailable',
  'signing_error',
  'internal',
] as const;
export type IssuanceFailureReason = (typeof ISSUANCE_FAILURE_REASONS)[number];

const REASON_BY_CODE: Readonly<Record<AuthErrorCode, IssuanceFailureReason>> = {
  ERR_BAD_REQUEST: 'bad_request',
  ERR_UNAUTHENTICATED: 'unauthenticated',
  ERR_FORBIDDEN: 'forbidden',
  ERR_MFA_REQUIRED: 'mfa_required',
  ERR_MFA_INVALID: 'mfa_invalid',
  ERR_NOT_FOUND: 'not_found',
  ERR_CONFLICT: 'conflict',
  ERR_EXPIRED: 'expired',
  ERR_RATE_LIMITED: 'rate_limited',
  ERR_LOCKED: 'locked',
  ERR_UNAVAILABLE: 'unavailable',
  ERR_CONFIG: 'internal',
};

/** The failure reason for an AuthError code; anything else (a thrown bug) is 'internal'. */
export function issuanceFailureReason(code: AuthErrorCode | undefined): IssuanceFailureReason {
  return code === undefined ? 'internal' : REASON_BY_CODE[code];
}

const HTTP_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

/** Latency buckets around the minting goal (p99 under 20 ms) with room for slow OIDC calls. */
const HTTP_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export interface AuthMetricsOptions {
  /** Also export process_* and nodejs_* metrics (default true). */
  readonly defaultMetrics?: boolean;
  /**
   * At most this many hosts get certificate age/expiry series (default 10,000). Hosts come from
   * the enrolled inventory, which admins control, so the count is bounded; the cap only guards
   * against a runaway enrollment. Hosts beyond it are counted in
   * portcullis_metrics_hosts_dropped_total instead.
   */
  readonly maxHosts?: number;
  /** Milliseconds since the epoch; read at scrape time for certificate ages (default Date.now). */
  readonly now?: () => number;
}

export interface HostCertificateValidity {
  /** Seconds since the epoch (the certificate's valid_after / valid_before). */
  readonly validAfter: number;
  readonly validBefore: number;
}

export interface AuthMetrics {
  readonly registry: Registry;
  certificateIssued(kind: CertificateKind): void;
  issuanceFailed(reason: IssuanceFailureReason): void;
  /** The number of entries in the current revocation list. */
  setRevokedCertificates(count: number): void;
  /** Records the validity of the certificate an enrolled host now holds. */
  setHostCertificate(host: string, validity: HostCertificateValidity): void;
  /** Forgets a host removed from the inventory (its series disappear). */
  removeHostCertificate(host: string): void;
  /**
   * One HTTP request. `route` is the route template ('/v1/hosts/:name'), never the URL path;
   * requests that matched no route pass undefined and are labelled 'unmatched'.
   */
  observeHttpRequest(request: { readonly method: string; readonly route: string | undefined; readonly status: number; readonly seconds: number }): void;
  auditSinkFailed(sink: string): void;
  embeddedRedisRestarted(): void;
  /** The Prometheus text exposition of everything above. */
  text(): Promise<string>;
  readonly contentType: string;
}

export function createAuthMetrics(options: AuthMetricsOptions = {}): AuthMetrics {
  const registry = new Registry();
  if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });
  const now = options.now ?? Date.now;
  const maxHosts = options.maxHosts ?? 10_000;
  const hosts = new Map<string, HostCertificateValidity>();

  const issued = new Counter({
    name: 'ssh_ca_certificates_issued_total',
    help: 'Certificates signed by the CA, by kind (user or host).',
    labelNames: ['kind'] as const,
    registers: [registry],
  });
  const failures = new Counter({
    name: 'ssh_ca_issuance_failures_total',
    help: 'Certificate requests refused or failed, by reason.',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  // Named as the seed names it, though a gauge: it is the current size of the revocation list.
  const revoked = new Gauge({
    name: 'ssh_revoked_certs_total',
    help: 'Entries in the current revocation list (KRL).',
    registers: [registry],
  });
  new Gauge({
    name: 'ssh_ca_cert_age_seconds',
    help: "Seconds since the enrolled host's current host certificate became valid.",
    labelNames: ['host'] as const,
    registers: [registry],
    collect() {
      this.reset();
      const t = now() / 1000;
      for (const [host, v] of hosts) this.set({ host }, Math.round(t - v.validAfter));
    },
  });
  // The series to alert on: an expired host certificate locks every user out of that host.
  const expiry = new Gauge({
    name: 'ssh_ca_host_cert_expiry_timestamp_seconds',
    help: "When the enrolled host's current host certificate expires (alert on expiry - time()).",
    labelNames: ['host'] as const,
    registers: [registry],
  });
  const hostsDropped = new Counter({
    name: 'portcullis_metrics_hosts_dropped_total',
    help: 'Host certificate updates not exported because maxHosts series already exist.',
    registers: [registry],
  });
  const http = new Histogram({
    name: 'portcullis_auth_http_request_duration_seconds',
    help: 'auth HTTP API latency by method, route template and status code.',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: HTTP_BUCKETS,
    registers: [registry],
  });
  const auditFailures = new Counter({
    name: 'portcullis_audit_sink_failures_total',
    help: 'Audit events a sink failed to store (the other sinks still got them).',
    labelNames: ['sink'] as const,
    registers: [registry],
  });
  const restarts = new Counter({
    name: 'portcullis_embedded_redis_restarts_total',
    help: 'Restarts of the embedded redis-server after it died.',
    registers: [registry],
  });
  // Zero-valued series for the closed sets, so that rate() and alerts see them before the first event.
  for (const kind of CERTIFICATE_KINDS) issued.inc({ kind }, 0);
  for (const reason of ISSUANCE_FAILURE_REASONS) failures.inc({ reason }, 0);

  return {
    registry,
    contentType: registry.contentType,
    certificateIssued(kind) {
      if (!CERTIFICATE_KINDS.includes(kind)) throw new TypeError(`metrics: "kind" expected user, upstream or host, got ${JSON.stringify(kind)}`);
      issued.inc({ kind });
    },
    issuanceFailed(reason) {
      if (!ISSUANCE_FAILURE_REASONS.includes(reason)) throw new TypeError(`metrics: unknown issuance failure reason ${JSON.stringify(reason)}`);
      failures.inc({ reason });
    },
    setRevokedCertificates(count) {
      revoked.set(count);
    },
    setHostCertificate(host, validity) {
      if (!hosts.has(host) && hosts.size >= maxHosts) {
        hostsDropped.inc();
        return;
      }
      hosts.set(host, validity);
      expiry.set({ host }, validity.validBefore);
    },
    removeHostCertificate(host) {
      if (hosts.delete(host)) expiry.remove({ host });
    },
    observeHttpRequest({ method, route, status, seconds }) {
      const m = method.toUpperCase();
      http.observe(
        {
          method: HTTP_METHODS.has(m) ? m : 'OTHER',
          route: route === undefined || !route.startsWith('/') ? 'unmatched' : route.split('?')[0] ?? 'unmatched',
          status: Number.isInteger(status) && status >= 100 && status <= 599 ? String(status) : '0',
        },
        seconds,
      );
    },
    auditSinkFailed(sink) {
      auditFailures.inc({ sink });
    },
    embeddedRedisRestarted() {
      restarts.inc();
    },
    text: () => registry.metrics(),
  };
}
