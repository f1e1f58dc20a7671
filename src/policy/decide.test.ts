import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Mode, Policy } from '../config/types.js';
import type { Digest } from '../oci/digest.js';
import type { AttestationCheck, Outcome, SignatureCheck } from '../verify/types.js';
import { admitsUnnamedBlob, decide, mayKeep, type JudgedManifest } from './decide.js';
import type { Basis } from './evaluation.js';

const DIGEST = `sha256:${'ab'.repeat(32)}` as Digest;

function policy(mode: Mode): Policy {
  return { name: 'p', match: ['**'], matchers: [/^.*$/], mode, authorities: [], annotations: {}, predicateTypes: [], fingerprint: 'f' };
}

const passed: SignatureCheck = { source: 'referrer sha256:11', ok: true, signer: { kind: 'keyless', subject: 'me@example.com', issuer: 'https://issuer.example' }, authority: 0 };
const failed: SignatureCheck = { source: 'sha256-ab.sig layer 0', ok: false, reason: 'signature does not verify' };
const failed2: SignatureCheck = { source: 'referrer sha256:22', ok: false, reason: 'identity does not match' };

const SLSA = 'https://slsa.dev/provenance/v1';
const metSbom: AttestationCheck = {
  name: 'sbom', predicateTypes: ['https://spdx.dev/Document'], condition: 'true',
  ok: true, source: 'sha256-ab.att layer 1', signer: { kind: 'key', keyId: 'sha256:k' }, predicateType: 'https://spdx.dev/Document',
};
const unmetProvenance: AttestationCheck = {
  name: 'built-by-our-ci', predicateTypes: [SLSA], condition: 'predicate.runDetails.builder.id == "ci"',
  ok: false, reason: 'sha256-ab.att layer 0: condition predicate.runDetails.builder.id == "ci" is false',
  tried: [{ source: 'sha256-ab.att layer 0', reason: 'condition predicate.runDetails.builder.id == "ci" is false' }],
};

const outcomes = {
  verified: { kind: 'verified', signer: passed.ok ? passed.signer : { kind: 'key', keyId: '' }, checks: [failed, passed] },
  unsigned: { kind: 'unsigned', checks: [] },
  invalid: { kind: 'invalid', checks: [failed, failed2] },
  indeterminate: { kind: 'indeterminate', cause: 'UPSTREAM_UNAVAILABLE: upstream timed out', checks: [failed] },
  unattested: { kind: 'invalid', checks: [failed, passed], attestations: [metSbom, unmetProvenance] },
} satisfies Record<string, Outcome>;

function judged(basis: Basis, outcome?: Outcome): JudgedManifest {
  return { basis, manifest: { digest: DIGEST }, ...(outcome ? { outcome } : {}) };
}

describe('decide: manifests not judged are let through unmarked, each with its reason', () => {
  test('no policy matches', () => {
    assert.deepEqual(decide(undefined, judged('no-policy')), { action: 'allow', verification: 'skipped', because: 'no policy matches this image', reasons: [] });
  });
  test('the policy has mode off', () => {
    assert.deepEqual(decide(policy('off'), judged('mode-off')), { action: 'allow', verification: 'skipped', because: 'policy p has mode off', reasons: [] });
  });
  for (const mode of ['enforce', 'warn'] as const) {
    test(`a proven signature artifact, under ${mode}`, () => {
      assert.deepEqual(decide(policy(mode), judged('signature-artifact')), { action: 'allow', verification: 'skipped', because: 'a signature artifact, not an image', reasons: [] });
    });
  }
});

describe('decide: a verified manifest is let through with its signer, under every mode that verifies', () => {
  for (const basis of ['signature', 'index'] as const) {
    for (const mode of ['enforce', 'warn'] as const) {
      test(`${basis}, ${mode}`, () => {
        assert.deepEqual(decide(policy(mode), judged(basis, outcomes.verified)), {
          action: 'allow',
          verification: 'verified',
          signer: 'me@example.com (issuer https://issuer.example)',
          reasons: [],
        });
      });
    }
  }
});

