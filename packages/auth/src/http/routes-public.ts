import type { FastifyInstance } from 'fastify';
import { currentKrl } from '../revocation/krl.js';
import type { CaKind } from '../ca/keystore.js';
import type { ApiContext } from './context.js';
import { iso } from './validation.js';

/** Health, readiness, metrics, the CA public keys and the KRL: what anyone may read. */
export function registerPublicRoutes(
  app: FastifyInstance,
  ctx: ApiContext,
  ready: () => Promise<{ ok: boolean; checks: Record<string, string> }>,
): void {
  // Liveness: the process answers. Nothing else is checked, so a Redis outage does not get the
  // service restarted in a loop by an orchestrator.
  app.get('/v1/health', async () => ({ status: 'ok' }));

  app.get('/v1/ready', async (_request, reply) => {
    const r = await ready();
    return reply.code(r.ok ? 200 : 503).send({ status: r.ok ? 'ready' : 'not ready', checks: r.checks });
  });

  app.get('/metrics', async (_request, reply) => {
    return reply.header('content-type', ctx.metrics.contentType).send(await ctx.metrics.text());
  });

  app.get('/v1/ca', async () => {
    const describe = (kind: CaKind) =>
      ctx.keystore.keys(kind).map((k) => ({ id: k.id, status: k.status, fingerprint: k.fingerprint, created_at: k.createdAt }));
    // Every list holds every trusted key of its kind, a staged rotation included.
    return {
      // First, with authorized_keys its first field: host agents that read "the first
      // authorized_keys in the answer" (the agentless script before the upstream CA existed)
      // then write this one, and stop trusting the user CA at their next refresh.
      upstream: {
        // The TrustedUserCAKeys file for targets' sshd: the CA of the certificates the proxy
        // dials them with, and nothing else.
        authorized_keys: ctx.keystore.authorizedKeys('upstream'),
        keys: describe('upstream'),
      },
      user: {
        // The CA of engineers' own certificates (pcsh login): the proxy trusts it, targets never.
        authorized_keys: ctx.keystore.authorizedKeys('user'),
        keys: describe('user'),
      },
      host: {
        // known_hosts lines for clients: trust host certificates signed by these keys.
        known_hosts: ctx.keystore.knownHostsLines(),
        keys: describe('host'),
      },
    };
  });

  app.get('/v1/krl', async (request, reply) => {
    const trust = ctx.revocation.trust();
    // Rebuilt at most hourly on read, which drops entries for certificates that expired since.
    const krl = await currentKrl(ctx.redis, trust, ctx.clock(), 3600_000);
    reply.header('etag', krl.etag);
    reply.header('x-krl-version', String(krl.version));
    reply.header('last-modified', new Date(krl.generatedAt).toUTCString());
    // Hosts poll: let them revalidate every time, cheaply, with If-None-Match.
    reply.header('cache-control', 'no-cache');
    const inm = request.headers['if-none-match'];
    if (typeof inm === 'string' && inm.split(',').some((t) => t.trim().replace(/^W\//, '') === krl.etag)) {
      return reply.code(304).send();
    }
    return reply.type('application/octet-stream').send(Buffer.from(krl.bytes));
  });

  app.get('/v1/krl/info', async () => {
    const krl = await currentKrl(ctx.redis, ctx.revocation.trust(), ctx.clock(), 3600_000);
    return { version: krl.version, sha256: krl.sha256, etag: krl.etag, entries: krl.entries, generated_at: iso(krl.generatedAt) };
  });

  // The page an invite link opens: it reads the token from the fragment (which browsers never
  // send to a server, so it stays out of access logs) and posts it with the new password.
  app.get('/invite', async (_request, reply) => {
    return reply
      .type('text/html; charset=utf-8')
      .header('content-security-policy', "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; form-action 'none'")
      .header('referrer-policy', 'no-referrer')
      .send(INVITE_PAGE);
  });
}

const INVITE_PAGE = `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Portcullis: set your password</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:sans-serif;max-width:28rem;margin:3rem auto}label,input,button{display:block;margin:.5rem 0;width:100%}</style>
</head><body><h1>Set your password</h1>
<form id="f"><label>New password <input type="password" id="p" autocomplete="new-password" minlength="12" required></label>
<label>Again <input type="password" id="q" autocomplete="new-password" required></label><button>Set password</button></form>
<p id="m" role="status"></p>
<script>
const token = location.hash.slice(1);
document.getElementById('f').addEventListener('submit', async (e) => {
  e.preventDefault();
  const m = document.getElementById('m');
  const p = document.getElementById('p').value;
  if (p !== document.getElementById('q').value) { m.textContent = 'The passwords differ.'; return; }
  const r = await fetch('/v1/invites/accept', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token, password: p }) });
  const b = await r.json();
  m.textContent = r.ok ? 'Password set for ' + b.user.name + '. You can log in now.' : b.error.message;
});
</script></body></html>
`;
