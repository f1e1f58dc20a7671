// Sigstore bundles (cosign v3 referrers): the real v0.3 attestation bundle of
// cosign's testdata against its public-good trusted root, and sign/v1 bundles
// made by the test signer (test/helpers/signer.ts) on a private Sigstore.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { verifyCandidates } from '../../src/verify/candidates.js';
import { BUNDLE_MAX_BYTES } from '../../src/verify/limits.js';
import { loadTrust, type TrustBundle } from '../../src/verify/trust.js';
import type { Digest } from '../../src/oci/digest.js';
import { tempDir } from '../helpers/temp.js';
import { createPrivateSigstore, type PrivateSigstore } from '../helpers/private-sigstore.js';
import { bundleFor, generateKey, type KeylessIdentity } from '../helpers/signer.js';
import {
  ATTESTATION_DIGEST, ATTESTATION_PREDICATE, OTHER_DIGEST, PGI_ROOT, PUBLIC_GOOD_ROOT, REAL, SIGN_PREDICATE,
  bundleCandidate, keyAuthority, keyless, onlyReason, policy, publicGoodTrust, read,
} from '../helpers/verify-fixtures.js';

const GITHUB = 'https://github.com/login/oauth';
const FIXTURE = read(REAL, 'cosign', 'oci-attestation.sigstore.json');
const subject = { digest: ATTESTATION_DIGEST };
const cody = policy([keyless(GITHUB, 'cody@soyland.com')], { predicateTypes: [ATTESTATION_PREDICATE] });

/** The fixture with its DSSE payload (or signature) changed after signing. */
function tampered(part: 'payload' | 'signature'): Buffer {
  const doc = JSON.parse(FIXTURE.toString('utf8')) as { dsseEnvelope: { payload: string; signatures: { sig: string }[] } };
  if (part === 'payload') {
    doc.dsseEnvelope.payload = Buffer.from(Buffer.from(doc.dsseEnvelope.payload, 'base64').toString('utf8').replace('bar', 'baz')).toString('base64');
  } else {
    const sig = Buffer.from(doc.dsseEnvelope.signatures[0].sig, 'base64');
    sig[sig.length - 1] ^= 1;
    doc.dsseEnvelope.signatures[0].sig = sig.toString('base64');
  }
  return Buffer.from(JSON.stringify(doc));
}

