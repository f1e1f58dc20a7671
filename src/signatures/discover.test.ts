// Discovery of cosign's `.att` attestations beside the signatures: looked for only when a policy
// requires attestations, read as DSSE envelope candidates kept apart from the signatures, under
// the same bounds (candidates, layers, media types) and failure reporting as the `.sig` tag.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Digest } from '../oci/digest.js';
import { discoverSignatures } from './discover.js';
import { MAX_CANDIDATES, MAX_SIGNATURE_LAYERS } from './limits.js';
import { attManifest, attTag, attestationLayer, statement, type AttestationLayer } from '../../test/helpers/attester.js';
import { FakeRegistry, sha256 } from '../../test/helpers/fake-registry.js';
import { generateKey, legacyLayer, sigManifest, sigTag } from '../../test/helpers/signer.js';

const REPO = 'app';
const digest = sha256(Buffer.from('the image')) as Digest;
const key = generateKey('p256');
const layer = (): AttestationLayer => attestationLayer(key, statement(digest, 'https://slsa.dev/provenance/v1', {}));

/** Pushes a manifest (and its blobs) into the fake registry under `tag`. */
function put(r: FakeRegistry, tag: string, m: { manifest: Buffer; mediaType: string; blobs: Buffer[] }): void {
  for (const b of m.blobs) r.blobs.set(sha256(b) as Digest, b);
  r.put(REPO, { bytes: m.manifest, digest: sha256(m.manifest) as Digest, mediaType: m.mediaType }, tag);
}

function registry(opts: { sigLayers?: number; attLayers?: AttestationLayer[] } = {}): FakeRegistry {
  const r = new FakeRegistry();
  put(r, sigTag(digest), sigManifest(Array.from({ length: opts.sigLayers ?? 1 }, () => legacyLayer(key, digest))));
  if (opts.attLayers) put(r, attTag(digest), attManifest(opts.attLayers));
  return r;
}

describe('the .att tag', () => {
  test('is not asked for when the policy requires no attestations', async () => {
    const r = registry({ attLayers: [layer()] });
    const found = await discoverSignatures({ registry: r, repository: REPO }, digest);
    assert.equal(r.count(`fetchManifest ${REPO}:${attTag(digest)}`), 0);
    assert.deepEqual([found.candidates.length, found.attestations.length], [1, 0]);
  });

  test('with attestations: its DSSE layers are attestation candidates, exactly as stored, apart from the signatures', async () => {
    const l = layer();
    const r = registry({ attLayers: [l] });
    const found = await discoverSignatures({ registry: r, repository: REPO }, digest, { attestations: true });
    assert.deepEqual(found.candidates.map((c) => c.format), ['legacy']);
    assert.deepEqual(found.attestations, [{ format: 'attestation', source: `${attTag(digest)} layer 0`, envelope: l.envelope, annotations: l.annotations }]);
    assert.deepEqual([found.rejected, found.failures], [[], []]);
  });

  test('absent: no attestation, no failure', async () => {
    const found = await discoverSignatures({ registry: registry(), repository: REPO }, digest, { attestations: true });
    assert.deepEqual([found.attestations, found.rejected, found.failures], [[], [], []]);
  });

  test('a layer of another media type is rejected with its reason (a simple-signing layer is no attestation)', async () => {
    const r = registry();
    put(r, attTag(digest), sigManifest([legacyLayer(key, digest)]));
    const found = await discoverSignatures({ registry: r, repository: REPO }, digest, { attestations: true });
    assert.deepEqual(found.attestations, []);
    assert.deepEqual(found.rejected, [{ source: `${attTag(digest)} layer 0`, reason: 'media type application/vnd.dev.cosign.simplesigning.v1+json is not application/vnd.dsse.envelope.v1+json' }]);
  });

  test('an upstream failure of its lookup is reported (nothing verified then means could not verify)', async () => {
    const r = registry({ attLayers: [layer()] });
    r.fail.set(`fetchManifest ${REPO}:${attTag(digest)}`, 'UPSTREAM_UNREACHABLE');
    const found = await discoverSignatures({ registry: r, repository: REPO }, digest, { attestations: true });
    assert.equal(found.candidates.length, 1);
    assert.deepEqual(found.failures, [`.att tag lookup failed: UPSTREAM_UNREACHABLE: up.test: fetchManifest ${REPO}:${attTag(digest)} failed`]);
  });

  test(`signatures and attestations together count against MAX_CANDIDATES (${MAX_CANDIDATES})`, async () => {
    const r = registry({ sigLayers: MAX_SIGNATURE_LAYERS, attLayers: Array.from({ length: MAX_SIGNATURE_LAYERS }, layer) });
    const found = await discoverSignatures({ registry: r, repository: REPO }, digest, { attestations: true });
    assert.equal(found.candidates.length + found.attestations.length, MAX_CANDIDATES);
    assert.equal(found.attestations.length, MAX_CANDIDATES - MAX_SIGNATURE_LAYERS);
    assert.deepEqual(found.rejected.map((x) => x.source), ['all']);
  });
});
