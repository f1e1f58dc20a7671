import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { isSigilError } from '../errors.js';
import { collect, imageManifest, sha256 } from '../../test/helpers/fake-registry.js';
import { tempStore } from '../../test/helpers/temp-store.js';
import { StoredRegistry } from './offline.js';

let store: Awaited<ReturnType<typeof tempStore>>;
const layer = Buffer.from('the layer bytes');
const m = imageManifest([layer]);
const code = (c: string) => (e: unknown) => isSigilError(e) && e.code === c;

before(async () => {
  store = await tempStore();
  await store.catalog.putManifest('up.test', 'app', m.digest, m.mediaType, m.bytes);
  await store.catalog.putTag('up.test', 'app', 'v1', { digest: m.digest, mediaType: m.mediaType });
  await store.content.putBytes(sha256(layer), layer);
  await store.catalog.noteBlob('up.test', 'app', sha256(layer));
});
after(() => store.close());

test('a stored tag answers with its manifest, marked stale; what is not stored is MANIFEST_UNKNOWN', async () => {
  const reg = new StoredRegistry('up.test', store);
  const got = await reg.fetchManifest('app', 'v1');
  assert.deepEqual(got.bytes, m.bytes);
  assert.equal(got.stale, true);
  assert.deepEqual(await reg.resolveTag('app', 'v1'), { digest: m.digest, mediaType: m.mediaType });
  await assert.rejects(reg.fetchManifest('app', 'v2'), code('MANIFEST_UNKNOWN'));
  await assert.rejects(reg.fetchManifest('other', m.digest), code('MANIFEST_UNKNOWN'), 'stored for another repository');
  await assert.rejects(new StoredRegistry('other.test', store).fetchManifest('app', 'v1'), code('MANIFEST_UNKNOWN'), 'another upstream');
});

test('a blob is served only for the repository the catalog records it in, with ranges', async () => {
  const reg = new StoredRegistry('up.test', store);
  const whole = await reg.openBlob('app', sha256(layer), { method: 'GET' });
  assert.deepEqual(await collect(whole.body), layer);
  const part = await reg.openBlob('app', sha256(layer), { method: 'GET', range: 'bytes=4-' });
  assert.equal(part.status, 206);
  assert.deepEqual(await collect(part.body), layer.subarray(4));
  await assert.rejects(reg.openBlob('app', sha256(layer), { method: 'GET', range: 'bytes=999-' }), code('RANGE_INVALID'));
  await assert.rejects(reg.openBlob('other', sha256(layer), { method: 'GET' }), code('BLOB_UNKNOWN'));
  assert.equal(await reg.storedBlob('other', sha256(layer), { method: 'GET' }), null);
});

test('tag lists and referrers come from the catalog; with none recorded, NAME_UNKNOWN and no referrers API', async () => {
  const reg = new StoredRegistry('up.test', store);
  assert.deepEqual((await reg.listTags('app')).tags, ['v1']);
  await assert.rejects(reg.listTags('other'), code('NAME_UNKNOWN'));
  assert.deepEqual(await reg.referrers('app', m.digest), { kind: 'unsupported' });
  await assert.rejects(reg.storedReferrers('app', m.digest), code('MANIFEST_UNKNOWN'), 'nor the referrers tag: nothing stored');
  await store.catalog.putReferrers('up.test', 'app', m.digest, []);
  const r = await reg.storedReferrers('app', m.digest);
  assert.equal(r.kind === 'api' && r.stale, true);
});
