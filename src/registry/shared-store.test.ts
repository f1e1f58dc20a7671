import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { Metrics } from '../audit/metrics.js';
import { isSigilError } from '../errors.js';
import { FakeRegistry, collect, imageManifest, sha256, silentLogger } from '../../test/helpers/fake-registry.js';
import { startS3Server, type S3Server } from '../../test/helpers/s3-server.js';
import { Bucket } from '../shared/bucket.js';
import { SharedRedirect } from './shared-redirect.js';
import { BUCKET_CHECKED_BEFORE_SERVING_BYTES, SharedStore } from './shared-store.js';

// The shared bucket as a layer: a manifest by digest and a blob come from the bucket when it
// holds the record binding them to this repository and the object; what the bucket serves is
// judged by its bytes; anything else, or a bucket that fails, goes below. With `redirect`, a
// whole-blob GET the bucket holds is a 307 to a presigned URL.

const UP = 'up.test';
const layer = randomBytes(300_000);
const planted = randomBytes(1000); // a blob whose object in the bucket is another blob's bytes
const plantedBig = randomBytes(BUCKET_CHECKED_BEFORE_SERVING_BYTES + 1000); // the same, too big to be read before it is served
const caughtMidWrite = randomBytes(241); // a blob whose object is empty, as a store whose writes are not atomic shows it mid-write
const m = imageManifest([layer]);
const forged = imageManifest([randomBytes(10)]); // a manifest whose object in the bucket is other bytes

let s3: S3Server;
let bucket: Bucket;
before(async () => {
  s3 = await startS3Server();
  bucket = new Bucket(s3.config(), { logger: silentLogger() });
  assert.ok(await bucket.put(m.digest, m.bytes.length, Readable.from([m.bytes])));
  assert.ok(await bucket.putRecord({ kind: 'manifest', upstream: UP, repository: 'app', digest: m.digest }, { mediaType: m.mediaType, size: m.bytes.length }));
  assert.ok(await bucket.put(sha256(layer), layer.length, Readable.from([layer])));
  assert.ok(await bucket.putRecord({ kind: 'blob', upstream: UP, repository: 'app', digest: sha256(layer) }, { namedBy: [m.digest] }));
  await s3.putRaw(bucket.objectKey(forged.digest), Buffer.from('{"schemaVersion":2,"forged":true}'));
  assert.ok(await bucket.putRecord({ kind: 'manifest', upstream: UP, repository: 'app', digest: forged.digest }, { mediaType: forged.mediaType, size: 10 }));
  await plantWrong();
  for (const x of [planted, plantedBig, caughtMidWrite]) assert.ok(await bucket.putRecord({ kind: 'blob', upstream: UP, repository: 'app', digest: sha256(x) }, { namedBy: [] }));
  await s3.putRaw(bucket.objectKey(sha256(caughtMidWrite)), Buffer.alloc(0));
});
after(async () => {
  bucket.close();
  await s3.close();
});

/** The planted blobs' objects: their bytes with the last one changed. */
async function plantWrong(): Promise<void> {
  for (const x of [planted, plantedBig]) {
    const wrong = Buffer.from(x);
    wrong[wrong.length - 1] ^= 1;
    await s3.putRaw(bucket.objectKey(sha256(x)), wrong);
  }
}

function rig(b: Bucket = bucket, onServe?: (d: string) => void) {
  const below = new FakeRegistry(UP);
  below.put('app', m);
  below.put('other', m);
  below.put('app', forged);
  for (const x of [layer, planted, plantedBig, caughtMidWrite]) below.blobs.set(sha256(x), x);
  const metrics = new Metrics({ defaultMetrics: false });
  return { below, metrics, layer: new SharedStore(below, { bucket: b, logger: silentLogger(), metrics, onServe }) };
}

const lookups = async (metrics: Metrics) => (await metrics.sharedStoreLookups.get()).values.map((v) => `${v.labels.kind} ${v.labels.result} ${v.value}`).sort();

