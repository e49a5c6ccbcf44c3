/**
 * What the proxy tells the audit log. The names follow auth's event table (audit/codes.ts,
 * the 5xxx "SSH sessions" rows); the caller forwards events to auth's audit stream. Fields are
 * flat, JSON-safe values; serials are decimal strings (uint64 does not fit a JSON number).
 */
export type ProxyAuditEventName =
  /** A client connection or channel was refused; `stage` and `reason` say where and why. */
  | 'session.refused'
  /** A client authenticated and its connection to a target began. */
  | 'session.start'
  /** A proxied connection ended; bytes each way and the last exit status. */
  | 'session.end'
  /** A live connection was ended by a lock, a revocation, an idle timeout or a shutdown. */
  | 'session.terminated'
  /** A command ran (exec, or the certificate's force-command), a shell or a subsystem started. */
  | 'session.exec'
  /** A port forward was opened or refused (-L/-D: local, -R: remote). */
  | 'session.port_forward'
  /**
   * Recording trouble (Redis or the disk failing, events spooled or lost, recovery), or a
   * recording finished from the spool of a proxy that died: `kind` and `action` say which.
   */
  | 'session.recording';

export type AuditValue = string | number | boolean | null | readonly string[];

export interface ProxyAuditEvent {
  readonly name: ProxyAuditEventName;
  /** Milliseconds since the epoch, from the proxy's clock. */
  readonly time: number;
  /** `warning` for refusals and terminations, `info` otherwise. */
  readonly severity: 'info' | 'warning';
  readonly fields: Readonly<Record<string, AuditValue>>;
}

/** Where a refusal happened. */
export type RefusalStage = 'auth' | 'route' | 'upstream' | 'channel';

/** The identity fields every event about an authenticated connection carries. */
export interface AuditIdentity {
  readonly sessionId: string;
  readonly user: string;
  readonly login: string;
  readonly host: string;
  readonly clientAddress: string;
  readonly certSerial: bigint;
  readonly certKeyId: string;
}

export function identityFields(id: AuditIdentity): Record<string, AuditValue> {
  return {
    sessionId: id.sessionId,
    user: id.user,
    login: id.login,
    host: id.host,
    clientAddress: id.clientAddress,
    certSerial: id.certSerial.toString(),
    certKeyId: id.certKeyId,
  };
}

/** Emits one event; `warning` marks an otherwise informational event as a refusal. */
export type AuditFn = (name: ProxyAuditEventName, fields: Record<string, AuditValue | undefined>, warning?: boolean) => void;

/** An audit sink that never lets a failing callback break the connection being audited. */
export function safeAudit(
  sink: (event: ProxyAuditEvent) => void,
  log: (level: 'error', message: string) => void,
  now: () => number,
): AuditFn {
  return (name, fields, warning) => {
    const clean: Record<string, AuditValue> = {};
    for (const [k, v] of Object.entries(fields)) if (v !== undefined) clean[k] = v;
    const severity = warning === true || name === 'session.refused' || name === 'session.terminated' ? 'warning' : 'info';
    try {
      sink({ name, time: now(), severity, fields: clean });
    } catch (e) {
      log('error', `audit callback failed for ${name}: ${e instanceof Error ? e.message : String(e)}`);
    }
  };
}
