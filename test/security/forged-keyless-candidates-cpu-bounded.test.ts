// A forged keyless candidate would cost the full @sigstore/verify run
// (SET, certificate chain, SCT, Rekor body) before its signature is found not to match, because
// Verifier.verify() checks the signature last. Whoever can push to the upstream can attach
// MAX_CANDIDATES (48) such candidates — a genuine public certificate, SET and signature of the
// trusted identity copied from any real signature, with a payload retargeted at the served
// digest — and every decision on that digest would then block the event loop for ~0.5 s
// (re-done every FAILURE_TTL_MS, for as many digests as the attacker pushes).
// The bound: the signature is checked with the leaf's (or key's) public key first (a few
// microseconds), and the Verifier runs only for a signature that passes that check. Counted,
// not timed: the Verifier's runs are counted on its prototype while the candidates are checked.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Verifier } from '@sigstore/verify';
import { verifyCandidates } from '../../src/verify/index.js';
import type { CandidateSignature } from '../../src/verify/index.js';
import type { Digest } from '../../src/oci/digest.js';
import { keyless, legacyFixture, policy, publicGoodTrust } from '../helpers/verify-fixtures.js';

/** What `fn` returns, and how many times it ran the full @sigstore/verify Verifier. */
function countingVerifierRuns<T>(fn: () => T): { value: T; runs: number } {
  const original = Object.getOwnPropertyDescriptor(Verifier.prototype, 'verify');
  assert.ok(original && typeof original.value === 'function', 'Verifier.prototype.verify');
  let runs = 0;
  Object.defineProperty(Verifier.prototype, 'verify', {
    ...original,
    value: function (this: Verifier, ...args: unknown[]): unknown {
      runs++;
      return (original.value as (...a: unknown[]) => unknown).apply(this, args);
    },
  });
  try {
    return { value: fn(), runs };
  } finally {
    Object.defineProperty(Verifier.prototype, 'verify', original);
  }
}

test('48 forged keyless candidates (genuine certificate + SET, other payload) are rejected without one full Verifier run', () => {
  const f = legacyFixture('dir-img-cosign-fulcio-rekor-valid');
  const trust = publicGoodTrust();
  const p = policy([keyless('https://github.com/login/oauth', 'mitr@redhat.com')]);
  const served = `sha256:${'cd'.repeat(32)}` as Digest;
  const doc = JSON.parse(f.candidate.payload.toString('utf8')) as { critical: { image: Record<string, string> } };
  doc.critical.image['docker-manifest-digest'] = served;
  const payload = Buffer.from(JSON.stringify(doc));
  const forged: CandidateSignature[] = Array.from({ length: 48 }, (_, i) => ({ ...f.candidate, source: `layer ${i}`, payload }));
  const now = new Date('2023-01-20T12:00:00Z');

  // The genuine candidate passes the cheap check and runs the Verifier: the count sees it.
  const genuine = countingVerifierRuns(() => verifyCandidates([f.candidate], { digest: f.digest }, p, trust, { now }));
  assert.equal(genuine.value.kind, 'verified', JSON.stringify(genuine.value));
  assert.ok(genuine.runs >= 1, 'the genuine signature is verified by the Verifier');

  const forgedRun = countingVerifierRuns(() => verifyCandidates(forged, { digest: served }, p, trust, { now }));
  const o = forgedRun.value;
  assert.equal(o.kind, 'invalid');
  assert.equal(o.checks.length, 48, 'every forged candidate was checked');
  for (const c of o.checks) assert.ok(!c.ok && /signature does not verify/.test(c.reason), `${c.source}: ${c.ok ? 'ok' : c.reason}`);
  assert.equal(forgedRun.runs, 0, 'no forged candidate reached the full Verifier run');
});
