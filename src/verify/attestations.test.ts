// A policy's attestation requirements, as verifyImage applies them once a signature verified:
// met only by an in-toto statement about the served digest, of the requirement's predicate type,
// signed by an authority of the policy (cosign's `.att` envelope or a Sigstore bundle), whose
// condition is true; every other case is a reason that says which.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { compileCondition } from '../config/condition.js';
import type { AttestationRequirement, Authority, Policy } from '../config/types.js';
import type { Digest } from '../oci/digest.js';
import { checkAttestations } from './attestations.js';
import { parseAuthorityKey } from './candidates.js';
import { conditionBudget } from './condition-run.js';
import { verifyImage } from './image.js';
import { STATEMENT_MAX_BYTES } from './limits.js';
import { loadTrust, type TrustBundle } from './trust.js';
import type { AttestationCheck, CandidateSignature, Outcome } from './types.js';
import { PREDICATE, attestationBundle, attestationLayer, slsaProvenance, statement, type AttestationLayer } from '../../test/helpers/attester.js';
import { createPrivateSigstore, type PrivateSigstore } from '../../test/helpers/private-sigstore.js';
import { generateKey, legacyLayer } from '../../test/helpers/signer.js';
import { tempDir } from '../../test/helpers/temp.js';
import {
  ATTESTATION_DIGEST, ATTESTATION_PREDICATE, PGI_ROOT, PUBLIC_GOOD_ROOT, REAL, keyAuthority, keyless, policy, read,
} from '../../test/helpers/verify-fixtures.js';

const digest = `sha256:${'d1'.repeat(32)}` as Digest;
const other = `sha256:${'e2'.repeat(32)}` as Digest;
const OUR_BUILDER = 'https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main';
const OUR_REPO = 'https://github.com/acme/app';
const BUILT_BY_OUR_CI = 'predicate.runDetails.builder.id == "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main" && predicate.buildDefinition.externalParameters.workflow.repository == "https://github.com/acme/app"';
const ISSUER = 'https://issuer.sigil.test';
const GITHUB_OAUTH = 'https://github.com/login/oauth';
const IDENTITY = 'https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main';

const key = generateKey('p256');
const stranger = generateKey('p256');

function requirement(name: string, predicateTypes: string[], condition = 'true'): AttestationRequirement {
  const c = compileCondition(condition);
  if ('problems' in c) throw new Error(c.problems.join('; '));
  return { name, predicateTypes, condition: c };
}

const provenance = (d: string = digest, builderId = OUR_BUILDER, repository = OUR_REPO): Buffer => statement(d, PREDICATE.SLSA_V1, slsaProvenance({ builderId, repository }));
const sig = (): CandidateSignature => ({ format: 'legacy', source: 'sha256-d1.sig layer 0', ...legacyLayer(key, digest) });
const att = (l: AttestationLayer, source = 'sha256-d1.att layer 0'): CandidateSignature => ({ format: 'attestation', source, envelope: l.envelope, annotations: l.annotations });
const bundle = (b: Buffer, source = 'referrer sha256:b'): CandidateSignature => ({ format: 'bundle', source, bundle: b });

function withAttestations(authorities: readonly Authority[], ...attestations: AttestationRequirement[]): Policy {
  return { ...policy(authorities), attestations };
}

function checks(o: Outcome): readonly AttestationCheck[] {
  if ((o.kind !== 'verified' && o.kind !== 'invalid') || o.attestations === undefined) throw new Error(`no attestation checks: ${JSON.stringify(o)}`);
  return o.attestations;
}

function met(o: Outcome): Extract<AttestationCheck, { ok: true }> {
  const [a] = checks(o);
  if (!a.ok) throw new Error(`not met: ${a.reason}`);
  return a;
}

function unmetReason(o: Outcome): string {
  assert.equal(o.kind, 'invalid');
  const [a] = checks(o);
  assert.equal(a.ok, false);
  return a.ok ? '' : a.reason;
}

