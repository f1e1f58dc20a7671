import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Metrics } from '../audit/metrics.js';
import { isSigilError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import { FakeRegistry, imageManifest } from '../../test/helpers/fake-registry.js';
import { UpstreamBreaker } from './stale-breaker.js';
import { StaleIfError, type StoredAnswers } from './stale-if-error.js';

/** The store's answers, from a second fake: v1 stored, v2 not. */
function rig() {
  const below = new FakeRegistry();
  const store = new FakeRegistry();
  const m = imageManifest();
  below.put('app', m, 'v1');
  below.put('app', m, 'v2');
  store.put('app', { ...m, stale: true }, 'v1');
  store.tagLists.set('app', ['v1']);
  const stored: StoredAnswers = {
    fetchManifest: (repo, ref) => store.fetchManifest(repo, ref),
    listTags: async (repo) => ({ ...(await store.listTags(repo)), stale: true }),
    storedReferrers: async () => {
      throw new Error('not asked here');
    },
  };
  const clock = { now: 0 };
  const breaker = new UpstreamBreaker({ now: () => clock.now, intervalMs: 100 });
  const metrics = new Metrics({ defaultMetrics: false });
  const layer = new StaleIfError(below, { stored, breaker, metrics });
  const stale = async () => (await metrics.staleResponses.get()).values.reduce((n, v) => n + v.value, 0);
  return { below, store, m, clock, breaker, layer, stale };
}

test('a tag whose upstream fails in a way stale-if-error covers gets the stored answer, marked stale and counted', async () => {
  const { below, layer, stale } = rig();
  below.fail.set('fetchManifest app:', 'UPSTREAM_UNREACHABLE');
  assert.equal((await layer.fetchManifest('app', 'v1')).stale, true);
  below.fail.set('listTags', 'UPSTREAM_TOOMANYREQUESTS');
  assert.deepEqual((await layer.listTags('app', {})).tags, ['v1']);
  assert.equal(await stale(), 2);
});

test('with nothing stored, or a failure it does not cover, the upstream\'s answer is the answer', async () => {
  const { below, layer, stale } = rig();
  below.fail.set('fetchManifest app:v2', 'UPSTREAM_TIMEOUT');
  await assert.rejects(layer.fetchManifest('app', 'v2'), (e) => isSigilError(e) && e.code === 'UPSTREAM_TIMEOUT');
  below.fail.set('fetchManifest app:v1', 'UPSTREAM_DENIED');
  await assert.rejects(layer.fetchManifest('app', 'v1'), (e) => isSigilError(e) && e.code === 'UPSTREAM_DENIED');
  assert.equal(await stale(), 0);
});

test('while the breaker holds the upstream for failing, stored answers come at once; the rest still ask it', async () => {
  const { below, breaker, layer } = rig();
  breaker.failed();
  assert.equal((await layer.fetchManifest('app', 'v1')).stale, true);
  assert.equal(below.count('fetchManifest'), 0, 'not asked');
  assert.equal((await layer.fetchManifest('app', 'v2')).stale, undefined, 'not stored: asked');
  assert.equal(below.count('fetchManifest app:v2'), 1);
});

test('after the interval one request probes the upstream while the others are answered from the store', async () => {
  const { below, clock, breaker, layer } = rig();
  breaker.failed();
  clock.now = 100;
  below.hold.add('fetchManifest app:v1');
  const probe = layer.fetchManifest('app', 'v1');
  assert.equal(below.waiting, 1);
  assert.equal((await layer.fetchManifest('app', 'v1')).stale, true);
  assert.equal(below.count('fetchManifest'), 1, 'only the probe asked');
  below.release();
  assert.equal((await probe).stale, undefined);
  // (the deadline layer below closes the breaker on the answer; here it is still failing)
  assert.equal(breaker.turn(), 'probe', 'the probe is over: the next request may probe');
});

test('a manifest by digest passes through (the store read below answers it first)', async () => {
  const { below, m, breaker, layer } = rig();
  breaker.failed();
  await layer.fetchManifest('app', m.digest as Digest);
  assert.equal(below.count(`fetchManifest app@${m.digest}`), 1);
});
