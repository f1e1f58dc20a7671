import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { PassThrough, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterEach, test } from 'node:test';
import type { Policy } from '../config/types.js';
import { isSigilError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import { FakeRegistry, collect, sha256, silentLogger } from '../../test/helpers/fake-registry.js';
import { tempStore } from '../../test/helpers/temp-store.js';
import { StoreAdmission } from './admission.js';
import { MAX_STORE_DOWNLOADS, WriteThrough } from './write-through.js';

const stores: Array<Awaited<ReturnType<typeof tempStore>>> = [];
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
});

const enforceAll = { name: 'all', mode: 'enforce', matchers: [/^.*$/], fingerprint: 'f' } as unknown as Policy;

async function rig(policies: Policy[] = []) {
  const store = await tempStore();
  stores.push(store);
  const below = new FakeRegistry();
  const admission = new StoreAdmission(policies, { ttlMs: 60_000 });
  const layer = new WriteThrough(below, { store, admission, logger: silentLogger() });
  const blob = (text: string): Digest => {
    const bytes = Buffer.from(text);
    below.blobs.set(sha256(bytes), bytes);
    return sha256(bytes);
  };
  /** The catalog records the blob for `repo` (it does so once the store committed it). */
  const recorded = async (repo: string, d: Digest): Promise<boolean> => {
    for (let i = 0; i < 1000 && !(await store.catalog.hasBlob('up.test', repo, d)); i++) await new Promise((r) => setImmediate(r));
    return store.catalog.hasBlob('up.test', repo, d);
  };
  return { store, below, admission, layer, blob, recorded };
}

test('concurrent GETs of an admitted blob share one download into the store, each reading behind it', async () => {
  const { below, layer, blob, recorded } = await rig();
  const d = blob('layer bytes');
  below.hold.add('openBlob GET');
  const reads = [layer.openBlob('app', d, { method: 'GET' }), layer.openBlob('app', d, { method: 'GET' })];
  await below.held();
  below.release();
  for (const r of await Promise.all(reads)) assert.deepEqual(await collect(r.body), Buffer.from('layer bytes'));
  assert.equal(below.count('openBlob'), 1, below.calls.join(', '));
  assert.equal(await recorded('app', d), true);
});

test('the manifest that admitted a blob is recorded as naming it, and the download is held to its descriptor\'s size', async () => {
  const { store, admission, below, layer, blob, recorded } = await rig([enforceAll]);
  const d = blob('sized layer');
  const manifest = sha256('a manifest');
  admission.admitNamed('up.test', 'app', manifest, [{ digest: d, size: 11 }]);
  assert.deepEqual(await collect((await layer.openBlob('app', d, { method: 'GET' })).body), Buffer.from('sized layer'));
  assert.equal(await recorded('app', d), true);
  assert.deepEqual(await store.catalog.blobNamers('up.test', 'app', d), [manifest]);

  const longer = blob('a longer layer than said');
  admission.admitNamed('up.test', 'app', manifest, [{ digest: longer, size: 5 }]);
  assert.deepEqual(await collect((await layer.openBlob('app', longer, { method: 'GET' })).body), Buffer.from('a longer layer than said'));
  assert.equal(await store.content.has(longer), false, 'not what the manifest said: passed through, not stored');
  assert.equal(below.count(`openBlob GET app@${longer}`), 2, 'asked again to pass it through');
});

test('under enforce a blob no manifest let through names passes through unstored', async () => {
  const { store, below, layer, blob } = await rig([enforceAll]);
  const d = blob('unnamed');
  assert.deepEqual(await collect((await layer.openBlob('app', d, { method: 'GET' })).body), Buffer.from('unnamed'));
  assert.equal(await store.content.has(d), false);
  assert.deepEqual(below.calls, [`openBlob GET app@${d}`]);
});

test('HEADs, ranges and skipStore requests pass through', async () => {
  const { store, below, layer, blob } = await rig();
  const d = blob('0123456789');
  await layer.openBlob('app', d, { method: 'HEAD' });
  (await layer.openBlob('app', d, { method: 'GET', range: 'bytes=2-' })).body?.destroy();
  (await layer.openBlob('app', d, { method: 'GET', skipStore: true })).body?.destroy();
  assert.equal(below.count('openBlob'), 3);
  assert.equal(await store.content.has(d), false);
});

test('a blob stored for another repository is confirmed with a HEAD and then served from the store for this one', async () => {
  const { store, below, layer, blob, recorded } = await rig();
  const d = blob('shared layer');
  await store.content.putBytes(d, Buffer.from('shared layer'));
  assert.deepEqual(await collect((await layer.openBlob('team/b', d, { method: 'GET' })).body), Buffer.from('shared layer'));
  assert.deepEqual(below.calls, [`openBlob HEAD team/b@${d}`]);
  assert.equal(await recorded('team/b', d), true);
});