let sigstore: PrivateSigstore;
let trust: TrustBundle;
let dir: string;
before(async () => {
  dir = await tempDir('sigil-attestations-');
  sigstore = await createPrivateSigstore(dir);
  trust = loadTrust([sigstore.trustedRootPath], { publicGoodPath: PUBLIC_GOOD_ROOT });
});
after(() => rm(dir, { recursive: true, force: true }));

describe('SLSA provenance v1 built by our workflow from our repository', () => {
  const built = withAttestations([keyAuthority(key.publicPem, 'ignore')], requirement('built-by-our-ci', [PREDICATE.SLSA_V1], BUILT_BY_OUR_CI));

  test('a `.att` envelope signed by the policy\'s key meets it: verified, with where and by whom', () => {
    const o = verifyImage([sig(), att(attestationLayer(key, provenance()))], { digest }, built, trust);
    assert.equal(o.kind, 'verified', JSON.stringify(o));
    assert.deepEqual(checks(o), [
      {
        name: 'built-by-our-ci', predicateTypes: [PREDICATE.SLSA_V1], condition: BUILT_BY_OUR_CI,
        ok: true, source: 'sha256-d1.att layer 0', signer: { kind: 'key', keyId: key.keyId }, predicateType: PREDICATE.SLSA_V1,
      },
    ]);
  });

  test('a Sigstore bundle among the referrers meets it too (in-toto v1 statement)', () => {
    const b = attestationBundle(key, digest, statement(digest, PREDICATE.SLSA_V1, slsaProvenance({ builderId: OUR_BUILDER, repository: OUR_REPO }), { version: 'v1' }));
    const o = verifyImage([sig(), bundle(b)], { digest }, built, trust);
    assert.equal(o.kind, 'verified', JSON.stringify(o));
    assert.equal(met(o).source, 'referrer sha256:b');
  });

  test('built by another workflow: the condition is false, and the reason names it', () => {
    const o = verifyImage([sig(), att(attestationLayer(key, provenance(digest, 'https://github.com/evil/app/.github/workflows/x.yml@refs/heads/main')))], { digest }, built, trust);
    assert.equal(unmetReason(o), `sha256-d1.att layer 0: condition ${BUILT_BY_OUR_CI} is false`);
    assert.deepEqual(o.kind === 'invalid' && o.checks.map((c) => c.ok), [true], 'the signature itself verified');
  });

  test('from another repository by our builder: false as well', () => {
    assert.match(unmetReason(verifyImage([sig(), att(attestationLayer(key, provenance(digest, OUR_BUILDER, 'https://github.com/evil/app')))], { digest }, built, trust)), / is false$/);
  });

  test('no attestation at all: not met, naming the predicate type and the digest', () => {
    assert.equal(unmetReason(verifyImage([sig()], { digest }, built, trust)), `no attestation of predicate type ${PREDICATE.SLSA_V1} for ${digest}`);
  });

  test('an attestation for another digest does not count, whoever signed it', () => {
    const reason = unmetReason(verifyImage([sig(), att(attestationLayer(key, provenance(other)))], { digest }, built, trust));
    assert.equal(reason, `no attestation of predicate type ${PREDICATE.SLSA_V1} for ${digest} (not usable: sha256-d1.att layer 0: statement names ${other} not the served ${digest})`);
  });

  test('a statement naming the served digest among others counts (cosign attests every platform at once)', () => {
    const both = statement(other, PREDICATE.SLSA_V1, slsaProvenance({ builderId: OUR_BUILDER, repository: OUR_REPO }), { subjects: [{ name: 'x', digest: { sha256: digest.slice(7) } }] });
    assert.equal(verifyImage([sig(), att(attestationLayer(key, both))], { digest }, built, trust).kind, 'verified');
  });

  test('the predicate type is the signed statement\'s, not the `.att` layer\'s predicateType annotation', () => {
    const sbom = attestationLayer(key, statement(digest, PREDICATE.SPDX, { spdxVersion: 'SPDX-2.3' }));
    const claimed = { ...sbom, annotations: { ...sbom.annotations, predicateType: PREDICATE.SLSA_V1 } };
    assert.equal(unmetReason(verifyImage([sig(), att(claimed)], { digest }, built, trust)), `no attestation of predicate type ${PREDICATE.SLSA_V1} for ${digest}`);
  });

  for (const spelling of [`${PREDICATE.SLSA_V1}/`, PREDICATE.SLSA_V1.toUpperCase(), PREDICATE.SLSA_V1.replace('https:', 'http:'), `${PREDICATE.SLSA_V1} `, 'slsaprovenance1']) {
    test(`a predicate type spelled ${JSON.stringify(spelling)} is another predicate type`, () => {
      const spelled = statement(digest, spelling, slsaProvenance({ builderId: OUR_BUILDER, repository: OUR_REPO }));
      assert.equal(unmetReason(verifyImage([sig(), att(attestationLayer(key, spelled))], { digest }, built, trust)), `no attestation of predicate type ${PREDICATE.SLSA_V1} for ${digest}`);
    });
  }

  test('signed by a key the policy does not trust: not met, saying so', () => {
    assert.equal(
      unmetReason(verifyImage([sig(), att(attestationLayer(stranger, provenance()))], { digest }, built, trust)),
      `sha256-d1.att layer 0: not signed by an authority of the policy: signature does not verify with key ${key.keyId}`,
    );
  });

  test('an untrusted attestation before a trusted one: the trusted one meets it, the other is not evaluated', () => {
    const o = verifyImage([sig(), att(attestationLayer(stranger, provenance()), 'a'), att(attestationLayer(key, provenance()), 'b')], { digest }, built, trust);
    assert.equal(o.kind, 'verified');
    assert.equal(met(o).source, 'b');
  });

  test('the statement changed after signing: the signature no longer verifies', () => {
    const l = attestationLayer(key, provenance(digest, 'https://github.com/evil/x'), { tamper: { payload: provenance() } });
    assert.match(unmetReason(verifyImage([sig(), att(l)], { digest }, built, trust)), /: not signed by an authority of the policy: signature does not verify/);
  });

  test('without a verified signature the attestations are not looked at', () => {
    const o = verifyImage([att(attestationLayer(key, provenance()))], { digest }, built, trust);
    assert.deepEqual(o, { kind: 'unsigned', checks: [] });
  });

  test('a policy without attestations: the outcome has none, `.att` layers are not signatures', () => {
    const o = verifyImage([sig(), att(attestationLayer(key, provenance()))], { digest }, policy([keyAuthority(key.publicPem, 'ignore')]), trust);
    assert.equal(o.kind, 'verified');
    assert.equal('attestations' in o, false);
  });
});

