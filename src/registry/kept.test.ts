import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import type { Digest } from '../oci/digest.js';
import { imageManifest } from '../../test/helpers/fake-registry.js';
import { counted, tempStore } from '../../test/helpers/temp-store.js';
import { KEPT_STAT_MS, KEPT_TRUST_MS, KeptMemo } from './kept.js';

const stores: Array<Awaited<ReturnType<typeof tempStore>>> = [];
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
});

const at = { upstream: 'up.test', repository: 'app', reference: 'v1' };

/** A memo over a store holding one kept manifest (object, manifest record, tag), the store's calls counted. */
async function rig() {
  const store = await tempStore();
  stores.push(store);
  const m = imageManifest();
  await store.catalog.putManifest('up.test', 'app', m.digest, m.mediaType, m.bytes);
  await store.catalog.putTag('up.test', 'app', 'v1', { digest: m.digest, mediaType: m.mediaType });
  const clock = { now: 0 };
  const calls: string[] = [];
  const memo = new KeptMemo({ content: counted(store.content, calls), catalog: counted(store.catalog, calls) }, () => clock.now);
  memo.kept(at, m.digest);
  const disk = () => calls.filter((c) => c !== 'has'); // `has` answers from the index while it holds the object
  return { store, digest: m.digest as Digest, clock, calls, memo, disk };
}

test('kept a moment ago and nothing changed: answered from memory, no disk access', async () => {
  const { clock, memo, digest, disk } = await rig();
  clock.now = KEPT_STAT_MS - 1;
  for (let i = 0; i < 3; i++) assert.equal(await memo.still(at, digest), true);
  assert.deepEqual(disk(), []);
  assert.equal(await memo.still({ ...at, reference: 'v2' }, digest), false, 'another tag was not kept');
});

test('after KEPT_STAT_MS one stat finds an object another process evicted', async () => {
  const { store, clock, memo, digest, disk } = await rig();
  clock.now = KEPT_STAT_MS;
  assert.equal(await memo.still(at, digest), true);
  assert.deepEqual(disk(), ['onDisk']);
  const { rm } = await import('node:fs/promises');
  const { join } = await import('node:path');
  await rm(join(store.dir, 'blobs', 'sha256', digest.slice(7)));
  assert.equal(await memo.still(at, digest), true, 'within KEPT_STAT_MS of the last look');
  clock.now = 2 * KEPT_STAT_MS;
  assert.equal(await memo.still(at, digest), false);
});

test('an eviction of this process is seen at once', async () => {
  const { store, memo, digest } = await rig();
  await store.content.remove(digest);
  assert.equal(await memo.still(at, digest), false);
});

test('after a sweep of this process, or KEPT_TRUST_MS, the records are read back', async () => {
  const { store, clock, memo, digest, calls } = await rig();
  await store.content.sweepMeta();
  calls.length = 0;
  assert.equal(await memo.still(at, digest), true);
  assert.deepEqual(calls.filter((c) => c === 'hasManifestRecord' || c === 'getTag'), ['hasManifestRecord', 'getTag']);
  calls.length = 0;
  assert.equal(await memo.still(at, digest), true, 'read back: trusted again');
  assert.deepEqual(calls.filter((c) => c !== 'has'), []);
  clock.now = KEPT_TRUST_MS;
  await store.catalog.putTag('up.test', 'app', 'v1', { digest: imageManifest([Buffer.from('x')]).digest, mediaType: 'm' });
  assert.equal(await memo.still(at, digest), false, 'the tag record names another image now');
});
