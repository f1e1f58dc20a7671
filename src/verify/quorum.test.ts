// N-of-M (`threshold` on a policy): at least N distinct authorities must verify, each by a
// signature of its own signer. First the counting alone, then through verifyCandidates with real
// signatures made by the test signer (test/helpers/signer.ts).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Digest } from '../oci/digest.js';
import { countQuorum, type Pass } from './quorum.js';
import { verifyCandidates } from './candidates.js';
import type { CandidateSignature, Outcome, Signer } from './types.js';
import { compressedPublicPem, generateKey, legacyLayer, bundleFor, type TestKey } from '../../test/helpers/signer.js';
import { keyAuthority, keyless, policy, privateSigstoreSuite, publicGoodTrust } from '../../test/helpers/verify-fixtures.js';

const LABELS = ['authority 0 (key a)', 'authority 1 (key b)', 'authority 2 (key c)'];
const key = (id: string): Signer => ({ kind: 'key', keyId: id });
const pass = (source: string, authority: number, signer: Signer, signingKey = signer.kind === 'key' ? signer.keyId : `eph-${source}`): Pass => ({ source, authority, signer, signingKey });

describe('countQuorum: distinct authorities, each met by a distinct signer', () => {
  test('every authority met by its own key', () => {
    const q = countQuorum([pass('s0', 0, key('a')), pass('s1', 1, key('b'))], LABELS, 2);
    assert.deepEqual(q, {
      threshold: 2,
      met: [
        { authority: LABELS[0], signer: key('a'), source: 's0' },
        { authority: LABELS[1], signer: key('b'), source: 's1' },
      ],
      unmet: [{ authority: LABELS[2], why: 'no signature verified' }],
    });
  });

  test('the same key signing twice counts once', () => {
    const q = countQuorum([pass('s0', 0, key('a')), pass('s1', 0, key('a'))], LABELS, 2);
    assert.deepEqual(q.met.map((m) => m.source), ['s0']);
  });

  test('one signer fitting two authorities is credited to one of them only', () => {
    const both = key('a');
    const q = countQuorum([pass('s0', 0, both), pass('s0', 1, both)], LABELS, 2);
    assert.equal(q.met.length, 1);
    assert.deepEqual(q.unmet, [
      { authority: LABELS[1], why: 'only signers counted for another authority verified' },
      { authority: LABELS[2], why: 'no signature verified' },
    ]);
  });

  test('one signature that verified under two authorities, whatever signing keys they name, is one signer', () => {
    const q = countQuorum([pass('s0', 0, key('a'), 'ka'), pass('s0', 1, key('b'), 'kb')], LABELS, 2);
    assert.equal(q.met.length, 1);
  });

  test('a keyless identity signing twice, with two ephemeral keys, counts once', () => {
    const alice: Signer = { kind: 'keyless', subject: 'alice@acme.test', issuer: 'https://idp' };
    const q = countQuorum([pass('s0', 0, alice, 'k0'), pass('s1', 1, alice, 'k1')], LABELS, 2);
    assert.equal(q.met.length, 1);
  });

  test('a signer that fits two authorities does not take the only one another signer fits', () => {
    // s0 fits 0 and 1, s1 fits only 0: the matching gives 1 to s0 and 0 to s1.
    const q = countQuorum([pass('s0', 0, key('a')), pass('s0', 1, key('a')), pass('s1', 0, key('b'))], LABELS, 2);
    assert.deepEqual(q.met.map((m) => [m.authority, m.source]), [[LABELS[0], 's1'], [LABELS[1], 's0']]);
  });
});

const digest = `sha256:${'7e'.repeat(32)}` as Digest;
const legacy = (k: TestKey, source: string): CandidateSignature => {
  const l = legacyLayer(k, digest);
  return { format: 'legacy', source, payload: l.payload, annotations: l.annotations };
};

