// Keyless identity matching stays bounded whatever a certificate names: the certificate is only
// the pusher's word until its chain verifies, and a policy's subject pattern runs over its SANs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Authority } from '../config/types.js';
import { matchIdentity } from './identity.js';
import { IDENTITY_MAX_CHARS, IDENTITY_MAX_SANS } from './limits.js';

const ISSUER = 'https://token.actions.githubusercontent.com';
// Any repository's release workflow: three `.+`, cubic backtracking over a long value that fails.
const anyRepo: Extract<Authority, { kind: 'keyless' }> = {
  kind: 'keyless',
  issuer: /^https:\/\/token\.actions\.githubusercontent\.com$/,
  subject: /^https:\/\/github\.com\/.+\/.+\/\.github\/workflows\/.+@refs\/heads\/main$/,
  issuerText: 'https://token.actions.githubusercontent.com',
  subjectText: '^https://github\\.com/.+/.+/\\.github/workflows/.+@refs/heads/main$',
};
const hostile = (chars: number): string => `https://github.com/acme/${'/.github/workflows/'.repeat(Math.ceil(chars / 19))}`.slice(0, chars);

test('a real workflow identity still matches', () => {
  const san = 'https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main';
  assert.deepEqual(matchIdentity(anyRepo, { issuer: ISSUER, sans: [san] }), { ok: true, subject: san, issuer: ISSUER });
});

test(`a SAN longer than IDENTITY_MAX_CHARS (${IDENTITY_MAX_CHARS}) is refused before the pattern runs over it`, () => {
  // Unbounded, the pattern takes ~20 s over 16 000 such characters and minutes over 45 000.
  assert.deepEqual(matchIdentity(anyRepo, { issuer: ISSUER, sans: [hostile(45_000)] }), {
    ok: false,
    reason: `certificate subject alternative name of 45000 characters exceeds IDENTITY_MAX_CHARS (${IDENTITY_MAX_CHARS})`,
  });
  assert.equal(matchIdentity(anyRepo, { issuer: ISSUER, sans: [hostile(IDENTITY_MAX_CHARS)] }).ok, false, 'at the limit: matched, and fails as a mismatch');
});

test('an issuer longer than IDENTITY_MAX_CHARS is refused the same way', () => {
  assert.deepEqual(matchIdentity(anyRepo, { issuer: 'x'.repeat(IDENTITY_MAX_CHARS + 1), sans: [] }), {
    ok: false,
    reason: `certificate issuer of ${IDENTITY_MAX_CHARS + 1} characters exceeds IDENTITY_MAX_CHARS (${IDENTITY_MAX_CHARS})`,
  });
});

test(`more than IDENTITY_MAX_SANS (${IDENTITY_MAX_SANS}) SANs: refused, whatever they name`, () => {
  const san = 'https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main';
  assert.deepEqual(matchIdentity(anyRepo, { issuer: ISSUER, sans: Array.from({ length: IDENTITY_MAX_SANS + 1 }, () => san) }), {
    ok: false,
    reason: `certificate has ${IDENTITY_MAX_SANS + 1} subject alternative names, more than IDENTITY_MAX_SANS (${IDENTITY_MAX_SANS})`,
  });
});
