import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isAuthError } from '../src/errors.js';
import { checkRedirectUri, identityFromClaims, mapRoles, type ClaimMapping } from '../src/identity/claims.js';
import { checkPendingLogin } from '../src/identity/oidc.js';

const mapping: ClaimMapping = {
  usernameClaim: 'preferred_username',
  groupsClaim: 'groups',
  roleMapping: [
    { value: 'eng', roles: ['developer'] },
    { value: 'sre', roles: ['operator', 'developer'] },
    { claim: 'department', value: 'security', roles: ['auditor'] },
  ],
};

describe('claims to identity and roles (pure)', () => {
  test('groups and other claims map to sorted, unique roles', () => {
    assert.deepEqual(mapRoles({ groups: ['sre', 'eng'] }, mapping), ['developer', 'operator']);
    assert.deepEqual(mapRoles({ groups: 'eng' }, mapping), ['developer']); // a single string counts
    assert.deepEqual(mapRoles({ groups: ['x'], department: 'security' }, mapping), ['auditor']);
    assert.deepEqual(mapRoles({ groups: [1, { eng: true }, null] }, mapping), []);
    assert.deepEqual(mapRoles({}, mapping), []);
  });

  test('an identity from claims keeps person claims and drops protocol claims', () => {
    const id = identityFromClaims('https://idp', {
      sub: 's1', preferred_username: 'alice', groups: ['eng', 7], email: 'a@x', nonce: 'n', aud: 'c', exp: 1, unix_login: 'al',
    }, mapping);
    assert.deepEqual(id, {
      issuer: 'https://idp',
      subject: 's1',
      username: 'alice',
      groups: ['eng'],
      roles: ['developer'],
      claims: { sub: 's1', preferred_username: 'alice', email: 'a@x', unix_login: 'al' },
    });
  });

  test('refusals: no subject, no username claim, no mapped role (with what was seen)', () => {
    assert.throws(() => identityFromClaims('i', { preferred_username: 'a', groups: ['eng'] }, mapping), (e: unknown) => isAuthError(e, 'ERR_UNAUTHENTICATED'));
    assert.throws(
      () => identityFromClaims('i', { sub: 's', email: 'a@x', groups: ['eng'] }, mapping),
      (e: unknown) => isAuthError(e, 'ERR_UNAUTHENTICATED') && /no preferred_username claim for subject s/.test(e.message),
    );
    assert.throws(
      () => identityFromClaims('i', { sub: 's', preferred_username: 'bob', groups: ['sales', 'emea'] }, mapping),
      (e: unknown) => isAuthError(e, 'ERR_FORBIDDEN') && e.message === 'no Portcullis role for bob: groups sales, emea match no rule of the role mapping',
    );
    assert.throws(
      () => identityFromClaims('i', { sub: 's', preferred_username: 'bob' }, mapping),
      (e: unknown) => isAuthError(e, 'ERR_FORBIDDEN') && /groups \(none\)/.test(e.message),
    );
  });
});

describe('redirect URIs (RFC 8252 loopback, exact web URIs)', () => {
  const policy = { redirectUris: ['https://bastion.example/cb'], loopbackPath: '/callback' };
  test('allowed', () => {
    assert.equal(checkRedirectUri('https://bastion.example/cb', policy), 'https://bastion.example/cb');
    assert.equal(checkRedirectUri('http://127.0.0.1:49152/callback', policy), 'http://127.0.0.1:49152/callback');
    assert.equal(checkRedirectUri('http://[::1]:8080/callback', policy), 'http://[::1]:8080/callback');
  });
  test('refused', () => {
    for (const uri of [
      'https://bastion.example/cb/',
      'https://bastion.example/cb?next=/',
      'http://bastion.example/cb',
      'https://127.0.0.1:443/callback',
      'http://localhost:8080/callback',
      'http://127.0.0.2:8080/callback',
      'http://127.0.0.1/callback',
      'http://127.0.0.1:8080/Callback',
      'http://user:pw@127.0.0.1:8080/callback',
      'javascript:alert(1)',
      '',
    ]) {
      assert.throws(() => checkRedirectUri(uri, policy), (e: unknown) => isAuthError(e, 'ERR_BAD_REQUEST'), uri);
    }
    assert.throws(() => checkRedirectUri('http://127.0.0.1:8080/callback', { ...policy, loopbackPath: undefined }), /not allowed/);
  });
});

describe('pending login checks (pure)', () => {
  const pending = { kind: 'code', redirectUri: 'r', codeVerifier: 'v', nonce: 'n', createdAt: 0, expiresAt: 1000 } as const;
  test('fresh, used, expired, unknown, wrong kind', () => {
    assert.equal(checkPendingLogin(pending, 'code', 999), pending);
    assert.throws(() => checkPendingLogin(pending, 'code', 1000), (e: unknown) => isAuthError(e, 'ERR_EXPIRED'));
    assert.throws(() => checkPendingLogin({ ...pending, usedAt: 5 }, 'code', 10), (e: unknown) => isAuthError(e, 'ERR_UNAUTHENTICATED') && /already used/.test(e.message));
    // Used wins over expired: the more useful message for a replayed callback.
    assert.throws(() => checkPendingLogin({ ...pending, usedAt: 5 }, 'code', 5000), /already used/);
    assert.throws(() => checkPendingLogin(undefined, 'code', 0), /unknown OIDC state/);
    assert.throws(() => checkPendingLogin(pending, 'device', 0), /unknown device login/);
  });
});
