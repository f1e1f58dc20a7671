// Attacks on attestation policies, through a real registry: an attestation must bind to the exact
// digest served and to its in-toto payload type, must be signed by the policy's authorities, and
// nothing in a statement — its size, its shape, what a condition does with it — may let an image
// through, hang sigil or crash it. Every case here is denied with a reason; the proxy keeps serving.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { PREDICATE, attestationBundle, attestationLayer, slsaProvenance, statement } from '../helpers/attester.js';
import { addToFallbackIndex, pushBundleReferrer, pushLegacyAttestation, pushLegacySignature } from '../helpers/publish.js';
import type { PushedImage } from '../helpers/push.js';
import type { SigilHandle } from '../helpers/sigil.js';
import { MEDIA, bundleFor, legacyLayer, preAuthEncoding, signWith } from '../helpers/signer.js';
import { ISSUER, SUBJECT, UPSTREAM, pull, startVerifyEnv, type VerifyEnv } from '../helpers/verify-env.js';
import { CONDITION_BUDGET_MS } from '../../src/verify/limits.js';

const OUR_REPO = 'https://github.com/acme/app';
let env: VerifyEnv;
let sigil: SigilHandle;

before(async () => {
  env = await startVerifyEnv();
  const k = env.keys;
  sigil = await env.sigil(`
  - name: provenance
    match: ["${UPSTREAM}/prov/**"]
    mode: enforce
    authorities:
      - { key: ${k.p256.path}, tlog: ignore }
    attestations:
      - name: built-by-our-ci
        predicateType: ${PREDICATE.SLSA_V1}
        condition: predicate.buildDefinition.externalParameters.workflow.repository == "${OUR_REPO}"
  - name: keyless
    match: ["${UPSTREAM}/keyless/**"]
    mode: enforce
    authorities:
      - keyless: { issuer: ${ISSUER}, subject: ${SUBJECT} }
    attestations:
      - name: any-provenance
        predicateType: ${PREDICATE.SLSA_V1}
  - name: loops
    match: ["${UPSTREAM}/loop/**"]
    mode: enforce
    authorities:
      - { key: ${k.p256.path}, tlog: ignore }
    attestations:
      - name: quadratic
        predicateType: ${PREDICATE.SLSA_V1}
        condition: predicate.list.all(x, predicate.list.all(y, x + y >= 0.0))
      - name: copies
        predicateType: ${PREDICATE.SLSA_V1}
        condition: predicate.list.map(x, predicate.pad + string(x)).size() > 0
`);
});
after(async () => {
  await env?.stop();
});

async function signedImage(repo: string): Promise<PushedImage> {
  const img = await env.push(repo, 'v1');
  await pushLegacySignature(env.target, repo, img.digest, [legacyLayer(env.keys.p256, img.digest)]);
  return img;
}

const provenance = (subjectDigest: Record<string, string>): Buffer =>
  statement(undefined, PREDICATE.SLSA_V1, slsaProvenance({ builderId: SUBJECT, repository: OUR_REPO }), { subjects: [{ name: 'registry.sigil.test/image', digest: subjectDigest }] });

async function deniedWith(repo: string, reason: RegExp): Promise<void> {
  const r = await pull(sigil, repo, 'v1');
  assert.equal(r.status, 403, r.body.toString());
  const e = r.json().errors[0];
  assert.equal(e.code, 'DENIED');
  assert.match(e.message, reason);
}