/** The wording of each outcome that is not verified: serve's (warnings, denials), mirror's, and the audit reasons. */
const unverified: Array<{ name: string; outcome?: Outcome; wording: string; because: (mode: Mode) => string; reasons: string[]; phrase: string }> = [
  { name: 'no signature found', outcome: outcomes.unsigned, phrase: 'sigil: no signature found (policy p)', wording: 'no signature found (policy p)', because: (m) => `no signature found (policy p, ${m})`, reasons: [] },
  {
    name: 'no valid signature',
    outcome: outcomes.invalid,
    phrase: 'sigil: no valid signature (policy p)',
    wording: 'no valid signature: 2 signature(s) found, none verified (policy p)',
    because: (m) => `no valid signature (2 found; sha256-ab.sig layer 0: signature does not verify) (policy p, ${m})`,
    reasons: ['sha256-ab.sig layer 0: signature does not verify', 'referrer sha256:22: identity does not match'],
  },
  {
    name: 'could not verify',
    outcome: outcomes.indeterminate,
    phrase: 'sigil: could not verify (policy p)',
    wording: 'could not verify: UPSTREAM_UNAVAILABLE: upstream timed out (policy p)',
    because: (m) => `could not verify: UPSTREAM_UNAVAILABLE: upstream timed out (policy p, ${m})`,
    reasons: ['UPSTREAM_UNAVAILABLE: upstream timed out', 'sha256-ab.sig layer 0: signature does not verify'],
  },
  {
    name: 'signed, an attestation requirement not met',
    outcome: outcomes.unattested,
    phrase: 'sigil: attestation built-by-our-ci not met (policy p)',
    wording: `attestation built-by-our-ci (${SLSA}) not met: sha256-ab.att layer 0: condition predicate.runDetails.builder.id == "ci" is false (policy p)`,
    because: (m) => `signed, but attestation built-by-our-ci (${SLSA}) not met: sha256-ab.att layer 0: condition predicate.runDetails.builder.id == "ci" is false (policy p, ${m})`,
    reasons: [
      `attestation built-by-our-ci (${SLSA}) not met: sha256-ab.att layer 0: condition predicate.runDetails.builder.id == "ci" is false`,
      'sha256-ab.sig layer 0: signature does not verify',
    ],
  },
  { name: 'no outcome at all', phrase: 'sigil: not verified (policy p)', wording: 'not verified (policy p)', because: (m) => `not verified (policy p, ${m})`, reasons: [] },
];

describe('decide: warn lets an unverified manifest through with a Warning text', () => {
  for (const basis of ['signature', 'index'] as const) {
    for (const u of unverified) {
      test(`${u.name} (${basis})`, () => {
        assert.deepEqual(decide(policy('warn'), judged(basis, u.outcome)), {
          action: 'warn',
          verification: 'unverified',
          because: u.because('warn'),
          reasons: u.reasons,
          wording: u.wording,
          warning: `sigil: ${u.wording}`,
        });
      });
    }
  }
});

describe('decide: enforce denies an unverified manifest, naming every signature it tried', () => {
  for (const basis of ['signature', 'index'] as const) {
    for (const u of unverified) {
      test(`${u.name} (${basis})`, () => {
        const d = decide(policy('enforce'), judged(basis, u.outcome));
        assert.equal(d.action, 'deny');
        assert.equal(d.verification, 'unverified');
        assert.equal(d.wording, u.wording);
        assert.equal(d.because, u.because('enforce'));
        assert.deepEqual(d.reasons, u.reasons);
        assert.equal(d.warning, undefined);
        // a few words for the status line, the rest in the body: what containerd users see
        assert.equal(d.statusPhrase, u.phrase);
      });
    }
  }
  test('the denial detail: policy, digest, outcome, each signature and the cause', () => {
    assert.deepEqual(decide(policy('enforce'), judged('signature', outcomes.indeterminate)).denial, {
      policy: 'p',
      digest: DIGEST,
      outcome: 'indeterminate',
      signatures: [{ source: 'sha256-ab.sig layer 0', result: 'failed', reason: 'signature does not verify' }],
      cause: 'UPSTREAM_UNAVAILABLE: upstream timed out',
    });
    assert.deepEqual(decide(policy('enforce'), judged('signature', { kind: 'invalid', checks: [failed, passed] })).denial, {
      policy: 'p',
      digest: DIGEST,
      outcome: 'invalid',
      signatures: [
        { source: 'sha256-ab.sig layer 0', result: 'failed', reason: 'signature does not verify' },
        { source: 'referrer sha256:11', result: 'verified', signer: 'me@example.com (issuer https://issuer.example)' },
      ],
    });
    assert.deepEqual(decide(policy('enforce'), judged('index')).denial, { policy: 'p', digest: DIGEST, outcome: undefined, signatures: [] });
  });
  test('the denial detail of attestations not met: every requirement, met or not, with its condition', () => {
    assert.deepEqual(decide(policy('enforce'), judged('signature', outcomes.unattested)).denial?.attestations, [
      { name: 'sbom', predicateTypes: ['https://spdx.dev/Document'], condition: 'true', result: 'met', source: 'sha256-ab.att layer 1', signer: 'sha256:k' },
      { name: 'built-by-our-ci', predicateTypes: [SLSA], condition: 'predicate.runDetails.builder.id == "ci"', result: 'not met', reason: unmetProvenance.ok ? '' : unmetProvenance.reason },
    ]);
  });
  test('a verified outcome whose requirements were all met is let through like any verified one', () => {
    const d = decide(policy('enforce'), judged('signature', { ...outcomes.verified, attestations: [metSbom] }));
    assert.deepEqual([d.action, d.verification, d.reasons], ['allow', 'verified', []]);
  });
  test('a key signer is named by its key id', () => {
    const d = decide(policy('enforce'), judged('signature', { kind: 'verified', signer: { kind: 'key', keyId: 'sha256:k' }, checks: [] }));
    assert.equal(d.signer, 'sha256:k');
  });
});

