import assert from 'node:assert/strict';
import { fastTimer } from '../../test/helpers/clock.js';
import { after, before, beforeEach, test } from 'node:test';
import { FakeRegistry, imageManifest, manualTimer, silentLogger } from '../../test/helpers/fake-registry.js';
import { redisForSpecs } from '../../test/helpers/redis-specs.js';
import { KEY_PREFIX } from '../shared/coordinator.js';
import { MANIFEST_FOLLOW_DEADLINE_MS, SHARED_MANIFEST_MAX_BYTES, SharedManifests } from './shared-manifests.js';

const redis = redisForSpecs();

const m1 = imageManifest([Buffer.from('one layer')]);

/** One process: its own upstream holding `m1` in repository app, and its layer on the shared Redis. */
async function proc(url = redis.server.url, clock: { timer: (ms: number, fire: () => void) => () => void; now?: () => number } = fastTimer()) {
  const below = new FakeRegistry();
  below.put('app', m1);
  const coordinator = await redis.connect(url);
  const layer = new SharedManifests(below, { coordinator, logger: silentLogger(), ...clock });
  return { below, layer };
}

/** Resolves once `n` waits are armed on `t` (the followers are polling), without real waits. */
async function armed(t: ReturnType<typeof manualTimer>, n: number): Promise<void> {
  while (t.armed.length < n) await new Promise((r) => setImmediate(r));
}

test('processes asking for one manifest by digest at once: the upstream is asked once, every process gets the bytes', async () => {
  const polls = manualTimer();
  const [a, b, c] = [await proc(), await proc(redis.server.url, polls), await proc(redis.server.url, polls)];
  a.below.hold.add('fetchManifest');
  const first = a.layer.fetchManifest('app', m1.digest);
  await a.below.held();
  const others = [b.layer.fetchManifest('app', m1.digest), c.layer.fetchManifest('app', m1.digest)];
  await armed(polls, 2); // both found the lease held and wait for the holder
  a.below.release();
  await first;
  polls.fire();
  for (const m of [await first, ...(await Promise.all(others))]) {
    assert.equal(m.digest, m1.digest);
    assert.deepEqual(m.bytes, m1.bytes);
  }
  assert.equal(a.below.count('fetchManifest'), 1);
  assert.equal(b.below.count('fetchManifest') + c.below.count('fetchManifest'), 0);
});

test('a manifest published for one repository is not given out for another', async () => {
  const [a, b] = [await proc(), await proc()];
  b.below.put('other', m1);
  await a.layer.fetchManifest('app', m1.digest);
  await b.layer.fetchManifest('other', m1.digest);
  assert.equal(b.below.count(`fetchManifest other@${m1.digest}`), 1);
});

test('bytes in Redis that do not hash to the digest are never served: the upstream is asked instead', async () => {
  const a = await proc();
  const forged = Buffer.from('{"schemaVersion":2,"layers":[]}');
  await redis.raw.set(`${KEY_PREFIX}value:manifest-bytes:${a.below.name}/app@${m1.digest}`, JSON.stringify({ mediaType: m1.mediaType, bytes: forged.toString('base64') }));
  const m = await a.layer.fetchManifest('app', m1.digest);
  assert.deepEqual(m.bytes, m1.bytes);
  assert.equal(a.below.count('fetchManifest'), 1);
});

test('a holder that never publishes: a follower gives up after its deadline and fetches its own', async () => {
  const [a, b] = [await proc(), await proc()];
  a.below.hold.add('fetchManifest');
  const first = a.layer.fetchManifest('app', m1.digest);
  await a.below.held();
  const second = await b.layer.fetchManifest('app', m1.digest); // the fast clock runs past MANIFEST_FOLLOW_DEADLINE_MS
  assert.deepEqual(second.bytes, m1.bytes);
  assert.equal(b.below.count('fetchManifest'), 1, `after ${MANIFEST_FOLLOW_DEADLINE_MS} ms of waiting`);
  a.below.release();
  await first;
});

test('a manifest larger than SHARED_MANIFEST_MAX_BYTES is not published', async () => {
  const [a, b] = [await proc(), await proc()];
  const big = imageManifest(Array.from({ length: 1 }, () => Buffer.alloc(1)), Buffer.alloc(16));
  const large = { ...big, bytes: Buffer.concat([big.bytes, Buffer.alloc(SHARED_MANIFEST_MAX_BYTES)]) };
  const bigDigest = (await import('../oci/digest.js')).sha256Digest(large.bytes);
  for (const p of [a, b]) p.below.put('app', { ...large, digest: bigDigest });
  await a.layer.fetchManifest('app', bigDigest);
  await b.layer.fetchManifest('app', bigDigest);
  assert.equal(b.below.count('fetchManifest'), 1);
  assert.equal(await redis.raw.exists(`${KEY_PREFIX}value:manifest-bytes:${a.below.name}/app@${bigDigest}`), 0);
});

test('tags go below untouched, and with Redis unreachable every fetch goes below', async () => {
  const a = await proc();
  a.below.put('app', m1, 'v1');
  await a.layer.fetchManifest('app', 'v1');
  assert.equal(a.below.count('fetchManifest app:v1'), 1);
  const down = await proc('redis://127.0.0.1:1');
  const m = await down.layer.fetchManifest('app', m1.digest);
  assert.deepEqual(m.bytes, m1.bytes);
  assert.equal(down.below.count('fetchManifest'), 1);
});