describe('the subject binds the attestation to the exact digest served', () => {
  const hex = (d: string): string => d.slice('sha256:'.length);
  const spellings: Array<[string, (d: string) => Record<string, string>]> = [
    ['the hex in upper case', (d) => ({ sha256: hex(d).toUpperCase() })],
    ['under another algorithm\'s key', (d) => ({ sha512: hex(d) })],
    ['under a key spelled in upper case', (d) => ({ SHA256: hex(d) })],
    ['with the algorithm prefix in the value', (d) => ({ sha256: d })],
    ['a prefix of the digest', (d) => ({ sha256: hex(d).slice(0, 32) })],
  ];
  for (const [name, subject] of spellings) {
    test(`a statement naming the digest ${name} does not count`, async () => {
      const repo = `prov/spelling-${spellings.findIndex(([n]) => n === name)}`;
      const img = await signedImage(repo);
      await pushLegacyAttestation(env.target, repo, img.digest, [attestationLayer(env.keys.p256, provenance(subject(img.digest)))]);
      await deniedWith(repo, /not usable: .*statement names /);
    });
  }

  test('a bundle attached to the served digest whose statement names another image does not count', async () => {
    const theirs = await env.push('prov/theirs', 'v1');
    const img = await signedImage('prov/referrer-other');
    const b = attestationBundle(env.keys.p256, theirs.digest, statement(theirs.digest, PREDICATE.SLSA_V1, slsaProvenance({ builderId: SUBJECT, repository: OUR_REPO }), { version: 'v1' }));
    await pushBundleReferrer(env.target, 'prov/referrer-other', { digest: img.digest, size: img.manifest.length, mediaType: img.mediaType }, b);
    await deniedWith('prov/referrer-other', new RegExp(`statement names ${theirs.digest} not the served ${img.digest}`));
  });

  test('a bundle about the served digest, attached as a referrer of another image and listed for this one, does not count', async () => {
    const theirs = await env.push('prov/host', 'v1');
    const img = await signedImage('prov/misfiled');
    const b = attestationBundle(env.keys.p256, img.digest, statement(img.digest, PREDICATE.SLSA_V1, slsaProvenance({ builderId: SUBJECT, repository: OUR_REPO }), { version: 'v1' }));
    // The referrer manifest's subject is the other image, but the index of this one lists it.
    const ref = await pushBundleReferrer(env.target, 'prov/misfiled', { digest: theirs.digest, size: theirs.manifest.length, mediaType: theirs.mediaType }, b);
    await addToFallbackIndex(env.target, 'prov/misfiled', img.digest, { mediaType: MEDIA.OCI_MANIFEST, artifactType: MEDIA.BUNDLE_V03, digest: ref, size: 0 });
    await deniedWith('prov/misfiled', /not met: no attestation of predicate type/);
  });
});

describe('the payload type is part of what is signed', () => {
  test('a bundle whose envelope claims in-toto but was signed as another type: not signed', async () => {
    const img = await signedImage('prov/bundle-retyped');
    const stmt = statement(img.digest, PREDICATE.SLSA_V1, slsaProvenance({ builderId: SUBJECT, repository: OUR_REPO }), { version: 'v1' });
    const honest = JSON.parse(attestationBundle(env.keys.p256, img.digest, stmt).toString()) as { dsseEnvelope: { payloadType: string; signatures: Array<{ sig: string }> } };
    honest.dsseEnvelope.signatures[0].sig = signWith(env.keys.p256, preAuthEncoding('application/vnd.other+json', stmt)).toString('base64');
    await pushBundleReferrer(env.target, 'prov/bundle-retyped', { digest: img.digest, size: img.manifest.length, mediaType: img.mediaType }, Buffer.from(JSON.stringify(honest)));
    await deniedWith('prov/bundle-retyped', /not signed by an authority of the policy: signature does not verify/);
  });

  test('a `.att` envelope of another payload type, correctly signed as such: not an attestation', async () => {
    const img = await signedImage('prov/att-json');
    await pushLegacyAttestation(env.target, 'prov/att-json', img.digest, [attestationLayer(env.keys.p256, provenance({ sha256: img.digest.slice(7) }), { payloadType: 'application/json' })]);
    await deniedWith('prov/att-json', /DSSE payload type is \\?"application\/json\\?", not application\/vnd\.in-toto\+json/);
  });

  test('a cosign signature bundle (sign/v1) is no provenance, though signed by the same key', async () => {
    const img = await signedImage('prov/sign-bundle');
    await pushBundleReferrer(env.target, 'prov/sign-bundle', { digest: img.digest, size: img.manifest.length, mediaType: img.mediaType }, bundleFor(env.keys.p256, img.digest));
    await deniedWith('prov/sign-bundle', /not met: no attestation of predicate type https:\/\/slsa\.dev\/provenance\/v1/);
  });
});

