import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isSigilError } from '../errors.js';
import { FakeRegistry, imageManifest } from '../../test/helpers/fake-registry.js';
import { ManifestCache } from './manifest-cache.js';

function rig() {
  const below = new FakeRegistry();
  const m = below.put('app', imageManifest(), 'v1');
  return { below, m, cache: new ManifestCache(below, { maxBytes: 1 << 20 }) };
}

test('a manifest by digest is fetched once, then answered from memory', async () => {
  const { below, m, cache } = rig();
  assert.deepEqual((await cache.fetchManifest('app', m.digest)).bytes, m.bytes);
  assert.deepEqual((await cache.fetchManifest('app', m.digest)).bytes, m.bytes);
  assert.deepEqual(below.calls, [`fetchManifest app@${m.digest}`]);
});

test('a tag is resolved with a HEAD, and a manifest held already is not downloaded again', async () => {
  const { below, m, cache } = rig();
  await cache.fetchManifest('app', m.digest);
  assert.equal((await cache.fetchManifest('app', 'v1')).digest, m.digest);
  assert.deepEqual(below.calls, [`fetchManifest app@${m.digest}`, 'resolveTag app:v1']);
});

test('a HEAD that names no digest: the tag is fetched by tag, and the manifest held by its digest', async () => {
  const { below, m, cache } = rig();
  below.headNamesDigest = false;
  assert.equal((await cache.fetchManifest('app', 'v1')).digest, m.digest);
  await cache.fetchManifest('app', m.digest);
  assert.deepEqual(below.calls, ['resolveTag app:v1', 'fetchManifest app:v1']);
});

test('a tag that moved between the HEAD and the GET by digest is fetched by tag', async () => {
  const { below, m, cache } = rig();
  below.fail.set(`fetchManifest app@${m.digest}`, 'MANIFEST_UNKNOWN');
  assert.equal((await cache.fetchManifest('app', 'v1')).digest, m.digest);
  assert.deepEqual(below.calls, ['resolveTag app:v1', `fetchManifest app@${m.digest}`, 'fetchManifest app:v1']);
});

test('any other failure of the GET by digest is the answer', async () => {
  const { below, m, cache } = rig();
  below.fail.set(`fetchManifest app@${m.digest}`, 'UPSTREAM_BAD_RESPONSE');
  await assert.rejects(cache.fetchManifest('app', 'v1'), (e) => isSigilError(e) && e.code === 'UPSTREAM_BAD_RESPONSE');
  assert.equal(below.count('fetchManifest app:v1'), 0);
});

test('a stale answer is served, not held', async () => {
  const { below, m, cache } = rig();
  below.manifests.set(m.digest, { ...m, stale: true });
  await cache.fetchManifest('app', m.digest);
  await cache.fetchManifest('app', m.digest);
  assert.equal(below.count(`fetchManifest app@${m.digest}`), 2);
});

test('manifests are held per Accept', async () => {
  const { below, m, cache } = rig();
  await cache.fetchManifest('app', m.digest, { accept: 'a' });
  await cache.fetchManifest('app', m.digest, { accept: 'b' });
  assert.equal(below.count(`fetchManifest app@${m.digest}`), 2);
});
