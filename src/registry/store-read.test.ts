import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { FakeRegistry, collect, imageManifest, sha256 } from '../../test/helpers/fake-registry.js';
import { tempStore } from '../../test/helpers/temp-store.js';
import { Metrics } from '../audit/metrics.js';
import { StoreRead } from './store-read.js';

let store: Awaited<ReturnType<typeof tempStore>>;
const layer = Buffer.from('stored layer');
const m = imageManifest([layer]);

before(async () => {
  store = await tempStore();
  await store.catalog.putManifest('up.test', 'app', m.digest, m.mediaType, m.bytes);
  await store.catalog.putTag('up.test', 'app', 'v1', { digest: m.digest, mediaType: m.mediaType });
  await store.content.putBytes(sha256(layer), layer);
  await store.catalog.noteBlob('up.test', 'app', sha256(layer));
});
after(() => store.close());

function rig() {
  const below = new FakeRegistry();
  below.put('app', m, 'v1');
  below.put('other', m);
  below.blobs.set(sha256(layer), layer);
  return { below, layer: new StoreRead(below, store) };
}

test('a manifest by digest stored for the repository comes from the store, not stale, without asking below', async () => {
  const { below, layer: r } = rig();
  const got = await r.fetchManifest('app', m.digest);
  assert.deepEqual(got.bytes, m.bytes);
  assert.equal(got.stale, undefined);
  assert.deepEqual(below.calls, []);
});

test('a tag, or a manifest not stored for the repository, is asked below', async () => {
  const { below, layer: r } = rig();
  await r.fetchManifest('app', 'v1');
  await r.fetchManifest('other', m.digest);
  assert.deepEqual(below.calls, ['fetchManifest app:v1', `fetchManifest other@${m.digest}`]);
});

test('a blob stored for the repository comes from the store; another repository\'s, or skipStore, from below', async () => {
  const { below, layer: r } = rig();
  assert.deepEqual(await collect((await r.openBlob('app', sha256(layer), { method: 'GET' })).body), layer);
  assert.deepEqual(below.calls, []);
  (await r.openBlob('other', sha256(layer), { method: 'GET' })).body?.destroy();
  (await r.openBlob('app', sha256(layer), { method: 'GET', skipStore: true })).body?.destroy();
  assert.deepEqual(below.calls, [`openBlob GET other@${sha256(layer)}`, `openBlob GET app@${sha256(layer)}`]);
});

test('each lookup is counted, hit or miss by kind; a tag and a skipStore blob are no lookup', async () => {
  const below = new FakeRegistry();
  below.put('app', m, 'v1');
  below.put('other', m);
  below.blobs.set(sha256(layer), layer);
  const metrics = new Metrics({ defaultMetrics: false });
  const r = new StoreRead(below, store, metrics);
  await r.fetchManifest('app', m.digest); // stored: hit
  await r.fetchManifest('other', m.digest); // not stored for that repository: miss
  await r.fetchManifest('app', 'v1'); // a tag: not looked up
  (await r.openBlob('app', sha256(layer), { method: 'GET' })).body?.destroy(); // hit
  (await r.openBlob('app', sha256(layer), { method: 'HEAD' })).body?.destroy(); // hit
  (await r.openBlob('other', sha256(layer), { method: 'GET' })).body?.destroy(); // miss
  (await r.openBlob('app', sha256(layer), { method: 'GET', skipStore: true })).body?.destroy(); // not looked up
  const counts = Object.fromEntries((await metrics.storeLookups.get()).values.map((v) => [`${v.labels.kind} ${v.labels.result}`, v.value]));
  assert.deepEqual(counts, { 'manifest hit': 1, 'manifest miss': 1, 'blob hit': 2, 'blob miss': 1 });
});
