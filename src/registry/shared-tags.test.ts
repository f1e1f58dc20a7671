import assert from 'node:assert/strict';
import { fastTimer } from '../../test/helpers/clock.js';
import { after, before, beforeEach, test } from 'node:test';
import { Metrics } from '../audit/metrics.js';
import { isSigilError } from '../errors.js';
import { FakeRegistry, imageManifest, manualTimer } from '../../test/helpers/fake-registry.js';
import { freePort } from '../../test/helpers/net.js';
import { redisForSpecs } from '../../test/helpers/redis-specs.js';
import { Coordinator, KEY_PREFIX } from '../shared/coordinator.js';
import { seal } from '../shared/sealed.js';
import { SharedTags, TAG_FOLLOW_MS, type SharedTagsOptions } from './shared-tags.js';

const TOKEN = 'a-peer-token-of-some-length';

const redis = redisForSpecs();

const connect = (url?: string): Promise<Coordinator> => redis.connect(url);

const m1 = imageManifest();
const m2 = imageManifest([Buffer.from('layer')]);

/** One process: its own upstream (counting calls; app:v1 → m1, m2 stored by digest) and its shared tags layer on the common Redis. */
async function proc(opts: Partial<SharedTagsOptions> & { url?: string } = {}) {
  const below = new FakeRegistry();
  below.put('app', m1, 'v1');
  below.put('app', m2);
  const metrics = new Metrics({ defaultMetrics: false });
  const layer = new SharedTags(below, { coordinator: await connect(opts.url), ttlMs: 30_000, staleIfError: true, metrics, token: TOKEN, ...opts });
  const stale = async () => (await metrics.staleResponses.get()).values.reduce((n, v) => n + v.value, 0);
  return { below, layer, stale };
}

test('a tag one process looked up is fetched by its digest by the others, without asking the upstream by tag', async () => {
  const a = await proc();
  const b = await proc();
  assert.equal((await a.layer.fetchManifest('app', 'v1')).digest, m1.digest);
  assert.equal((await b.layer.fetchManifest('app', 'v1')).digest, m1.digest);
  assert.equal(a.below.count('fetchManifest app:v1'), 1);
  assert.deepEqual(b.below.calls, [`fetchManifest app@${m1.digest}`]);
  assert.deepEqual(await b.layer.resolveTag('app', 'v1'), { digest: m1.digest, mediaType: m1.mediaType });
  assert.equal(b.below.count('resolveTag'), 0);
});

/** A timer the test fires by hand, with a resolver for "the first poll is due". */
function pollTimer() {
  const t = manualTimer();
  let due!: () => void;
  const polling = new Promise<void>((resolve) => (due = resolve));
  return { ...t, polling, timer: (ms: number, fire: () => void) => (due(), t.timer(ms, fire)) };
}

test('while one process looks a tag up, another waits for its answer instead of asking the upstream too', async () => {
  const a = await proc();
  const t = pollTimer();
  const b = await proc({ timer: t.timer, now: () => 0 });
  a.below.hold.add('fetchManifest app:v1');
  const first = a.layer.fetchManifest('app', 'v1');
  await a.below.held();
  const second = b.layer.fetchManifest('app', 'v1');
  await t.polling;
  a.below.release();
  assert.equal((await first).digest, m1.digest);
  t.fire();
  assert.equal((await second).digest, m1.digest);
  assert.equal(b.below.count('fetchManifest app:v1'), 0, 'b did not ask by tag');
  assert.equal(b.below.count(`fetchManifest app@${m1.digest}`), 1);
});

test('while one process resolves a tag with a HEAD, another waits for its answer instead of asking the upstream too', async () => {
  const a = await proc();
  const t = pollTimer();
  const b = await proc({ timer: t.timer, now: () => 0 });
  a.below.hold.add('resolveTag app:v1');
  const first = a.layer.resolveTag('app', 'v1');
  await a.below.held();
  const second = b.layer.resolveTag('app', 'v1');
  await t.polling;
  a.below.release();
  assert.equal((await first)?.digest, m1.digest);
  t.fire();
  assert.equal((await second)?.digest, m1.digest);
  assert.equal(b.below.count('resolveTag'), 0, 'b did not ask the upstream');
});

test(`a waiting process gives up after TAG_FOLLOW_MS (${TAG_FOLLOW_MS} ms) and looks the tag up itself`, async () => {
  const a = await proc();
  const f = fastTimer();
  const b = await proc({ timer: f.timer, now: f.now });
  a.below.hold.add('fetchManifest app:v1');
  const first = a.layer.fetchManifest('app', 'v1');
  await a.below.held();
  assert.equal((await b.layer.fetchManifest('app', 'v1')).digest, m1.digest);
  assert.equal(b.below.count('fetchManifest app:v1'), 1);
  assert.ok(f.now() >= TAG_FOLLOW_MS, `waited ${f.now()} ms of the fake clock`);
  a.below.release();
  await first;
});

