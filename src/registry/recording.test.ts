import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MAX_SIGNATURE_BLOB_BYTES } from '../signatures/limits.js';
import { FakeRegistry, collect, imageManifest, sha256 } from '../../test/helpers/fake-registry.js';
import { recording } from './recording.js';

test('what signature discovery reads through the recorded registry is kept: manifests, whole blobs, referrers lists', async () => {
  const below = new FakeRegistry();
  const sig = below.put('app', imageManifest([Buffer.from('payload')]), 'sha256-abc.sig');
  below.blobs.set(sha256('payload'), Buffer.from('payload'));
  const list = [{ digest: sig.digest }];
  below.referrers = async () => ({ kind: 'api', body: Buffer.from(JSON.stringify({ manifests: list })), contentType: 'application/vnd.oci.image.index.v1+json' });
  const { registry, recording: rec } = recording(below);

  await registry.fetchManifest('app', 'sha256-abc.sig');
  assert.deepEqual(await collect((await registry.openBlob('app', sha256('payload'), { method: 'GET' })).body), Buffer.from('payload'));
  await registry.referrers('app', sig.digest);

  assert.equal(rec.upstream, 'up.test');
  assert.deepEqual(rec.manifests.map((m) => [m.repository, m.reference, m.manifest.digest]), [['app', 'sha256-abc.sig', sig.digest]]);
  assert.deepEqual(rec.blobs, [{ repository: 'app', digest: sha256('payload'), bytes: Buffer.from('payload') }]);
  assert.deepEqual(rec.referrers, [{ repository: 'app', digest: sig.digest, manifests: list }]);
});

test('a range, an answer that is not JSON and a blob over MAX_SIGNATURE_BLOB_BYTES are not recorded', async () => {
  const below = new FakeRegistry();
  const big = Buffer.alloc(MAX_SIGNATURE_BLOB_BYTES + 1, 1);
  below.blobs.set(sha256(big), big);
  below.blobs.set(sha256('part'), Buffer.from('part'));
  below.referrers = async () => ({ kind: 'api', body: Buffer.from('not json'), contentType: 'application/json' });
  const { registry, recording: rec } = recording(below);
  await collect((await registry.openBlob('app', sha256(big), { method: 'GET' })).body);
  await collect((await registry.openBlob('app', sha256('part'), { method: 'GET', range: 'bytes=1-' })).body);
  await registry.referrers('app', sha256(big));
  assert.deepEqual(rec.blobs, []);
  assert.deepEqual(rec.referrers, []);
});