describe('signers', () => {
  test('a keyless attestation from a look-alike certificate authority the trusted root does not hold: not signed', async () => {
    const id = env.sigstore.issueIdentity(SUBJECT, ISSUER);
    const forged = env.sigstore.issueIdentity(SUBJECT, ISSUER, { untrusted: true });
    const img = await env.push('keyless/forged', 'v1');
    await pushLegacySignature(env.target, 'keyless/forged', img.digest, [legacyLayer(id, img.digest, { rekor: env.sigstore })]);
    await pushLegacyAttestation(env.target, 'keyless/forged', img.digest, [attestationLayer(forged, provenance({ sha256: img.digest.slice(7) }), { rekor: env.sigstore })]);
    await deniedWith('keyless/forged', /not signed by an authority of the policy: .*certificate/);
  });
});

describe('hostile statements and conditions: denied within bounds, sigil keeps serving', () => {
  test('a statement nested deeper than MAX_JSON_DEPTH is refused unparsed', async () => {
    const img = await signedImage('prov/deep');
    const deep = Buffer.from(`{"_type":"https://in-toto.io/Statement/v0.1","predicateType":"${PREDICATE.SLSA_V1}","subject":[{"digest":{"sha256":"${img.digest.slice(7)}"}}],"predicate":${'['.repeat(5000)}${']'.repeat(5000)}}`);
    await pushLegacyAttestation(env.target, 'prov/deep', img.digest, [attestationLayer(env.keys.p256, deep)]);
    await deniedWith('prov/deep', /in-toto statement is nested deeper than 64 levels/);
  });

  test('an envelope over the 1 MiB a signature blob may have is not read', async () => {
    const img = await signedImage('prov/huge');
    const huge = statement(img.digest, PREDICATE.SLSA_V1, { pad: 'x'.repeat(1024 * 1024) });
    await pushLegacyAttestation(env.target, 'prov/huge', img.digest, [attestationLayer(env.keys.p256, huge)]);
    const r = await pull(sigil, 'prov/huge', 'v1');
    assert.equal(r.status, 403);
    const e = r.json().errors[0];
    assert.match(e.message, /not met: no attestation of predicate type/);
    assert.match(JSON.stringify(e.detail), /layer size \d+ is not within 0\.\.1048576/);
  });

  test('a condition whose macros nest over a statement\'s long list is cut at the budget; the next condition is not evaluated', async () => {
    const img = await signedImage('loop/quadratic');
    const list = statement(img.digest, PREDICATE.SLSA_V1, { list: Array.from({ length: 50_000 }, (_, i) => i), pad: 'x' });
    await pushLegacyAttestation(env.target, 'loop/quadratic', img.digest, [attestationLayer(env.keys.p256, list)]);
    await deniedWith('loop/quadratic', new RegExp(`attestation quadratic .* did not finish within the ${CONDITION_BUDGET_MS} ms the conditions of one verification may take; attestation copies .* not evaluated`));
    // and meanwhile, and after, other images are answered as usual
    assert.equal((await pull(sigil, 'loop/quadratic', 'v1')).status, 403);
    const other = await signedImage('prov/after-loop');
    await pushLegacyAttestation(env.target, 'prov/after-loop', other.digest, [attestationLayer(env.keys.p256, provenance({ sha256: other.digest.slice(7) }))]);
    assert.equal((await pull(sigil, 'prov/after-loop', 'v1')).status, 200);
  });

  test('a condition that copies the statement\'s data in a macro stops at MAX_CONDITION_ALLOCATION, not at the heap\'s end', async () => {
    const img = await signedImage('loop/copies');
    // 200 copies of 600 000 characters, where `quadratic` passes quickly over 200 elements
    const many = statement(img.digest, PREDICATE.SLSA_V1, { list: Array.from({ length: 200 }, (_, i) => i), pad: 'x'.repeat(600_000) });
    await pushLegacyAttestation(env.target, 'loop/copies', img.digest, [attestationLayer(env.keys.p256, many)]);
    await deniedWith('loop/copies', /attestation copies .* could not be evaluated: .*created more than 16777216 characters/);
  });

  test('a condition that fails at evaluation (a field the statement lacks) denies; it does not crash', async () => {
    const img = await signedImage('prov/no-field');
    await pushLegacyAttestation(env.target, 'prov/no-field', img.digest, [attestationLayer(env.keys.p256, statement(img.digest, PREDICATE.SLSA_V1, { runDetails: {} }))]);
    await deniedWith('prov/no-field', /condition predicate\.buildDefinition.* could not be evaluated: /);
  });
});