describe('verifyCandidates with threshold 2 of 3 keys', () => {
  const [a, b, c] = [generateKey('p256'), generateKey('ed25519'), generateKey('rsa')];
  const twoOfThree = { ...policy([keyAuthority(a.publicPem, 'ignore'), keyAuthority(b.publicPem, 'ignore'), keyAuthority(c.publicPem, 'ignore')]), threshold: 2 };
  const trust = publicGoodTrust();
  const verify = (...cs: CandidateSignature[]): Outcome => verifyCandidates(cs, { digest }, twoOfThree, trust);
  const label = (k: TestKey, i: number): string => `authority ${i} (key ${k.keyId})`;

  test('one signature: invalid, the one authority met is named and the other two are not', () => {
    const out = verify(legacy(a, 'layer 0'));
    assert.equal(out.kind, 'invalid');
    assert.deepEqual(out.kind === 'invalid' && out.quorum, {
      threshold: 2,
      met: [{ authority: label(a, 0), signer: { kind: 'key', keyId: a.keyId }, source: 'layer 0' }],
      unmet: [
        { authority: label(b, 1), why: 'no signature verified' },
        { authority: label(c, 2), why: 'no signature verified' },
      ],
    });
  });

  test('two signatures by distinct keys: verified, both credited', () => {
    const out = verify(legacy(a, 'layer 0'), legacy(c, 'layer 1'));
    assert.equal(out.kind, 'verified');
    assert.deepEqual(out.kind === 'verified' && out.quorum?.met.map((m) => [m.authority, m.source]), [[label(a, 0), 'layer 0'], [label(c, 2), 'layer 1']]);
    assert.deepEqual(out.kind === 'verified' && out.signer, { kind: 'key', keyId: a.keyId });
  });

  test('three signatures: verified as soon as two authorities are met', () => {
    const out = verify(legacy(b, 'layer 0'), legacy(c, 'layer 1'), legacy(a, 'layer 2'));
    assert.equal(out.kind, 'verified');
    assert.deepEqual(out.checks.map((ch) => ch.source), ['layer 0', 'layer 1']);
    assert.deepEqual(out.kind === 'verified' && out.quorum?.unmet, [{ authority: label(a, 0), why: 'no signature verified' }]);
  });

  test('the same key signing twice counts once', () => {
    const out = verify(legacy(a, 'layer 0'), legacy(a, 'layer 1'));
    assert.equal(out.kind, 'invalid');
    assert.deepEqual(out.checks.map((ch) => ch.ok), [true, true]);
    assert.equal(out.kind === 'invalid' && out.quorum?.met.length, 1);
  });

  test('a signature of a key no authority lists adds nothing; no signature at all is still unsigned', () => {
    const out = verify(legacy(a, 'layer 0'), legacy(generateKey('p256'), 'layer 1'));
    assert.equal(out.kind === 'invalid' && out.quorum?.met.length, 1);
    assert.deepEqual(verify(), { kind: 'unsigned', checks: [] });
  });

  test('threshold 1 (or none) keeps the first pass and no quorum', () => {
    const out = verifyCandidates([legacy(a, 'layer 0'), legacy(b, 'layer 1')], { digest }, { ...twoOfThree, threshold: 1 }, trust);
    assert.deepEqual(out, { kind: 'verified', signer: { kind: 'key', keyId: a.keyId }, checks: [{ source: 'layer 0', ok: true, signer: { kind: 'key', keyId: a.keyId }, authority: 0 }] });
  });
});

describe('verifyCandidates: one key listed twice in two encodings is one signer', () => {
  const trust = publicGoodTrust();

  for (const kind of ['p256', 'p384'] as const) {
    test(`${kind}: the key with its point uncompressed and compressed (two key ids) is met by one signature once`, () => {
      const k = generateKey(kind);
      const twice = { ...policy([keyAuthority(k.publicPem, 'ignore'), keyAuthority(compressedPublicPem(k), 'ignore')]), threshold: 2 };
      const out = verifyCandidates([legacy(k, 'layer 0'), legacy(k, 'layer 1')], { digest }, twice, trust);
      assert.equal(out.kind, 'invalid');
      assert.deepEqual(out.checks.map((ch) => ch.ok), [true, true]);
      assert.equal(out.kind === 'invalid' && out.quorum?.met.length, 1);
      assert.deepEqual(out.kind === 'invalid' && out.quorum?.unmet.map((u) => u.why), ['only signers counted for another authority verified']);
    });
  }
});

describe('verifyCandidates with threshold 2 of 2 keyless identities (private Sigstore)', () => {
  const suite = privateSigstoreSuite('sigil-quorum');
  const ISSUER = 'https://idp.acme.test';
  // Overlapping on purpose: alice fits both authorities, bob only the second.
  const p = { ...policy([keyless(ISSUER, 'alice@acme.test'), keyless(ISSUER, /^.+@acme\.test$/)]), threshold: 2 };
  const signed = (subject: string, source: string): CandidateSignature => ({ format: 'bundle', source, bundle: bundleFor(suite.sigstore.issueIdentity(subject, ISSUER), digest, { rekor: suite.sigstore }) });

  test('alice twice (two certificates, two ephemeral keys) is one signer: not enough', () => {
    const out = verifyCandidates([signed('alice@acme.test', 'r0'), signed('alice@acme.test', 'r1')], { digest }, p, suite.trust);
    assert.equal(out.kind, 'invalid');
    assert.deepEqual(out.kind === 'invalid' && out.quorum?.unmet.map((u) => u.why), ['only signers counted for another authority verified']);
  });

  test('one signer met by a key authority (its certificate\'s key) and a keyless one, in a bundle and a .sig copy: one signer', () => {
    const alice = suite.sigstore.issueIdentity('alice@acme.test', ISSUER);
    const both = { ...policy([keyAuthority(alice.publicPem, 'ignore'), keyless(ISSUER, 'alice@acme.test')]), threshold: 2 };
    const bundle: CandidateSignature = { format: 'bundle', source: 'r0', bundle: bundleFor(alice, digest, { rekor: suite.sigstore }) };
    const sig = legacyLayer(alice, digest, { rekor: suite.sigstore });
    const copy: CandidateSignature = { format: 'legacy', source: 'layer 0', payload: sig.payload, annotations: sig.annotations };
    const one = verifyCandidates([bundle], { digest }, both, suite.trust);
    assert.equal(one.kind, 'invalid');
    assert.deepEqual(one.kind === 'invalid' && one.quorum?.unmet.map((u) => u.why), ['only signers counted for another authority verified']);
    const copies = verifyCandidates([bundle, copy], { digest }, both, suite.trust);
    assert.equal(copies.kind === 'invalid' && copies.quorum?.met.length, 1);
  });

  test('alice and bob: each credited to an authority, alice to the one bob does not fit', () => {
    const out = verifyCandidates([signed('alice@acme.test', 'r0'), signed('bob@acme.test', 'r1')], { digest }, p, suite.trust);
    assert.equal(out.kind, 'verified');
    assert.deepEqual(out.kind === 'verified' && out.quorum?.met.map((m) => m.source), ['r0', 'r1']);
  });
});