describe('cosign testdata oci-attestation.sigstore.json (v0.3, DSSE, public-good Fulcio + Rekor)', () => {
  let pgi: TrustBundle;
  before(() => {
    pgi = loadTrust([PGI_ROOT], { publicGoodPath: PUBLIC_GOOD_ROOT });
  });

  test('verifies against trusted_root_pgi.json with its subject digest and predicate type', () => {
    const out = verifyCandidates([bundleCandidate(FIXTURE)], subject, cody, pgi);
    assert.equal(out.kind, 'verified', JSON.stringify(out));
    assert.deepEqual(out.kind === 'verified' && out.signer, { kind: 'keyless', subject: 'cody@soyland.com', issuer: GITHUB });
  });

  test('verifies against the shipped public-good root too', () => {
    assert.equal(verifyCandidates([bundleCandidate(FIXTURE)], subject, cody, publicGoodTrust()).kind, 'verified');
  });

  test('another served digest fails: the statement names its own subject', () => {
    assert.equal(onlyReason(verifyCandidates([bundleCandidate(FIXTURE)], { digest: OTHER_DIGEST }, cody, pgi)), `statement names ${ATTESTATION_DIGEST} not the served ${OTHER_DIGEST}`);
  });

  test('a predicate type the policy does not list fails (the default is sign/v1 only)', () => {
    const reason = onlyReason(verifyCandidates([bundleCandidate(FIXTURE)], subject, policy([keyless(GITHUB, 'cody@soyland.com')]), pgi));
    assert.equal(reason, `predicate type "${ATTESTATION_PREDICATE}" is not one of the policy's predicateTypes (${SIGN_PREDICATE})`);
  });

  test('a policy annotation missing from the statement subject fails', () => {
    const p = policy([keyless(GITHUB, 'cody@soyland.com')], { predicateTypes: [ATTESTATION_PREDICATE], annotations: { env: 'prod' } });
    assert.equal(onlyReason(verifyCandidates([bundleCandidate(FIXTURE)], subject, p, pgi)), 'annotation "env" is missing from the statement subject (policy wants "prod")');
  });

  test('identity: unanchored look-alikes and another issuer fail', () => {
    const cases: [string, ReturnType<typeof keyless>, RegExp][] = [
      ['prefix', keyless(GITHUB, /^cody@soyland\.co$/), /^certificate subject "cody@soyland.com" does not match/],
      ['no anchors', keyless(GITHUB, /cody@soyland/), /^certificate subject/],
      ['issuer', keyless('https://token.actions.githubusercontent.com', 'cody@soyland.com'), /^certificate issuer "https:\/\/github.com\/login\/oauth" does not match/],
    ];
    for (const [name, authority, want] of cases) {
      const p = policy([authority], { predicateTypes: [ATTESTATION_PREDICATE] });
      assert.match(onlyReason(verifyCandidates([bundleCandidate(FIXTURE)], subject, p, pgi)), want, name);
    }
  });

  test('a changed payload or signature is rejected by the signature check, before chain and log', () => {
    assert.match(onlyReason(verifyCandidates([bundleCandidate(tampered('payload'))], subject, cody, pgi)), /signature does not verify with the certificate's key/);
    assert.match(onlyReason(verifyCandidates([bundleCandidate(tampered('signature'))], subject, cody, pgi)), /signature does not verify with the certificate's key/);
  });

  test('a key authority does not accept a certificate with another key', () => {
    const key = generateKey('p256');
    const p = policy([keyAuthority(key.publicPem, 'require')], { predicateTypes: [ATTESTATION_PREDICATE] });
    assert.equal(onlyReason(verifyCandidates([bundleCandidate(FIXTURE)], subject, p, pgi)), `bundle is signed by a certificate whose key is not ${key.keyId}`);
  });

  test('malformed and oversized bundles are a reason, not an exception', () => {
    assert.match(onlyReason(verifyCandidates([bundleCandidate(Buffer.from('{"mediaType": 1'))], subject, cody, pgi)), /^not a valid Sigstore bundle: /);
    assert.match(onlyReason(verifyCandidates([bundleCandidate(Buffer.from('{"mediaType":"x"}'))], subject, cody, pgi)), /^not a valid Sigstore bundle: /);
    const big = Buffer.alloc(BUNDLE_MAX_BYTES + 1, 0x20);
    assert.equal(onlyReason(verifyCandidates([bundleCandidate(big)], subject, cody, pgi)), `bundle of ${BUNDLE_MAX_BYTES + 1} bytes exceeds BUNDLE_MAX_BYTES (${BUNDLE_MAX_BYTES})`);
  });
});

describe('cosign v3 sign/v1 bundles on a private Sigstore', () => {
  let dir: string;
  let sigstore: PrivateSigstore;
  let trust: TrustBundle;
  let alice: KeylessIdentity;
  const digest = `sha256:${'5a'.repeat(32)}` as Digest;
  const ISSUER = 'https://issuer.sigil.test';
  before(async () => {
    dir = await tempDir('sigil-verify-bundle');
    sigstore = await createPrivateSigstore(dir);
    trust = loadTrust([sigstore.trustedRootPath], { publicGoodPath: PUBLIC_GOOD_ROOT });
    alice = sigstore.issueIdentity('alice@example.com', ISSUER);
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('keyless with subject annotations: the policy annotations must be there with equal values', () => {
    const bundle = bundleCandidate(bundleFor(alice, digest, { rekor: sigstore, annotations: { env: 'prod', team: 'a' } }));
    const ok = verifyCandidates([bundle], { digest }, policy([keyless(ISSUER, 'alice@example.com')], { annotations: { env: 'prod' } }), trust);
    assert.deepEqual(ok.kind === 'verified' && ok.signer, { kind: 'keyless', subject: 'alice@example.com', issuer: ISSUER });
    const other = verifyCandidates([bundle], { digest }, policy([keyless(ISSUER, 'alice@example.com')], { annotations: { env: 'dev' } }), trust);
    assert.equal(onlyReason(other), 'annotation "env" is "prod" in the statement subject, policy wants "dev"');
  });

  test('keyless without a Rekor entry fails: the root lists a transparency log', () => {
    const reason = onlyReason(verifyCandidates([bundleCandidate(bundleFor(alice, digest))], { digest }, policy([keyless(ISSUER, 'alice@example.com')]), trust));
    assert.match(reason, /expected 1 timestamps, got 0|expected 1 tlog entries, got 0/);
  });

  test('a certificate from a look-alike CA fails', () => {
    const mallory = sigstore.issueIdentity('alice@example.com', ISSUER, { untrusted: true });
    const reason = onlyReason(verifyCandidates([bundleCandidate(bundleFor(mallory, digest, { rekor: sigstore }))], { digest }, policy([keyless(ISSUER, 'alice@example.com')]), trust));
    assert.equal(reason, 'the certificate is not issued by a certificate authority of the trusted roots');
  });

  for (const kind of ['p256', 'p384', 'rsa', 'ed25519', 'ed25519ph'] as const) {
    test(`key ${kind}: tlog require with a Rekor entry, ignore without, tampering fails`, () => {
      const key = generateKey(kind);
      const logged = bundleCandidate(bundleFor(key, digest, { rekor: sigstore }));
      const out = verifyCandidates([logged], { digest }, policy([keyAuthority(key.publicPem, 'require')]), trust);
      assert.deepEqual(out.kind === 'verified' && out.signer, { kind: 'key', keyId: key.keyId }, JSON.stringify(out));
      const unlogged = bundleCandidate(bundleFor(key, digest));
      assert.equal(verifyCandidates([unlogged], { digest }, policy([keyAuthority(key.publicPem, 'ignore')]), trust).kind, 'verified');
      assert.equal(onlyReason(verifyCandidates([unlogged], { digest }, policy([keyAuthority(key.publicPem, 'require')]), trust)), 'no Rekor entry and tlog: require');
      const flipped = bundleCandidate(bundleFor(key, digest, { tamper: 'signature' }));
      assert.equal(onlyReason(verifyCandidates([flipped], { digest }, policy([keyAuthority(key.publicPem, 'ignore')]), trust)), `signature does not verify with key ${key.keyId}`);
    });
  }

  test('the key hint orders attempts but any configured key may verify', () => {
    const [a, b] = [generateKey('p256'), generateKey('p256')];
    const p = policy([keyAuthority(a.publicPem, 'ignore', 'a.pub'), keyAuthority(b.publicPem, 'ignore', 'b.pub')]);
    const out = verifyCandidates([bundleCandidate(bundleFor(b, digest))], { digest }, p, trust);
    assert.deepEqual(out.checks, [{ source: 'referrer 0', ok: true, signer: { kind: 'key', keyId: b.keyId }, authority: 1 }]);
    // A hint naming key a does not stop key b (the actual signer) from being tried.
    const doc = JSON.parse(bundleFor(b, digest).toString('utf8')) as { verificationMaterial: { publicKey: { hint: string } } };
    doc.verificationMaterial.publicKey.hint = a.hint;
    assert.equal(verifyCandidates([bundleCandidate(Buffer.from(JSON.stringify(doc)))], { digest }, p, trust).kind, 'verified');
  });
});
