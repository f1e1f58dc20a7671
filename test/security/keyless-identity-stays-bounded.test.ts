// A keyless certificate is the pusher's word until its chain verifies, yet the policy's identity
// pattern runs over what it names first. Through a real registry: an attestation whose
// certificate names an identity of tens of thousands of characters, under a subject pattern that
// backtracks (any repository's workflow: three `.+`), is refused at once; sigil keeps serving.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { PREDICATE, attestationLayer, slsaProvenance, statement } from '../helpers/attester.js';
import { pushLegacyAttestation, pushLegacySignature } from '../helpers/publish.js';
import type { SigilHandle } from '../helpers/sigil.js';
import { legacyLayer } from '../helpers/signer.js';
import { ISSUER, SUBJECT, UPSTREAM, pull, startVerifyEnv, type VerifyEnv } from '../helpers/verify-env.js';
import { IDENTITY_MAX_CHARS } from '../../src/verify/limits.js';

let env: VerifyEnv;
let sigil: SigilHandle;

before(async () => {
  env = await startVerifyEnv();
  sigil = await env.sigil(`
  - name: any-repository
    match: ["${UPSTREAM}/keyless/**"]
    mode: enforce
    authorities:
      - keyless: { issuer: ${ISSUER}, subjectRegExp: '^https://github\\.com/.+/.+/\\.github/workflows/.+@refs/heads/main$' }
    attestations:
      - name: any-provenance
        predicateType: ${PREDICATE.SLSA_V1}
`);
});
after(async () => {
  await env?.stop();
});

test('an attestation certificate naming a 40 000-character identity: 403 without backtracking over it, and the next pull is served', async () => {
  const id = env.sigstore.issueIdentity(SUBJECT, ISSUER);
  const hostile = env.sigstore.issueIdentity(`https://github.com/acme/${'/.github/workflows/'.repeat(2100)}`.slice(0, 40_000), ISSUER);
  const provenance = (digest: string): Buffer => statement(digest, PREDICATE.SLSA_V1, slsaProvenance({ builderId: SUBJECT, repository: 'https://github.com/acme/app' }));

  const img = await env.push('keyless/hostile', 'v1');
  await pushLegacySignature(env.target, 'keyless/hostile', img.digest, [legacyLayer(id, img.digest, { rekor: env.sigstore })]);
  // No Rekor entry is needed to reach the identity match (and its certificate would not fit in one).
  await pushLegacyAttestation(env.target, 'keyless/hostile', img.digest, [attestationLayer(hostile, provenance(img.digest))]);
  const r = await pull(sigil, 'keyless/hostile', 'v1');
  assert.equal(r.status, 403, r.body.toString());
  assert.match(r.json().errors[0].message, new RegExp(`subject alternative name of \\d+ characters exceeds IDENTITY_MAX_CHARS \\(${IDENTITY_MAX_CHARS}\\)`));

  const good = await env.push('keyless/good', 'v1');
  await pushLegacySignature(env.target, 'keyless/good', good.digest, [legacyLayer(id, good.digest, { rekor: env.sigstore })]);
  await pushLegacyAttestation(env.target, 'keyless/good', good.digest, [attestationLayer(id, provenance(good.digest), { rekor: env.sigstore })]);
  assert.equal((await pull(sigil, 'keyless/good', 'v1')).status, 200);
});
