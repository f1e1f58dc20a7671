// The four real cosign signatures of containers/image (legacy `.sig` layout),
// verified through src/verify against offline trust, and what must make them fail.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { verifyCandidates } from '../../src/verify/candidates.js';
import { loadTrust, PUBLIC_GOOD, type TrustBundle } from '../../src/verify/trust.js';
import type { Digest } from '../../src/oci/digest.js';
import {
  CI, OTHER_DIGEST, PUBLIC_GOOD_ROOT, flipSignatureBit, keyAuthority, keyless, legacyFixture, onlyReason, policy, publicGoodTrust, readText, writePkiRoot,
} from '../helpers/verify-fixtures.js';
import { tempDir } from '../helpers/temp.js';
import { sha256 } from '../helpers/digest.js';

const GITHUB = 'https://github.com/login/oauth';
const COSIGN_PUB = readText(CI, 'cosign.pub');
const COSIGN2_PUB = readText(CI, 'cosign2.pub');
const keyIdOf = (pem: string): string => {
  const b64 = pem.replace(/-----[A-Z ]+-----|\s/g, '');
  return sha256(Buffer.from(b64, 'base64'));
};

/** The payload with one byte changed inside docker-reference: the digest it names is unchanged. */
function tamperedPayload(payload: Buffer): Buffer {
  const text = payload.toString('utf8');
  const at = text.indexOf('docker-reference') + '"docker-reference":"'.length + 2;
  const copy = Buffer.from(payload);
  copy[at] = copy[at] === 0x78 ? 0x79 : 0x78;
  return copy;
}

let trust: TrustBundle;
before(() => {
  trust = publicGoodTrust();
});