describe('"an SPDX or CycloneDX SBOM is attached"', () => {
  const sbom = withAttestations([keyAuthority(key.publicPem, 'ignore')], requirement('sbom', [PREDICATE.SPDX, PREDICATE.CYCLONEDX]));

  for (const type of [PREDICATE.SPDX, PREDICATE.CYCLONEDX]) {
    test(`${type} meets it`, () => {
      const o = verifyImage([sig(), att(attestationLayer(key, statement(digest, type, { spdxVersion: 'SPDX-2.3' })))], { digest }, sbom, trust);
      assert.equal(o.kind, 'verified', JSON.stringify(o));
      assert.equal(met(o).predicateType, type);
    });
  }

  test('a provenance alone does not', () => {
    assert.equal(unmetReason(verifyImage([sig(), att(attestationLayer(key, provenance()))], { digest }, sbom, trust)), `no attestation of predicate type ${PREDICATE.SPDX} or ${PREDICATE.CYCLONEDX} for ${digest}`);
  });

  test('every requirement must be met; each one says how it went', () => {
    const both = withAttestations(
      [keyAuthority(key.publicPem, 'ignore')],
      requirement('built-by-our-ci', [PREDICATE.SLSA_V1], BUILT_BY_OUR_CI),
      requirement('sbom', [PREDICATE.SPDX, PREDICATE.CYCLONEDX]),
    );
    const o = verifyImage([sig(), att(attestationLayer(key, provenance()))], { digest }, both, trust);
    assert.equal(o.kind, 'invalid');
    assert.deepEqual(checks(o).map((a) => [a.name, a.ok]), [['built-by-our-ci', true], ['sbom', false]]);
  });
});