describe('shared store layer', () => {
  test('a manifest by digest the bucket holds for the repository comes from the bucket without asking below', async () => {
    const { below, metrics, layer: r } = rig();
    const got = await r.fetchManifest('app', m.digest);
    assert.deepEqual(got.bytes, m.bytes);
    assert.equal(got.digest, m.digest);
    assert.equal(got.mediaType, m.mediaType);
    assert.deepEqual(below.calls, []);
    assert.deepEqual(await lookups(metrics), ['manifest hit 1']);
  });

  test('a tag, or a manifest the bucket holds for another repository only, is asked below', async () => {
    const { below, layer: r } = rig();
    await r.fetchManifest('app', 'v1').catch(() => {});
    await r.fetchManifest('other', m.digest);
    assert.deepEqual(below.calls, ['fetchManifest app:v1', `fetchManifest other@${m.digest}`]);
  });

  test('a manifest whose bytes in the bucket do not hash to its digest is absent (counted): asked below', async () => {
    const { below, metrics, layer: r } = rig();
    const got = await r.fetchManifest('app', forged.digest);
    assert.deepEqual(got.bytes, forged.bytes);
    assert.deepEqual(below.calls, [`fetchManifest app@${forged.digest}`]);
    assert.deepEqual(await lookups(metrics), ['manifest mismatch 1']);
  });

  test('a whole blob the bucket holds for the repository streams from it, with its length', async () => {
    const { below, layer: r } = rig();
    const res = await r.openBlob('app', sha256(layer), { method: 'GET' });
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-length'], String(layer.length));
    assert.equal(res.headers['content-type'], 'application/octet-stream');
    assert.deepEqual(await collect(res.body), layer);
    assert.deepEqual(below.calls, []);
  });

  test('a HEAD answers from the bucket\'s head; a Range from the bucket\'s range', async () => {
    const { below, layer: r } = rig();
    const head = await r.openBlob('app', sha256(layer), { method: 'HEAD' });
    assert.deepEqual([head.status, head.headers['content-length'], head.body], [200, String(layer.length), null]);
    const part = await r.openBlob('app', sha256(layer), { method: 'GET', range: 'bytes=100-199' });
    assert.equal(part.status, 206);
    assert.equal(part.headers['content-range'], `bytes 100-199/${layer.length}`);
    assert.deepEqual(await collect(part.body), layer.subarray(100, 200));
    assert.deepEqual(below.calls, []);
  });

  test('a small blob whose object in the bucket is other bytes is answered from below, with its own bytes (counted mismatch), and not asked of the bucket again', async () => {
    await plantWrong();
    const { below, metrics, layer: r } = rig();
    const res = await r.openBlob('app', sha256(planted), { method: 'GET' });
    assert.deepEqual(await collect(res.body), planted);
    await collect((await r.openBlob('app', sha256(planted), { method: 'GET' })).body);
    assert.deepEqual(below.calls, [`openBlob GET app@${sha256(planted)}`, `openBlob GET app@${sha256(planted)}`]);
    assert.deepEqual(await lookups(metrics), ['blob mismatch 1']);
  });

  test('a small blob whose object is empty (a write under way in a store whose writes are not atomic) is answered from below; its HEAD too', async () => {
    const { below, layer: r } = rig();
    const head = await r.openBlob('app', sha256(caughtMidWrite), { method: 'HEAD' });
    assert.equal(head.headers['content-length'], String(caughtMidWrite.length));
    const res = await r.openBlob('app', sha256(caughtMidWrite), { method: 'GET' });
    assert.equal(res.headers['content-length'], String(caughtMidWrite.length));
    assert.deepEqual(await collect(res.body), caughtMidWrite);
    assert.deepEqual(below.calls, [`openBlob HEAD app@${sha256(caughtMidWrite)}`, `openBlob GET app@${sha256(caughtMidWrite)}`]);
  });

  test('wrong bytes of a big blob never reach a client complete: the whole-blob stream fails with DIGEST_MISMATCH (counted)', async () => {
    await plantWrong();
    const { metrics, layer: r } = rig();
    const res = await r.openBlob('app', sha256(plantedBig), { method: 'GET' });
    await assert.rejects(collect(res.body), (e) => isSigilError(e) && e.code === 'DIGEST_MISMATCH');
    assert.ok((await lookups(metrics)).includes('blob mismatch 1'));
  });

  test('verifyDigest false (the store\'s writer checks too) still hashes a whole blob: wrong bytes fail here as well', async () => {
    const { layer: r } = rig();
    const good = await r.openBlob('app', sha256(layer), { method: 'GET', verifyDigest: false });
    assert.deepEqual(await collect(good.body), layer);
    await plantWrong(); // (a mismatch seen before took it out of the bucket)
    const res = await r.openBlob('app', sha256(plantedBig), { method: 'GET', verifyDigest: false });
    await assert.rejects(collect(res.body), (e) => isSigilError(e) && e.code === 'DIGEST_MISMATCH');
  });

  test('a whole blob the bucket holds for another repository is served from it once the upstream answers a HEAD of it in this one (counted a hit)', async () => {
    const served: string[] = [];
    const { below, metrics, layer: r } = rig(bucket, (d) => served.push(d));
    const res = await r.openBlob('other', sha256(layer), { method: 'GET' });
    assert.equal(res.headers['content-length'], String(layer.length));
    assert.deepEqual(await collect(res.body), layer);
    assert.deepEqual(below.calls, [`openBlob HEAD other@${sha256(layer)}`], 'a HEAD below, not the blob');
    assert.deepEqual(await lookups(metrics), ['blob hit 1']);
    assert.deepEqual(served, [sha256(layer)]);
  });

  test('a blob the bucket holds for another repository only, which the upstream does not have in this one, goes below (and fails there)', async () => {
    const { below, layer: r } = rig();
    below.fail.set('openBlob HEAD private@', 'BLOB_UNKNOWN');
    below.fail.set('openBlob GET private@', 'BLOB_UNKNOWN');
    await assert.rejects(r.openBlob('private', sha256(layer), { method: 'GET' }), (e) => isSigilError(e) && e.code === 'BLOB_UNKNOWN');
    assert.deepEqual(below.calls, [`openBlob HEAD private@${sha256(layer)}`, `openBlob GET private@${sha256(layer)}`]);
  });

  test('only a 200 answer to the HEAD below lets the bucket serve a blob it holds for another repository: a redirect or a partial answer does not', async () => {
    for (const status of [307, 206, 204]) {
      const { below, layer: r } = rig();
      const open = below.openBlob.bind(below);
      below.openBlob = async (repository, digest, req) =>
        req.method === 'HEAD' ? { status, headers: { location: 'https://elsewhere.test/x' }, body: null } : open(repository, digest, req);
      const res = await r.openBlob('other', sha256(layer), { method: 'GET' });
      assert.deepEqual(await collect(res.body), layer);
      assert.deepEqual(below.calls, [`openBlob GET other@${sha256(layer)}`], `after a ${status} HEAD the blob itself is asked below`);
    }
  });

  test('a HEAD or range of a blob recorded for another repository only, a skipStore request, an unsatisfiable range, or a blob the bucket does not hold goes below', async () => {
    const { below, layer: r } = rig();
    const absent = randomBytes(100);
    below.blobs.set(sha256(absent), absent);
    await r.openBlob('other', sha256(layer), { method: 'HEAD' });
    await collect((await r.openBlob('other', sha256(layer), { method: 'GET', range: 'bytes=10-' })).body);
    await collect((await r.openBlob('app', sha256(layer), { method: 'GET', skipStore: true })).body);
    await r.openBlob('app', sha256(layer), { method: 'GET', range: `bytes=${layer.length + 10}-` }).then((x) => collect(x.body)).catch(() => {});
    await collect((await r.openBlob('other', sha256(absent), { method: 'GET' })).body);
    assert.deepEqual(below.calls, [
      `openBlob HEAD other@${sha256(layer)}`,
      `openBlob GET bytes=10- other@${sha256(layer)}`,
      `openBlob GET app@${sha256(layer)}`,
      `openBlob GET bytes=${layer.length + 10}- app@${sha256(layer)}`,
      `openBlob GET other@${sha256(absent)}`,
    ]);
  });

  test('each object served from the bucket (manifest, blob GET, HEAD) is reported as used; one asked below is not', async () => {
    const served: string[] = [];
    const { layer: r } = rig(bucket, (d) => served.push(d));
    await r.fetchManifest('app', m.digest);
    await collect((await r.openBlob('app', sha256(layer), { method: 'GET' })).body);
    await r.openBlob('app', sha256(layer), { method: 'HEAD' });
    await r.fetchManifest('other', m.digest);
    await r.openBlob('other', sha256(layer), { method: 'HEAD' });
    assert.deepEqual(served, [m.digest, sha256(layer), sha256(layer)]);
  });

  test('a record whose object was evicted from the bucket is a miss: the manifest and the blob are asked below', async () => {
    const gone = randomBytes(2000);
    const gm = imageManifest([gone]);
    assert.ok(await bucket.put(gm.digest, gm.bytes.length, Readable.from([gm.bytes])));
    assert.ok(await bucket.putRecord({ kind: 'manifest', upstream: UP, repository: 'app', digest: gm.digest }, { mediaType: gm.mediaType, size: gm.bytes.length }));
    assert.ok(await bucket.put(sha256(gone), gone.length, Readable.from([gone])));
    assert.ok(await bucket.putRecord({ kind: 'blob', upstream: UP, repository: 'app', digest: sha256(gone) }, { namedBy: [gm.digest] }));
    assert.ok(await bucket.delete(gm.digest));
    assert.ok(await bucket.delete(sha256(gone)));
    const served: string[] = [];
    const { below, metrics, layer: r } = rig(bucket, (d) => served.push(d));
    below.put('app', gm);
    below.blobs.set(sha256(gone), gone);
    assert.deepEqual((await r.fetchManifest('app', gm.digest)).bytes, gm.bytes);
    assert.deepEqual(await collect((await r.openBlob('app', sha256(gone), { method: 'GET' })).body), gone);
    assert.equal((await r.openBlob('app', sha256(gone), { method: 'HEAD' })).status, 200);
    assert.deepEqual(below.calls, [`fetchManifest app@${gm.digest}`, `openBlob GET app@${sha256(gone)}`, `openBlob HEAD app@${sha256(gone)}`]);
    assert.deepEqual(await lookups(metrics), ['blob miss 2', 'manifest miss 1']);
    assert.deepEqual(served, []);
  });

  test('a bucket that fails: everything goes below (counted unavailable)', async () => {
    const down = await startS3Server();
    const b = new Bucket(down.config(), { logger: silentLogger() });
    await down.stop();
    try {
      const { below, metrics, layer: r } = rig(b);
      await r.fetchManifest('app', m.digest);
      await collect((await r.openBlob('app', sha256(layer), { method: 'GET' })).body);
      assert.equal(below.calls.length, 2);
      assert.deepEqual(await lookups(metrics), ['blob unavailable 1', 'manifest unavailable 1']);
    } finally {
      b.close();
    }
  });
});