describe('keyless, public-good Fulcio + Rekor (dir-img-cosign-fulcio-rekor-valid)', () => {
  const f = legacyFixture('dir-img-cosign-fulcio-rekor-valid');
  const good = policy([keyless(GITHUB, 'mitr@redhat.com')]);

  test('verifies at the Rekor integrated time although the certificate expired in 2023', () => {
    const out = verifyCandidates([f.candidate], { digest: f.digest }, good, trust);
    assert.equal(out.kind, 'verified', JSON.stringify(out));
    assert.deepEqual(out.kind === 'verified' && out.signer, { kind: 'keyless', subject: 'mitr@redhat.com', issuer: GITHUB });
    assert.deepEqual(out.checks, [{ source: f.candidate.source, ok: true, signer: { kind: 'keyless', subject: 'mitr@redhat.com', issuer: GITHUB }, authority: 0 }]);
  });

  test('another served digest: the payload names the signed one', () => {
    const reason = onlyReason(verifyCandidates([f.candidate], { digest: OTHER_DIGEST }, good, trust));
    assert.equal(reason, `payload names ${f.digest} not the served ${OTHER_DIGEST}`);
  });

  test('a payload byte changed: rejected (the signature no longer verifies, checked before chain and log)', () => {
    const candidate = { ...f.candidate, payload: tamperedPayload(f.candidate.payload) };
    assert.match(onlyReason(verifyCandidates([candidate], { digest: f.digest }, good, trust)), /signature does not verify with the certificate's key/);
  });

  test('a signature bit flipped: rejected before the chain and log are checked', () => {
    const sig = f.candidate.annotations['dev.cosignproject.cosign/signature'];
    const candidate = { ...f.candidate, annotations: { ...f.candidate.annotations, 'dev.cosignproject.cosign/signature': flipSignatureBit(sig) } };
    assert.match(onlyReason(verifyCandidates([candidate], { digest: f.digest }, good, trust)), /signature does not verify with the certificate's key/);
  });

  test('a subject pattern only an unanchored match would accept fails', () => {
    const reason = onlyReason(verifyCandidates([f.candidate], { digest: f.digest }, policy([keyless(GITHUB, /^mitr@redhat\.co$/)]), trust));
    assert.equal(reason, 'certificate subject "mitr@redhat.com" does not match ^mitr@redhat\\.co$');
  });

  test('a pattern that forgot its anchors still has to match the whole SAN', () => {
    const out = verifyCandidates([f.candidate], { digest: f.digest }, policy([keyless(GITHUB, /mitr@redhat\.c/)]), trust);
    assert.equal(out.kind, 'invalid');
  });

  test('another issuer fails', () => {
    const reason = onlyReason(verifyCandidates([f.candidate], { digest: f.digest }, policy([keyless('https://accounts.google.com', 'mitr@redhat.com')]), trust));
    assert.equal(reason, 'certificate issuer "https://github.com/login/oauth" does not match ^https:\\/\\/accounts\\.google\\.com$');
  });

  test('a policy annotation absent from the payload fails', () => {
    const reason = onlyReason(verifyCandidates([f.candidate], { digest: f.digest }, policy([keyless(GITHUB, 'mitr@redhat.com')], { annotations: { env: 'prod' } }), trust));
    assert.equal(reason, 'annotation "env" is missing from the signed payload (policy wants "prod")');
  });

  test('without the Rekor bundle annotation the public-good root requires, it fails', () => {
    const { 'dev.sigstore.cosign/bundle': _set, ...rest } = f.candidate.annotations;
    const reason = onlyReason(verifyCandidates([{ ...f.candidate, annotations: rest }], { digest: f.digest }, good, trust));
    assert.match(reason, /expected 1 timestamps, got 0/);
  });
});

describe('key cosign2.pub + public-good Rekor SET (dir-img-cosign-key-rekor-valid)', () => {
  const f = legacyFixture('dir-img-cosign-key-rekor-valid');

  test('verifies with tlog: require, signer is the key id', () => {
    const out = verifyCandidates([f.candidate], { digest: f.digest }, policy([keyAuthority(COSIGN2_PUB, 'require')]), trust);
    assert.equal(out.kind, 'verified', JSON.stringify(out));
    assert.deepEqual(out.kind === 'verified' && out.signer, { kind: 'key', keyId: keyIdOf(COSIGN2_PUB) });
  });

  test('the wrong key fails, naming the key', () => {
    const reason = onlyReason(verifyCandidates([f.candidate], { digest: f.digest }, policy([keyAuthority(COSIGN_PUB, 'require')]), trust));
    assert.equal(reason, `signature does not verify with key ${keyIdOf(COSIGN_PUB)}`);
  });

  test('a SET that does not verify against the trusted logs fails', () => {
    const set = JSON.parse(f.candidate.annotations['dev.sigstore.cosign/bundle']) as { SignedEntryTimestamp: string };
    set.SignedEntryTimestamp = flipSignatureBit(set.SignedEntryTimestamp);
    const candidate = { ...f.candidate, annotations: { ...f.candidate.annotations, 'dev.sigstore.cosign/bundle': JSON.stringify(set) } };
    const reason = onlyReason(verifyCandidates([candidate], { digest: f.digest }, policy([keyAuthority(COSIGN2_PUB, 'require')]), trust));
    assert.match(reason, /inclusion promise could not be verified/);
  });

  test('a Rekor entry from a trust root without that log fails', async () => {
    const dir = await tempDir('sigil-verify-');
    try {
      const pkiOnly = loadTrust([await writePkiRoot(dir)], { publicGoodPath: PUBLIC_GOOD_ROOT });
      const reason = onlyReason(verifyCandidates([f.candidate], { digest: f.digest }, policy([keyAuthority(COSIGN2_PUB, 'require')]), pkiOnly));
      assert.match(reason, /inclusion promise could not be verified/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('key cosign.pub without a Rekor entry (dir-img-cosign-valid)', () => {
  const f = legacyFixture('dir-img-cosign-valid');

  test('verifies with tlog: ignore', () => {
    const out = verifyCandidates([f.candidate], { digest: f.digest }, policy([keyAuthority(COSIGN_PUB, 'ignore')]), trust);
    assert.equal(out.kind, 'verified', JSON.stringify(out));
    assert.deepEqual(out.kind === 'verified' && out.signer, { kind: 'key', keyId: keyIdOf(COSIGN_PUB) });
  });

  test('fails with tlog: require', () => {
    const reason = onlyReason(verifyCandidates([f.candidate], { digest: f.digest }, policy([keyAuthority(COSIGN_PUB, 'require')]), trust));
    assert.equal(reason, 'no Rekor entry and tlog: require');
  });

  test('wrong digest, wrong key, changed payload, flipped signature, missing annotation all fail', () => {
    const p = policy([keyAuthority(COSIGN_PUB, 'ignore')]);
    const sig = f.candidate.annotations['dev.cosignproject.cosign/signature'];
    const cases: [string, typeof f.candidate, Digest, RegExp][] = [
      ['digest', f.candidate, OTHER_DIGEST, /^payload names sha256:634a8f35.* not the served sha256:abab/],
      ['payload', { ...f.candidate, payload: tamperedPayload(f.candidate.payload) }, f.digest, /^signature does not verify with key sha256:/],
      ['signature', { ...f.candidate, annotations: { 'dev.cosignproject.cosign/signature': flipSignatureBit(sig) } }, f.digest, /^signature does not verify with key/],
    ];
    for (const [name, candidate, digest, want] of cases) {
      assert.match(onlyReason(verifyCandidates([candidate], { digest }, p, trust)), want, name);
    }
    const wrongKey = onlyReason(verifyCandidates([f.candidate], { digest: f.digest }, policy([keyAuthority(COSIGN2_PUB, 'ignore')]), trust));
    assert.equal(wrongKey, `signature does not verify with key ${keyIdOf(COSIGN2_PUB)}`);
    const annotated = policy([keyAuthority(COSIGN_PUB, 'ignore')], { annotations: { env: 'prod' } });
    assert.match(onlyReason(verifyCandidates([f.candidate], { digest: f.digest }, annotated, trust)), /annotation "env" is missing/);
  });
});

describe('private PKI, RSA leaf, no Rekor/SCT/TSA (dir-img-cosign-pki-valid)', () => {
  const f = legacyFixture('dir-img-cosign-pki-valid');
  let dir: string;
  let pki: TrustBundle;
  // The PKI leaf has no Fulcio issuer extension: its issuer is empty, so the authority's issuer pattern must accept "".
  const pkiPolicy = policy([keyless(/^$/, 'qiwan@redhat.com')]);
  before(async () => {
    dir = await tempDir('sigil-verify-');
    pki = loadTrust([PUBLIC_GOOD, await writePkiRoot(dir)], { publicGoodPath: PUBLIC_GOOD_ROOT });
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('verifies against a trusted root holding only the PKI CAs (chain checked at the given time)', () => {
    const out = verifyCandidates([f.candidate], { digest: f.digest }, pkiPolicy, pki, { now: new Date('2025-06-01T00:00:00Z') });
    assert.equal(out.kind, 'verified', JSON.stringify(out));
    assert.deepEqual(out.kind === 'verified' && out.signer, { kind: 'keyless', subject: 'qiwan@redhat.com', issuer: '' });
  });

  test('the second SAN (a DNS name) also identifies the signer', () => {
    const out = verifyCandidates([f.candidate], { digest: f.digest }, policy([keyless(/^$/, 'myhost.example.com')]), pki, { now: new Date('2025-06-01T00:00:00Z') });
    assert.equal(out.kind === 'verified' && out.signer.kind === 'keyless' && out.signer.subject, 'myhost.example.com');
  });

  test('outside the leaf validity (before 2024-10-01) it fails', () => {
    const reason = onlyReason(verifyCandidates([f.candidate], { digest: f.digest }, pkiPolicy, pki, { now: new Date('2024-06-01T00:00:00Z') }));
    assert.match(reason, /certificate chain/);
  });

  test('with public-good trust only, the chain does not verify', () => {
    const reason = onlyReason(verifyCandidates([f.candidate], { digest: f.digest }, pkiPolicy, trust));
    assert.equal(reason, 'the certificate is not issued by a certificate authority of the trusted roots');
  });

  test('a flipped signature bit fails (RSA PKCS#1 v1.5 over the payload)', () => {
    const sig = f.candidate.annotations['dev.cosignproject.cosign/signature'];
    const candidate = { ...f.candidate, annotations: { ...f.candidate.annotations, 'dev.cosignproject.cosign/signature': flipSignatureBit(sig) } };
    const reason = onlyReason(verifyCandidates([candidate], { digest: f.digest }, pkiPolicy, pki, { now: new Date('2025-06-01T00:00:00Z') }));
    assert.equal(reason, "signature does not verify with the certificate's key");
  });

  test('an issuer pattern that requires a Fulcio issuer fails on a bare PKI certificate', () => {
    const reason = onlyReason(verifyCandidates([f.candidate], { digest: f.digest }, policy([keyless(GITHUB, 'qiwan@redhat.com')]), pki));
    assert.match(reason, /^certificate issuer is absent \(no Fulcio issuer extension\) does not match/);
  });
});