test(`past MAX_STORE_DOWNLOADS (${MAX_STORE_DOWNLOADS}) downloads at once, blobs pass through unstored`, async () => {
  const { store, below, layer, blob } = await rig();
  below.hold.add('openBlob GET');
  const digests = Array.from({ length: MAX_STORE_DOWNLOADS + 1 }, (_, i) => blob(`layer ${i}`));
  const first = digests.slice(0, MAX_STORE_DOWNLOADS).map((d) => layer.openBlob('app', d, { method: 'GET' }));
  for (let i = 0; i < 1000 && below.waiting < MAX_STORE_DOWNLOADS; i++) await new Promise((r) => setImmediate(r));
  assert.equal(below.waiting, MAX_STORE_DOWNLOADS);
  below.hold.clear();
  const last = digests[MAX_STORE_DOWNLOADS]!;
  assert.deepEqual(await collect((await layer.openBlob('app', last, { method: 'GET' })).body), Buffer.from(`layer ${MAX_STORE_DOWNLOADS}`));
  assert.equal(await store.content.has(last), false);
  below.release();
  for (const r of await Promise.all(first)) await collect(r.body);
});

test('a lying upstream: the request that started the download and the one that joined it are both cut off before the last byte, nothing stored', async () => {
  const { store, below, layer } = await rig();
  const right = Buffer.from('the real layer');
  const d = sha256(right);
  const forged = new PassThrough();
  let asked = 0;
  below.openBlob = async () => {
    asked++;
    return { status: 200, headers: { 'content-length': String(right.length) }, body: forged };
  };
  const reads = await Promise.all([layer.openBlob('app', d, { method: 'GET' }), layer.openBlob('app', d, { method: 'GET' })]);
  forged.end('a forged layer'); // as long as the real one; both requests read behind the download by now
  for (const r of reads) {
    const had: Buffer[] = [];
    await assert.rejects(
      (async () => {
        for await (const c of r.body!) had.push(c as Buffer);
      })(),
      (e) => isSigilError(e) && e.code === 'DIGEST_MISMATCH',
    );
    assert.ok(Buffer.concat(had).length < right.length, 'cut off before the end');
  }
  assert.equal(asked, 1, 'one download');
  assert.equal(await store.content.has(d), false);
});

test('a request that joins a download just after the store committed it (the catalog still recording it) gets the blob\'s bytes, however its reader keeps them', async () => {
  const store = await tempStore();
  stores.push(store);
  const below = new FakeRegistry();
  // larger than what the store checks before returning it: read as a stream, several chunks
  const bytes = randomBytes(4 * 1024 * 1024 + 123);
  const d = sha256(bytes);
  below.blobs.set(d, bytes);
  let recording!: () => void;
  const isRecording = new Promise<void>((r) => (recording = r));
  let record!: () => void;
  const mayRecord = new Promise<void>((r) => (record = r));
  const catalog = new Proxy(store.catalog, {
    get(t, p) {
      const v = Reflect.get(t, p, t) as unknown;
      if (typeof v !== 'function') return v;
      const f = (v as (...a: unknown[]) => Promise<unknown>).bind(t);
      if (p !== 'noteBlob') return f;
      return async (...args: unknown[]) => {
        recording();
        await mayRecord;
        return f(...args);
      };
    },
  });
  const layer = new WriteThrough(below, { store: { content: store.content, catalog }, admission: new StoreAdmission([], { ttlMs: 60_000 }), logger: silentLogger() });
  assert.equal(sha256(await collect((await layer.openBlob('app', d, { method: 'GET' })).body)), d);
  await isRecording; // committed; the download is still the one to join
  const joined = await layer.openBlob('app', d, { method: 'GET' });
  const got: Buffer[] = [];
  const reader = new Writable({
    highWaterMark: 1,
    write(chunk: Buffer, _e, cb) {
      setImmediate(() => {
        got.push(Buffer.from(chunk)); // a turn later, as a socket sends what it was given
        cb();
      });
    },
  });
  await pipeline(joined.body!, reader);
  record();
  assert.equal(sha256(Buffer.concat(got)), d);
  assert.equal(below.count('openBlob'), 1, 'the joined request read the store');
});

// A descriptor's size given with a request (signature data read whole) is that caller's own
// expectation, from a manifest nobody has verified yet: it must not bind the download that other
// requests for the blob join. An upstream that answers without a Content-Length (chunked) would
// otherwise have the store's writer hold every joined request to the wrong size.
test("a request's descriptor size does not bind the download another request joins: the other still gets the blob", async () => {
  const { store, below, layer, blob } = await rig();
  const d = blob('the layer every pull needs');
  const plain = below.openBlob.bind(below);
  below.openBlob = async (repository, digest, req) => {
    const res = await plain(repository, digest, req);
    const { 'content-length': _dropped, ...headers } = res.headers;
    return { ...res, headers }; // chunked: no length announced
  };
  below.hold.add('openBlob GET');
  const lying = layer.openBlob('app', d, { method: 'GET', verifyDigest: true, descriptorSize: 5 });
  const client = layer.openBlob('app', d, { method: 'GET' });
  await below.held();
  below.release();
  await lying.then((r) => r.body?.destroy(), () => {});
  assert.deepEqual(await collect((await client).body), Buffer.from('the layer every pull needs'));
  assert.equal(below.count('openBlob GET'), 1, 'one download, which both read');
  for (let i = 0; i < 1000 && !(await store.content.has(d)); i++) await new Promise((r) => setImmediate(r));
  assert.equal(await store.content.has(d), true, 'stored: the download was held to what the upstream sent');
});
