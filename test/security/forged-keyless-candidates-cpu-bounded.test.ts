// A forged keyless candidate costs the full @sigstore/verify run
// (SET, certificate chain, SCT, Rekor body) before its signature is found not to match, because
// Verifier.verify() checks the signature last. Whoever can push to the upstream can attach
// MAX_CANDIDATES (48) such candidates — a genuine public certificate, SET and signature of the
// trusted identity copied from any real signature, with a payload retargeted at the served
// digest — and every decision on that digest then blocks the event loop for ~0.5 s
// (re-done every FAILURE_TTL_MS, for as many digests as the attacker pushes).
// Fix: check the signature with the leaf's (or key's) public key before running the Verifier.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { verifyCandidates } from '../../src/verify/index.js';
import type { CandidateSignature } from '../../src/verify/index.js';
import type { Digest } from '../../src/oci/digest.js';
import { keyless, legacyFixture, policy, publicGoodTrust } from '../helpers/verify-fixtures.js';

/** Generous: 48 cheap signature checks take a few ms; the full Verifier run takes ~10 ms each. */
const BUDGET_MS = 150;

test('48 forged keyless candidates (genuine certificate + SET, other payload) are rejected within the CPU budget', () => {
  const f = legacyFixture('dir-img-cosign-fulcio-rekor-valid');
  const trust = publicGoodTrust();
  const p = policy([keyless('https://github.com/login/oauth', 'mitr@redhat.com')]);
  const served = `sha256:${'cd'.repeat(32)}` as Digest;
  const doc = JSON.parse(f.candidate.payload.toString('utf8')) as { critical: { image: Record<string, string> } };
  doc.critical.image['docker-manifest-digest'] = served;
  const payload = Buffer.from(JSON.stringify(doc));
  const forged: CandidateSignature[] = Array.from({ length: 48 }, (_, i) => ({ ...f.candidate, source: `layer ${i}`, payload }));
  const now = new Date('2023-01-20T12:00:00Z');
  verifyCandidates([f.candidate], { digest: f.digest }, p, trust, { now }); // warm up
  const t0 = performance.now();
  const o = verifyCandidates(forged, { digest: served }, p, trust, { now });
  const ms = performance.now() - t0;
  assert.equal(o.kind, 'invalid');
  assert.ok(ms < BUDGET_MS, `rejecting 48 forged candidates blocked the event loop for ${ms.toFixed(0)} ms`);
});
