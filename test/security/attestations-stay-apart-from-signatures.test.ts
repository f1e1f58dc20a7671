// An attestation and a signature answer different questions ("who built it, and how?" and "who
// vouches for this digest?"), and each is looked for where the policy says: through a real
// registry, a signed attestation never stands in for the image's signature, a signature never
// stands in for an attestation, and with a signatureRepository the attestations there are the
// only ones that count.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { PREDICATE, attestationBundle, attestationLayer, slsaProvenance, statement } from '../helpers/attester.js';
import { attManifest, attTag } from '../helpers/attester.js';
import { pushBundleReferrer, pushLegacyAttestation, pushLegacySignature } from '../helpers/publish.js';
import { pushBlob, pushManifest, type PushedImage } from '../helpers/push.js';
import type { SigilHandle } from '../helpers/sigil.js';
import { bundleFor, legacyLayer, sigManifest, sigTag } from '../helpers/signer.js';
import { SUBJECT, UPSTREAM, pull, startVerifyEnv, type VerifyEnv } from '../helpers/verify-env.js';

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
  - name: elsewhere
    match: ["${UPSTREAM}/apart/**"]
    mode: enforce
    signatureRepository: ${UPSTREAM}/signatures/store
    authorities:
      - { key: ${k.p256.path}, tlog: ignore }
    attestations:
      - name: built-by-our-ci
        predicateType: ${PREDICATE.SLSA_V1}
        condition: predicate.buildDefinition.externalParameters.workflow.repository == "${OUR_REPO}"
`);
});
after(async () => {
  await env?.stop();
});

const provenance = (digest: string): Buffer => statement(digest, PREDICATE.SLSA_V1, slsaProvenance({ builderId: SUBJECT, repository: OUR_REPO }));
const provenanceV1 = (digest: string): Buffer => statement(digest, PREDICATE.SLSA_V1, slsaProvenance({ builderId: SUBJECT, repository: OUR_REPO }), { version: 'v1' });
const descriptor = (img: PushedImage) => ({ digest: img.digest, size: img.manifest.length, mediaType: img.mediaType });

async function denial(repo: string): Promise<{ message: string; detail?: { outcome?: string } }> {
  const r = await pull(sigil, repo, 'v1');
  assert.equal(r.status, 403, r.body.toString());
  const e = r.json().errors[0];
  assert.equal(e.code, 'DENIED');
  return e;
}

describe('an attestation is no signature, and a signature no attestation', () => {
  test('a signed provenance bundle among the referrers, the image itself unsigned: 403, the bundle is not its signature', async () => {
    const img = await env.push('prov/bundle-only', 'v1');
    await pushBundleReferrer(env.target, 'prov/bundle-only', descriptor(img), attestationBundle(env.keys.p256, img.digest, provenanceV1(img.digest)));
    const e = await denial('prov/bundle-only');
    assert.match(e.message, /no valid signature: 1 signature\(s\) found, none verified/);
    assert.match(JSON.stringify(e.detail), /predicate type \\"https:\/\/slsa\.dev\/provenance\/v1\\" is not one of the policy's predicateTypes/);
  });

  test('the same bundle beside a signature of the image: served (the bundle counts where it belongs)', async () => {
    const img = await env.push('prov/bundle-and-sig', 'v1');
    await pushBundleReferrer(env.target, 'prov/bundle-and-sig', descriptor(img), attestationBundle(env.keys.p256, img.digest, provenanceV1(img.digest)));
    await pushLegacySignature(env.target, 'prov/bundle-and-sig', img.digest, [legacyLayer(env.keys.p256, img.digest)]);
    assert.equal((await pull(sigil, 'prov/bundle-and-sig', 'v1')).status, 200);
  });

  test('a legacy signature and a cosign signature bundle, both by the policy\'s key: signed, but no provenance is attested', async () => {
    const img = await env.push('prov/signatures-only', 'v1');
    await pushLegacySignature(env.target, 'prov/signatures-only', img.digest, [legacyLayer(env.keys.p256, img.digest)]);
    await pushBundleReferrer(env.target, 'prov/signatures-only', descriptor(img), bundleFor(env.keys.p256, img.digest));
    const e = await denial('prov/signatures-only');
    assert.equal(e.detail?.outcome, 'invalid');
    assert.match(e.message, /not met: no attestation of predicate type https:\/\/slsa\.dev\/provenance\/v1/);
  });
});

describe('each cosign tag holds its own kind', () => {
  async function pushUnder(repo: string, tag: string, artifact: { manifest: Buffer; mediaType: string; blobs: Buffer[] }): Promise<void> {
    for (const b of artifact.blobs) await pushBlob(env.target, repo, b);
    await pushManifest(env.target, repo, tag, artifact.manifest, artifact.mediaType);
  }

  test('a valid attestation envelope under the `.sig` tag is no signature: 403', async () => {
    const img = await env.push('prov/att-as-sig', 'v1');
    await pushUnder('prov/att-as-sig', sigTag(img.digest), attManifest([attestationLayer(env.keys.p256, provenance(img.digest))]));
    await pushLegacyAttestation(env.target, 'prov/att-as-sig', img.digest, [attestationLayer(env.keys.p256, provenance(img.digest))]);
    const e = await denial('prov/att-as-sig');
    assert.match(JSON.stringify(e.detail), /media type application\/vnd\.dsse\.envelope\.v1\+json is not application\/vnd\.dev\.cosign\.simplesigning\.v1\+json/);
  });

  test('a valid signature under the `.att` tag is no attestation: 403', async () => {
    const img = await env.push('prov/sig-as-att', 'v1');
    await pushLegacySignature(env.target, 'prov/sig-as-att', img.digest, [legacyLayer(env.keys.p256, img.digest)]);
    await pushUnder('prov/sig-as-att', attTag(img.digest), sigManifest([legacyLayer(env.keys.p256, img.digest)]));
    const e = await denial('prov/sig-as-att');
    assert.equal(e.detail?.outcome, 'invalid');
    assert.match(e.message, /not met: no attestation of predicate type https:\/\/slsa\.dev\/provenance\/v1/);
  });
});

describe('with a signatureRepository, attestations are looked for there and only there', () => {
  async function signedElsewhere(repo: string): Promise<PushedImage> {
    const img = await env.push(repo, 'v1');
    await pushLegacySignature(env.target, 'signatures/store', img.digest, [legacyLayer(env.keys.p256, img.digest)]);
    return img;
  }

  test('a `.att` attestation in the signature repository meets the requirement', async () => {
    const img = await signedElsewhere('apart/there');
    await pushLegacyAttestation(env.target, 'signatures/store', img.digest, [attestationLayer(env.keys.p256, provenance(img.digest))]);
    assert.equal((await pull(sigil, 'apart/there', 'v1')).status, 200);
  });

  test('a `.att` attestation and a bundle beside the image, in its own repository: not looked at, 403', async () => {
    const img = await signedElsewhere('apart/beside');
    await pushLegacyAttestation(env.target, 'apart/beside', img.digest, [attestationLayer(env.keys.p256, provenance(img.digest))]);
    await pushBundleReferrer(env.target, 'apart/beside', descriptor(img), attestationBundle(env.keys.p256, img.digest, provenanceV1(img.digest)));
    const e = await denial('apart/beside');
    assert.equal(e.detail?.outcome, 'invalid');
    assert.match(e.message, /not met: no attestation of predicate type https:\/\/slsa\.dev\/provenance\/v1/);
  });
});