test('when the process looking a tag up fails, the waiting ones stop waiting at once and look it up themselves', async () => {
  const a = await proc();
  const t = pollTimer();
  const b = await proc({ timer: t.timer, now: () => 0 });
  a.below.hold.add('fetchManifest app:v1');
  a.below.fail.set('fetchManifest app:v1', 'UPSTREAM_DENIED');
  const first = a.layer.fetchManifest('app', 'v1');
  await a.below.held();
  const second = b.layer.fetchManifest('app', 'v1');
  await t.polling;
  a.below.release();
  await assert.rejects(first, (e) => isSigilError(e) && e.code === 'UPSTREAM_DENIED');
  t.fire(); // one poll: no answer, no lease
  assert.equal((await second).digest, m1.digest);
  assert.equal(b.below.count('fetchManifest app:v1'), 1);
  assert.deepEqual(t.armed, [], 'no further poll');
});

test('answers are shared per Accept', async () => {
  const a = await proc();
  const b = await proc();
  await a.layer.fetchManifest('app', 'v1', { accept: 'application/vnd.oci.image.index.v1+json' });
  await b.layer.fetchManifest('app', 'v1', { accept: 'application/vnd.oci.image.manifest.v1+json' });
  assert.equal(b.below.count('fetchManifest app:v1'), 1);
});

test('with Redis unavailable every lookup goes straight below', async () => {
  const a = await proc({ url: `redis://127.0.0.1:${await freePort()}` });
  assert.equal((await a.layer.fetchManifest('app', 'v1')).digest, m1.digest);
  assert.equal((await a.layer.fetchManifest('app', 'v1')).digest, m1.digest);
  assert.equal(a.below.count('fetchManifest app:v1'), 2);
});

test('while the upstream fails, a process with nothing stored serves the tag\'s last good answer, marked stale and counted', async () => {
  const a = await proc();
  const b = await proc();
  await a.layer.fetchManifest('app', 'v1');
  for (const k of await redis.raw.keys(`${KEY_PREFIX}value:tag:*`)) await redis.raw.del(k); // the answer's TTL is over
  b.below.fail.set('fetchManifest app:', 'UPSTREAM_UNREACHABLE'); // (by digest it is still to be had: a bucket, a peer)
  const m = await b.layer.fetchManifest('app', 'v1');
  assert.equal(m.digest, m1.digest);
  assert.equal(m.stale, true);
  assert.equal(await b.stale(), 1);
});

test('the last good answer is not used without staleIfError, nor for a failure stale-if-error does not cover', async () => {
  const a = await proc();
  const off = await proc({ staleIfError: false });
  await a.layer.fetchManifest('app', 'v1');
  for (const k of await redis.raw.keys(`${KEY_PREFIX}value:tag:*`)) await redis.raw.del(k);
  off.below.fail.set('fetchManifest app:', 'UPSTREAM_UNREACHABLE');
  await assert.rejects(off.layer.fetchManifest('app', 'v1'), (e) => isSigilError(e) && e.code === 'UPSTREAM_UNREACHABLE');
  const on = await proc();
  on.below.fail.set('fetchManifest app:', 'UPSTREAM_DENIED');
  await assert.rejects(on.layer.fetchManifest('app', 'v1'), (e) => isSigilError(e) && e.code === 'UPSTREAM_DENIED');
  assert.equal(await on.stale(), 0);
});

test('answers are sealed with the peer token and their expiry: a forged, moved, expired (replayed) or undated answer is ignored and the tag looked up', async () => {
  const a = await proc({ token: TOKEN });
  await a.layer.fetchManifest('app', 'v1');
  const [key] = await redis.raw.keys(`${KEY_PREFIX}value:tag:*`);
  assert.ok(key);
  const logical = key.slice(`${KEY_PREFIX}value:`.length);
  const later = Date.now() + 60_000;
  const forged = [
    { digest: m2.digest, mediaType: m2.mediaType, expiresAt: later }, // plain
    seal('another-token-of-some-length', logical, { digest: m2.digest, mediaType: m2.mediaType, expiresAt: later }), // not our token
    seal(TOKEN, logical.replace('v1', 'v2'), { digest: m2.digest, mediaType: m2.mediaType, expiresAt: later }), // another tag's answer
    seal(TOKEN, logical, { digest: m2.digest, mediaType: m2.mediaType, expiresAt: Date.now() - 1 }), // a genuine answer of earlier, replayed
    seal(TOKEN, logical, { digest: m2.digest, mediaType: m2.mediaType }), // no expiry
  ];
  for (const record of forged) {
    await redis.raw.set(key, JSON.stringify(record));
    const b = await proc({ token: TOKEN });
    assert.equal((await b.layer.fetchManifest('app', 'v1')).digest, m1.digest);
    assert.equal(b.below.count('fetchManifest app:v1'), 1, 'looked up by tag');
    assert.equal(b.below.count(`fetchManifest app@${m2.digest}`), 0, 'never fetched what the forged answer named');
  }
});