describe('shared redirect layer', () => {
  function redirectRig(onServe?: (d: string) => void) {
    const below = new FakeRegistry(UP);
    below.blobs.set(sha256(layer), layer);
    return { below, layer: new SharedRedirect(below, { bucket, onServe }) };
  }

  test('a redirect reports its object as used; a blob whose object was evicted is not redirected', async () => {
    const served: string[] = [];
    const { below, layer: r } = redirectRig((d) => served.push(d));
    assert.equal((await r.openBlob('app', sha256(layer), { method: 'GET' })).status, 307);
    const gone = randomBytes(500);
    below.blobs.set(sha256(gone), gone);
    assert.ok(await bucket.put(sha256(gone), gone.length, Readable.from([gone])));
    assert.ok(await bucket.putRecord({ kind: 'blob', upstream: UP, repository: 'app', digest: sha256(gone) }, { namedBy: [] }));
    assert.ok(await bucket.delete(sha256(gone)));
    const res = await r.openBlob('app', sha256(gone), { method: 'GET' });
    assert.equal(res.status, 200);
    assert.deepEqual(await collect(res.body), gone);
    assert.deepEqual(served, [sha256(layer)]);
  });

  test('a whole-blob GET the bucket holds for the repository is a 307 to a presigned URL that serves the bytes', async () => {
    const { below, layer: r } = redirectRig();
    const res = await r.openBlob('app', sha256(layer), { method: 'GET' });
    assert.equal(res.status, 307);
    assert.equal(res.body, null);
    const location = res.headers.location;
    assert.ok(location?.startsWith(`${s3.endpoint}/`));
    const fetched = await fetch(location);
    assert.equal(fetched.status, 200);
    assert.equal(sha256(Buffer.from(await fetched.arrayBuffer())), sha256(layer));
    assert.deepEqual(below.calls, []);
  });

  test('a HEAD, a range, skipStore, a request whose bytes must be checked here, or another repository\'s blob is never redirected', async () => {
    const { below, layer: r } = redirectRig();
    const d = sha256(layer);
    for (const req of [{ method: 'HEAD' }, { method: 'GET', range: 'bytes=0-9' }, { method: 'GET', skipStore: true }, { method: 'GET', verifyDigest: true }, { method: 'GET', verifyDigest: false }] as const) {
      const res = await r.openBlob('app', d, req);
      assert.notEqual(res.status, 307, JSON.stringify(req));
      res.body?.destroy();
    }
    const other = await r.openBlob('other', d, { method: 'GET' });
    assert.notEqual(other.status, 307);
    other.body?.destroy();
    assert.equal(below.calls.length, 6);
  });
});
