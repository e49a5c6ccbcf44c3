import { promptTotp } from '../common/prompt.js';
import { writeOut } from '../common/output.js';
import { loggedIn } from '../common/session.js';

/*
 * pcsh mfa add: enroll a TOTP authenticator for the logged-in user. The secret is shown once;
 * enrollment only counts after a first code proves the app holds it. Replacing a factor asks
 * for a code from the current one, so a stolen session cannot swap in another phone.
 */
export async function addTotp(opts: { profile?: string; replace?: boolean }): Promise<void> {
  const { api } = loggedIn(opts.profile);
  const current = opts.replace === true ? await promptTotp('Code from your current authenticator app: ') : undefined;
  const e = await api.call<{ secret: string; uri: string; expires_at: string }>('POST', '/v1/mfa/totp/enroll', {
    json: { ...(opts.replace === true ? { replace: true } : {}), ...(current === undefined ? {} : { totp: current }) },
  });
  writeOut(`Add this to your authenticator app (scan the URI as a QR code, or type the secret):\n  ${e.uri}\n  secret: ${e.secret}`);
  const code = await promptTotp('Code it shows now: ');
  await api.call('POST', '/v1/mfa/totp/confirm', { json: { totp: code } });
}