describe('keyless and transparency-log evidence (.att layers)', () => {
  test('a keyless `.att` with certificate, chain and the Rekor SET of an intoto 0.0.2 entry: met by the identity', () => {
    const id = sigstore.issueIdentity(IDENTITY, ISSUER);
    const p = withAttestations([keyless(ISSUER, IDENTITY)], requirement('built-by-our-ci', [PREDICATE.SLSA_V1], BUILT_BY_OUR_CI));
    const signature: CandidateSignature = { format: 'legacy', source: 'sig', ...legacyLayer(id, digest, { rekor: sigstore }) };
    const o = verifyImage([signature, att(attestationLayer(id, provenance(), { rekor: sigstore }))], { digest }, p, trust);
    assert.equal(o.kind, 'verified', JSON.stringify(o));
    assert.deepEqual(met(o).signer, { kind: 'keyless', subject: IDENTITY, issuer: ISSUER });
  });

  test('keyless without a Rekor entry: not met', () => {
    const id = sigstore.issueIdentity(IDENTITY, ISSUER);
    const p = withAttestations([keyless(ISSUER, IDENTITY)], requirement('any', [PREDICATE.SLSA_V1]));
    const signature: CandidateSignature = { format: 'legacy', source: 'sig', ...legacyLayer(id, digest, { rekor: sigstore }) };
    assert.match(unmetReason(verifyImage([signature, att(attestationLayer(id, provenance()))], { digest }, p, trust)), /: not signed by an authority of the policy: timestamps: /);
  });

  test('a Rekor entry that records another signer\'s key does not count for this one', () => {
    const p = withAttestations([keyAuthority(key.publicPem, 'require')], requirement('any', [PREDICATE.SLSA_V1]));
    const signature: CandidateSignature = { format: 'legacy', source: 'sig', ...legacyLayer(key, digest, { rekor: sigstore }) };
    const theirs = attestationLayer(stranger, provenance(), { rekor: sigstore });
    const ours = attestationLayer(key, provenance());
    const mixed = { ...ours, annotations: { ...ours.annotations, 'dev.sigstore.cosign/bundle': theirs.annotations['dev.sigstore.cosign/bundle'] } };
    assert.equal(unmetReason(verifyImage([signature, att(mixed)], { digest }, p, trust)), "sha256-d1.att layer 0: not signed by an authority of the policy: the Rekor entry records another public key than the signer's");
  });

  test('the Rekor entry of another statement by the same key does not log this one (tlog: require)', () => {
    const p = withAttestations([keyAuthority(key.publicPem, 'require')], requirement('ours', [PREDICATE.SLSA_V1], BUILT_BY_OUR_CI));
    const signature: CandidateSignature = { format: 'legacy', source: 'sig', ...legacyLayer(key, digest, { rekor: sigstore }) };
    // Logged: a provenance that fails the condition. Never logged: one that meets it, signed by the same key.
    const logged = attestationLayer(key, provenance(digest, OUR_BUILDER, 'https://github.com/acme/other'), { rekor: sigstore });
    const unlogged = attestationLayer(key, provenance());
    const borrowed = { ...unlogged, annotations: { ...unlogged.annotations, 'dev.sigstore.cosign/bundle': logged.annotations['dev.sigstore.cosign/bundle'] } };
    assert.match(unmetReason(verifyImage([signature, att(borrowed)], { digest }, p, trust)), /^sha256-d1\.att layer 0: not signed by an authority of the policy: Rekor entry: /);
    assert.equal(verifyImage([signature, att(attestationLayer(key, provenance(), { rekor: sigstore }))], { digest }, p, trust).kind, 'verified');
  });

  test('tlog: require on a key authority: met with the intoto entry, not without one', () => {
    const p = withAttestations([keyAuthority(key.publicPem, 'require')], requirement('any', [PREDICATE.SLSA_V1]));
    const signature: CandidateSignature = { format: 'legacy', source: 'sig', ...legacyLayer(key, digest, { rekor: sigstore }) };
    assert.equal(verifyImage([signature, att(attestationLayer(key, provenance(), { rekor: sigstore }))], { digest }, p, trust).kind, 'verified');
    assert.match(unmetReason(verifyImage([signature, att(attestationLayer(key, provenance()))], { digest }, p, trust)), /no Rekor entry and tlog: require/);
  });
});

