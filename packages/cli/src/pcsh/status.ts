import { optionString, type Certificate } from '@portcullis/cert-core';
import { formatTime, formatUntil, printJson, writeOut } from '../common/output.js';
import { loggedIn } from '../common/session.js';
import { readCertificate } from './certificate.js';

/*
 * pcsh status: who auth says you are (GET /v1/me: the session is checked, not just read from
 * disk) and what the certificate on disk allows, read with cert-core rather than trusted from
 * what auth answered when it was minted.
 */

interface Me {
  readonly user: { readonly name: string; readonly kind: string; readonly roles: readonly string[]; readonly mfa: readonly string[] };
  readonly admin: boolean;
  readonly session: { readonly method: string; readonly mfa_verified: boolean; readonly created_at: string; readonly expires_at: string };
  readonly access: { readonly roles: readonly string[]; readonly logins: readonly string[]; readonly max_cert_ttl: number; readonly require_session_mfa: boolean };
}

function certificateView(cert: Certificate, path: string, now: number): Record<string, unknown> {
  const t = BigInt(Math.floor(now / 1000));
  return {
    path,
    serial: cert.serial.toString(),
    key_id: cert.keyId,
    principals: cert.principals,
    valid_after: new Date(Number(cert.validAfter) * 1000).toISOString(),
    valid_before: new Date(Number(cert.validBefore) * 1000).toISOString(),
    valid: cert.validAfter <= t && t < cert.validBefore,
    extensions: cert.extensions.map((e) => e.name),
    critical_options: Object.fromEntries(cert.criticalOptions.map((o) => [o.name, optionString(o) ?? ''])),
  };
}

export async function status(opts: { profile?: string; json?: boolean }): Promise<void> {
  const now = Date.now();
  const { store, profile, api } = loggedIn(opts.profile, now);
  const me = await api.call<Me>('GET', '/v1/me');
  const paths = store.keyPaths(profile.name);
  const cert = readCertificate(paths.certificate);
  const certView = cert === undefined ? undefined : certificateView(cert, paths.certificate, now);
  if (opts.json === true) {
    printJson({ profile: profile.name, auth_url: profile.authUrl, ...me, certificate: certView ?? null });
    return;
  }
  const rows: [string, string][] = [
    ['Profile', `${profile.name}${store.current() === profile.name ? ' (current)' : ''}`],
    ['Auth', profile.authUrl],
    ['User', `${me.user.name} (${me.user.kind}${me.admin ? ', admin' : ''})`],
    ['Roles', me.access.roles.join(', ') || '-'],
    ['Logins', me.access.logins.join(', ') || '-'],
    ['Session', `${me.session.method}, ${me.session.mfa_verified ? 'second factor verified' : 'no second factor'}, valid until ${formatUntil(me.session.expires_at, now)}`],
  ];
  if (me.access.require_session_mfa) rows.push(['MFA', 'a second factor is asked for every certificate']);
  if (cert === undefined || certView === undefined) {
    rows.push(['Certificate', 'none (pcsh certificate ensure mints one)']);
  } else {
    const opts = Object.entries(certView['critical_options'] as Record<string, string>).map(([k, v]) => (v === '' ? k : `${k} ${v}`));
    rows.push(
      ['Certificate', paths.certificate],
      ['  Serial', cert.serial.toString()],
      ['  Key ID', cert.keyId],
      ['  Principals', cert.principals.join(', ')],
      ['  Valid', `from ${formatTime(Number(cert.validAfter) * 1000)} until ${formatUntil(Number(cert.validBefore) * 1000, now)}`],
      ['  Extensions', cert.extensions.map((e) => e.name).join(', ') || '-'],
      ['  Critical', opts.join(', ') || '-'],
    );
  }
  const width = Math.max(...rows.map(([k]) => k.length)) + 1;
  writeOut(rows.map(([k, v]) => `${`${k}:`.padEnd(width)} ${v}`).join('\n'));
}
