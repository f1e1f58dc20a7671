import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakeRegistry, imageManifest } from '../../test/helpers/fake-registry.js';
import { TagCache } from './tag-cache.js';

function rig(ttlMs = 30_000) {
  const clock = { now: 1_000 }; // (lru-cache takes a start time of 0 for "no TTL")
  const below = new FakeRegistry();
  const m = below.put('app', imageManifest(), 'v1');
  const cache = new TagCache(below, { ttlMs, now: () => clock.now });
  return { clock, below, m, cache };
}

test('within the TTL a tag is fetched by the digest it pointed at, not asked by tag again', async () => {
  const { below, m, cache } = rig();
  assert.equal((await cache.fetchManifest('app', 'v1')).digest, m.digest);
  assert.equal((await cache.fetchManifest('app', 'v1')).digest, m.digest);
  assert.deepEqual(below.calls, ['fetchManifest app:v1', `fetchManifest app@${m.digest}`]);
});

test('once the TTL is over the tag is asked again, and a moved tag is followed', async () => {
  const { clock, below, cache } = rig(1_000);
  await cache.fetchManifest('app', 'v1');
  const moved = below.put('app', imageManifest([Buffer.from('layer')]), 'v1');
  clock.now += 1_001;
  assert.equal((await cache.fetchManifest('app', 'v1')).digest, moved.digest);
  assert.equal(below.count('fetchManifest app:v1'), 2);
});

test('a stale answer (the store while the upstream fails) is served but not remembered', async () => {
  const { below, m, cache } = rig();
  below.manifests.set(m.digest, { ...m, stale: true });
  assert.equal((await cache.fetchManifest('app', 'v1')).stale, true);
  await cache.fetchManifest('app', 'v1');
  assert.equal(below.count('fetchManifest app:v1'), 2);
});

test('tags are remembered per Accept; digests pass through', async () => {
  const { below, m, cache } = rig();
  await cache.fetchManifest('app', 'v1', { accept: 'a' });
  await cache.fetchManifest('app', 'v1', { accept: 'b' });
  assert.equal(below.count('fetchManifest app:v1'), 2);
  await cache.fetchManifest('app', m.digest);
  await cache.fetchManifest('app', m.digest);
  assert.equal(below.count(`fetchManifest app@${m.digest}`), 2);
});