describe('what cosign wrote for real (cosign testdata oci-attestation.sigstore.json, public-good)', () => {
  test('its attestation meets a requirement of its predicate type whose condition reads its predicate', () => {
    const pgi = loadTrust([PGI_ROOT], { publicGoodPath: PUBLIC_GOOD_ROOT });
    const p = withAttestations([keyless(GITHUB_OAUTH, 'cody@soyland.com')], requirement('cosign', [ATTESTATION_PREDICATE], 'predicate.Data.contains("bar") && statement.subject.exists(s, s.name.endsWith("/repo"))'));
    const ctx = { subject: { digest: ATTESTATION_DIGEST }, policy: p, trust: pgi, keys: p.authorities.map(parseAuthorityKey), now: new Date(), budget: conditionBudget() };
    const [a] = checkAttestations([bundle(read(REAL, 'cosign', 'oci-attestation.sigstore.json'))], ctx);
    assert.equal(a.ok, true, JSON.stringify(a));
    assert.deepEqual(a.ok && a.signer, { kind: 'keyless', subject: 'cody@soyland.com', issuer: GITHUB_OAUTH });
  });
});

describe('bounds', () => {
  const any = withAttestations([keyAuthority(key.publicPem, 'ignore')], requirement('any', [PREDICATE.SLSA_V1]));

  test(`a statement over STATEMENT_MAX_BYTES (${STATEMENT_MAX_BYTES}) is not parsed`, () => {
    const huge = statement(digest, PREDICATE.SLSA_V1, { pad: 'x'.repeat(STATEMENT_MAX_BYTES) });
    assert.match(unmetReason(verifyImage([sig(), att(attestationLayer(key, huge))], { digest }, any, trust)), new RegExp(`statement of ${huge.length} bytes exceeds STATEMENT_MAX_BYTES`));
  });

  test('a condition that never ends in practice is cut at the budget: not met, the next requirement not evaluated', () => {
    const list = statement(digest, PREDICATE.SLSA_V1, { list: Array.from({ length: 20_000 }, (_, i) => i) });
    const p = withAttestations([keyAuthority(key.publicPem, 'ignore')], requirement('loop', [PREDICATE.SLSA_V1], 'predicate.list.all(x, predicate.list.all(y, x != y || x == y))'), requirement('after', [PREDICATE.SLSA_V1]));
    const o = verifyImage([sig(), att(attestationLayer(key, list))], { digest }, p, trust, { conditionBudgetMs: 50 });
    assert.equal(o.kind, 'invalid');
    const [loop, next] = checks(o);
    assert.match(loop.ok ? '' : loop.reason, /: condition predicate\.list\.all.* did not finish within the 50 ms the conditions of one verification may take$/);
    assert.match(next.ok ? '' : next.reason, /: condition true not evaluated: the conditions of this verification used up their 50 ms$/);
  });
});
