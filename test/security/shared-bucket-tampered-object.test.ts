import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, test } from 'node:test';
import type { Digest } from '../../src/oci/digest.js';
import { StoreAdmission } from '../../src/registry/admission.js';
import { BUCKET_CHECKED_BEFORE_SERVING_BYTES, SharedStore } from '../../src/registry/shared-store.js';
import { WriteThrough } from '../../src/registry/write-through.js';
import { Bucket } from '../../src/shared/bucket.js';
import { readSignatureBlob } from '../../src/signatures/read-blob.js';
import { FakeRegistry, collect, sha256, silentLogger } from '../helpers/fake-registry.js';
import { startS3Server, type S3Server } from '../helpers/s3-server.js';
import { tempStore } from '../helpers/temp-store.js';

// Whoever can write objects into the bucket can swap an object's bytes after it was uploaded
// (same size or not). The bytes are judged by their digest and never served complete — and the
// swap must not make the blob unpullable: once a replica has seen the object is not what its key
// says, it asks below (the upstream) instead, and takes the bad object out of the bucket so that
// the good bytes are replicated again. A small blob (signatures, configs) is read whole and
// hashed before it is answered, so its first request is already answered from below; a big one
// streams, so its first request fails before its last byte.

let s3: S3Server;
let bucket: Bucket;
const stores: Array<Awaited<ReturnType<typeof tempStore>>> = [];
before(async () => {
  s3 = await startS3Server();
  bucket = new Bucket(s3.config(), { logger: silentLogger() });
});
after(async () => {
  for (const s of stores) await s.close();
  bucket.close();
  await s3.close();
});

/** A replica's blob path: the local store written through, the bucket below it, the upstream below that. */
async function replica() {
  const store = await tempStore();
  stores.push(store);
  const up = new FakeRegistry();
  const admission = new StoreAdmission([], { ttlMs: 60_000 });
  const registry = new WriteThrough(new SharedStore(up, { bucket, logger: silentLogger() }), { store, admission, logger: silentLogger() });
  return { up, registry };
}

const SMALL = 64 * 1024;
const BIG = BUCKET_CHECKED_BEFORE_SERVING_BYTES + 64 * 1024;

/** A blob the bucket holds for `app` whose object was then overwritten with `swapped`. */
async function planted(swapped: (good: Buffer) => Buffer, size = SMALL): Promise<{ good: Buffer; digest: Digest }> {
  const good = randomBytes(size);
  const digest = sha256(good);
  assert.ok(await bucket.put(digest, good.length, Readable.from([good])));
  assert.ok(await bucket.putRecord({ kind: 'blob', upstream: 'up.test', repository: 'app', digest }, { namedBy: [] }));
  await s3.putRaw(bucket.objectKey(digest), swapped(good));
  return { good, digest };
}

const swaps = [
  ['other bytes of the same size', (g: Buffer) => Buffer.concat([g.subarray(0, g.length - 1), Buffer.from([g[g.length - 1]! ^ 1])])],
  ['a shorter object', (g: Buffer) => g.subarray(0, g.length - 100)],
  ['an empty object', () => Buffer.alloc(0)],
] as const;

for (const [name, swapped] of swaps) {
  test(`a small blob's object swapped for ${name} is never served: the blob comes from below at once and the bad object leaves the bucket`, async () => {
    const { good, digest } = await planted(swapped);
    const { up, registry } = await replica();
    up.blobs.set(digest, good);
    const first = await registry.openBlob('app', digest, { method: 'GET' });
    assert.deepEqual(sha256(await collect(first.body)), digest);
    assert.equal(up.count('openBlob'), 1, 'the upstream was asked once the bucket was found wrong');
    assert.equal(await bucket.head(digest), null, 'the object that is not its digest is gone from the bucket');
  });

  // (an empty object is read whole whatever the blob's size: the bucket says it is 0 bytes)
  if (name !== 'an empty object') test(`a big blob's object swapped for ${name} is never served complete, then the blob comes from below and the bad object leaves the bucket`, async () => {
    const { good, digest } = await planted(swapped, BIG);
    const { up, registry } = await replica();
    up.blobs.set(digest, good);
    const first = await registry.openBlob('app', digest, { method: 'GET' });
    await assert.rejects(collect(first.body));
    const second = await registry.openBlob('app', digest, { method: 'GET' });
    assert.deepEqual(sha256(await collect(second.body)), digest);
    assert.equal(up.count('openBlob'), 1, 'the upstream was asked once the bucket was found wrong');
    assert.equal(await bucket.head(digest), null, 'the object that is not its digest is gone from the bucket');
  });
}

test('a HEAD or Range of a blob found wrong in the bucket is answered from below', async () => {
  const { good, digest } = await planted((g) => Buffer.concat([Buffer.from([g[0]! ^ 1]), g.subarray(1)]));
  const { up, registry } = await replica();
  up.blobs.set(digest, good);
  assert.deepEqual(await collect((await registry.openBlob('app', digest, { method: 'GET' })).body), good);
  await s3.putRaw(bucket.objectKey(digest), Buffer.concat([Buffer.from([good[0]! ^ 1]), good.subarray(1)])); // planted again
  const part = await registry.openBlob('app', digest, { method: 'GET', range: 'bytes=10-' });
  assert.deepEqual(await collect(part.body), good.subarray(10));
  const head = await registry.openBlob('app', digest, { method: 'HEAD' });
  assert.equal(head.headers['content-length'], String(good.length));
  assert.deepEqual(up.calls.filter((c) => c.startsWith('openBlob')).length, 3, 'the first GET, the range and the HEAD, all from below');
});

// Signature data is read whole and refused when longer than its descriptor (which denies the
// image): a small signature blob's object swapped for a big one must be answered from below
// before a byte of it is read, not streamed into that refusal.
test("a signature blob's object swapped for a bigger one is answered from below: the signature still verifies", async () => {
  const { good, digest } = await planted(() => randomBytes(BIG), 600);
  const { up, registry } = await replica();
  up.blobs.set(digest, good);
  const read = await readSignatureBlob(registry, 'app', digest, good.length, 'signature payload', undefined);
  assert.ok('bytes' in read, `read whole: ${'problem' in read ? read.problem : ''}`);
  assert.deepEqual(read.bytes, good);
  assert.equal(up.count('openBlob'), 1, 'the upstream answered it');
});

test("a descriptor that gives another size than the bucket's object does not take the object out of the bucket", async () => {
  const { good, digest } = await planted((g) => g, 600);
  const { up, registry } = await replica();
  up.blobs.set(digest, good);
  const read = await readSignatureBlob(registry, 'app', digest, good.length - 1, 'signature payload', undefined);
  assert.ok('problem' in read, 'the bytes are longer than the descriptor says');
  const asked = up.count('openBlob');
  assert.ok(asked >= 1, 'asked below, where the same bytes are refused the same way');
  assert.equal(await bucket.head(digest), good.length, 'the object, which is its digest, stays');
  const whole = await registry.openBlob('app', digest, { method: 'GET' });
  assert.deepEqual(await collect(whole.body), good);
  assert.equal(up.count('openBlob'), asked, 'and a request without the lying descriptor is served from the bucket');
});