describe('mayKeep: enforce keeps only what verified, or a proven signature artifact', () => {
  const cases: Array<[Basis, Outcome | undefined]> = [
    ['signature', outcomes.verified],
    ['index', outcomes.verified],
    ['signature-artifact', undefined],
    ['signature', outcomes.unsigned],
    ['signature', outcomes.invalid],
    ['signature', outcomes.unattested],
    ['index', outcomes.indeterminate],
    ['signature', undefined],
  ];
  for (const [basis, outcome] of cases) {
    const passes = basis === 'signature-artifact' || outcome?.kind === 'verified';
    test(`${basis} ${outcome?.kind ?? '(no outcome)'}: enforce ${passes ? 'keeps' : 'does not keep'} it, warn keeps it`, () => {
      assert.equal(mayKeep(policy('enforce'), judged(basis, outcome)), passes);
      assert.equal(mayKeep(policy('warn'), judged(basis, outcome)), true);
    });
  }
  test('mode off and no policy keep everything', () => {
    assert.equal(mayKeep(policy('off'), judged('mode-off')), true);
    assert.equal(mayKeep(undefined, judged('no-policy')), true);
  });
  test('it agrees with decide: enforce keeps exactly what it lets through', () => {
    for (const [basis, outcome] of cases) {
      assert.equal(mayKeep(policy('enforce'), judged(basis, outcome)), decide(policy('enforce'), judged(basis, outcome)).action === 'allow');
    }
  });
});

describe('admitsUnnamedBlob: a blob no passing manifest named is stored only outside enforce', () => {
  test('enforce refuses it', () => assert.equal(admitsUnnamedBlob(policy('enforce')), false));
  test('warn, off and no policy admit it', () => {
    assert.equal(admitsUnnamedBlob(policy('warn')), true);
    assert.equal(admitsUnnamedBlob(policy('off')), true);
    assert.equal(admitsUnnamedBlob(undefined), true);
  });
});

describe('decide: a threshold policy names which authorities verified and which did not', () => {
  const alice = { kind: 'keyless', subject: 'alice@acme.test', issuer: 'https://idp' } as const;
  const key = { kind: 'key', keyId: 'sha256:bb' } as const;
  const quorum = (met: number) => ({
    threshold: 2,
    met: [
      { authority: 'authority 0 (keyless alice@acme.test (issuer https://idp))', signer: alice, source: 'referrer sha256:11' },
      { authority: 'authority 1 (key sha256:bb)', signer: key, source: 'sha256-ab.sig layer 1' },
    ].slice(0, met),
    unmet: [
      ...(met < 2 ? [{ authority: 'authority 1 (key sha256:bb)', why: 'no signature verified' }] : []),
      { authority: 'authority 2 (key sha256:cc)', why: 'no signature verified' },
    ],
  });

  test('verified: every credited signer in Sigil-Signer, one reason line per authority', () => {
    const d = decide(policy('enforce'), judged('signature', { kind: 'verified', signer: alice, checks: [passed], quorum: quorum(2) }));
    assert.equal(d.action, 'allow');
    assert.equal(d.signer, 'alice@acme.test (issuer https://idp), sha256:bb');
    assert.deepEqual(d.reasons, [
      'threshold 2 met: 2 authorities verified by distinct signers',
      'authority 0 (keyless alice@acme.test (issuer https://idp)): verified, signer alice@acme.test (issuer https://idp) (referrer sha256:11)',
      'authority 1 (key sha256:bb): verified, signer sha256:bb (sha256-ab.sig layer 1)',
      'authority 2 (key sha256:cc): not verified: no signature verified',
    ]);
  });

  test('not met: denied with the count in the wording, the authorities in the reasons and the detail', () => {
    const d = decide(policy('enforce'), judged('signature', { kind: 'invalid', checks: [passed, failed], quorum: quorum(1) }));
    assert.equal(d.action, 'deny');
    assert.equal(d.wording, 'threshold not met: 1 of 2 required authorities verified by distinct signers: 2 signature(s) found (policy p)');
    assert.equal(
      d.because,
      'threshold not met: 1 of 2 required authorities verified by distinct signers (2 signature(s) found; verified: authority 0 (keyless alice@acme.test (issuer https://idp))) (policy p, enforce)',
    );
    assert.deepEqual(d.reasons, [
      'threshold 2 not met: 1 authority verified by distinct signers',
      'authority 0 (keyless alice@acme.test (issuer https://idp)): verified, signer alice@acme.test (issuer https://idp) (referrer sha256:11)',
      'authority 1 (key sha256:bb): not verified: no signature verified',
      'authority 2 (key sha256:cc): not verified: no signature verified',
      'sha256-ab.sig layer 0: signature does not verify',
    ]);
    assert.deepEqual(d.denial?.threshold, {
      required: 2,
      verified: ['authority 0 (keyless alice@acme.test (issuer https://idp))'],
      notVerified: ['authority 1 (key sha256:bb)', 'authority 2 (key sha256:cc)'],
    });
  });

  test('warn: the Warning text carries the count', () => {
    const d = decide(policy('warn'), judged('signature', { kind: 'invalid', checks: [failed], quorum: quorum(0) }));
    assert.equal(d.warning, 'sigil: threshold not met: 0 of 2 required authorities verified by distinct signers: 1 signature(s) found (policy p)');
  });
});
